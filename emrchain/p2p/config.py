"""P2P limits and timeouts: every buffer, queue, frame and field the p2p layer holds is capped here.

The node builds a `P2PConfig` from its `[p2p]` settings (`node/wiring.py`) and a `PeerManager`
validates it before it starts. The defaults and accepted ranges are those declared in
`emrchain/config/node.py`, so the p2p layer accepts exactly what the config loader accepts; the
meaning of each field is the doc of its setting.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from nacl.bindings import crypto_secretstream_xchacha20poly1305_ABYTES

from emrchain.config.node import P2PSection
from emrchain.config.settings import check_declared, settings_of

# A frame carries `channel u8 | payload` encrypted; the smallest useful frame is an empty payload.
FRAME_OVERHEAD_BYTES = crypto_secretstream_xchacha20poly1305_ABYTES + 1
_DEFAULT_ADDRESS = P2PSection.listen_address


@dataclass(frozen=True, slots=True)
class P2PConfig:
    """Everything the p2p layer needs besides keys."""

    listen_host: str = _DEFAULT_ADDRESS.host
    # 0 lets the OS pick a free port (tests); `PeerManager.listen_port` reports the bound one.
    listen_port: int = _DEFAULT_ADDRESS.port
    # `"<node_id_hex>@host:port"` of the peers this node keeps connected (it dials them).
    persistent_peers: tuple[str, ...] = ()

    # Ciphertext bytes after the u32 length prefix; checked before the body is read.
    max_frame_bytes: int = P2PSection.max_frame_bytes
    # asyncio stops reading past 2x this unless it is completing the frame being read, so a
    # connection holds at most about one frame plus this.
    max_read_buffer_bytes: int = P2PSection.max_read_buffer_bytes
    send_queue_max_messages: int = P2PSection.send_queue_max_messages
    receive_queue_max_messages: int = P2PSection.receive_queue_max_messages
    max_write_buffer_bytes: int = P2PSection.max_write_buffer_bytes
    max_pending_handshakes: int = P2PSection.max_pending_handshakes
    max_pending_handshakes_per_address: int = P2PSection.max_pending_handshakes_per_address

    handshake_timeout_ms: int = P2PSection.handshake_timeout_ms
    # The inbound handshake runs under min(hello_timeout_ms, handshake_timeout_ms) until the
    # dialer has authenticated, then under handshake_timeout_ms from its start.
    hello_timeout_ms: int = P2PSection.hello_timeout_ms
    dial_timeout_ms: int = P2PSection.dial_timeout_ms
    reconnect_initial_ms: int = P2PSection.reconnect_initial_ms
    reconnect_max_ms: int = P2PSection.reconnect_max_ms
    # A peer silent for `idle_timeout_ms` is dropped: how a half-open TCP connection (peer
    # vanished without FIN) is detected.
    ping_interval_ms: int = P2PSection.ping_interval_ms
    idle_timeout_ms: int = P2PSection.idle_timeout_ms
    close_timeout_ms: int = P2PSection.close_timeout_ms
    misbehaviour_ban_threshold: int = P2PSection.misbehaviour_ban_threshold
    ban_duration_ms: int = P2PSection.ban_duration_ms
    strike_decay_ms: int = P2PSection.strike_decay_ms
    log_interval_ms: int = P2PSection.log_interval_ms
    max_dialled_registry_peers: int = P2PSection.max_dialled_registry_peers

    @property
    def max_payload_bytes(self) -> int:
        """The largest payload `send` accepts: a frame minus the channel byte and the MAC."""
        return self.max_frame_bytes - FRAME_OVERHEAD_BYTES

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        for field in fields(self):
            value = getattr(self, field.name)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if field.type in ("int", int) and not is_int:
                raise ValueError(f"{field.name} must be an int, got {value!r}")
        if not self.listen_host:
            raise ValueError("listen_host must not be empty")
        _check_range("listen_port", self.listen_port, 0, 65_535)
        if not isinstance(self.persistent_peers, tuple) or not all(
            isinstance(address, str) for address in self.persistent_peers
        ):
            raise ValueError("persistent_peers must be a tuple of address strings")
        check_declared(P2P_SETTINGS, self)
        if self.reconnect_max_ms < self.reconnect_initial_ms:
            raise ValueError("reconnect_max_ms must be >= reconnect_initial_ms")
        if self.max_pending_handshakes_per_address >= self.max_pending_handshakes:
            raise ValueError("max_pending_handshakes_per_address must be < max_pending_handshakes")
        # Two missed keepalives are tolerated before a peer counts as gone.
        if self.idle_timeout_ms < 2 * self.ping_interval_ms:
            raise ValueError("idle_timeout_ms must be >= 2 * ping_interval_ms")


P2P_SETTINGS = {
    name: spec
    for name, spec in settings_of(P2PSection).items()
    if name in {field.name for field in fields(P2PConfig)} - {"persistent_peers"}
}
"""The declared settings that are P2PConfig fields of the same name and shape (all but the
address and the peers, which the node converts to strings)."""


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be within {low}..{high}, got {value}")
