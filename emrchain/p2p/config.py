"""P2P limits and timeouts: every buffer, queue, frame and field the p2p layer holds is capped here.

The node builds a `P2PConfig` from its TOML file and calls `validate()` before starting a
`PeerManager`; the manager validates again so a bad value can never reach the sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from nacl.bindings import crypto_secretstream_xchacha20poly1305_ABYTES

# A frame carries `channel u8 | payload` encrypted; the smallest useful frame is an empty payload.
FRAME_OVERHEAD_BYTES = crypto_secretstream_xchacha20poly1305_ABYTES + 1
# The u32 length prefix can express at most this; one frame is also never allowed near it.
MAX_FRAME_BYTES_CEILING = 64 * 1024 * 1024
# Every timeout must be at least this, so a typo like `5` (meant: seconds) fails loudly.
MIN_TIMEOUT_MS = 10
MAX_TIMEOUT_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class P2PConfig:
    """Everything the p2p layer needs besides keys; defaults suit a small hospital consortium."""

    listen_host: str = "127.0.0.1"
    # 0 lets the OS pick a free port (tests); `PeerManager.listen_port` reports the bound one.
    listen_port: int = 26656
    # `"<node_id_hex>@host:port"` of the peers this node keeps connected (it dials them).
    persistent_peers: tuple[str, ...] = ()

    # Ciphertext bytes after the u32 length prefix; checked before the body is read. The default
    # carries a block of the default `Limits.max_block_bytes` (16 MiB) with its proposal or
    # commit certificate in one frame.
    max_frame_bytes: int = 17 * 1024 * 1024
    # Read-ahead of a socket: asyncio stops reading past 2x this unless it is completing the
    # frame being read, so a connection holds at most about one frame plus this.
    max_read_buffer_bytes: int = 256 * 1024
    send_queue_max_messages: int = 1_024
    # Received messages wait here for the node; when full, readers stop reading (TCP backpressure).
    receive_queue_max_messages: int = 4_096
    # Frames the writer coalesces into one socket write stop once this many bytes are buffered;
    # also the transport's high-water mark.
    max_write_buffer_bytes: int = 1024 * 1024
    # Connections still in their handshake; more inbound connections are closed on accept.
    max_pending_handshakes: int = 16

    handshake_timeout_ms: int = 5_000
    dial_timeout_ms: int = 3_000
    reconnect_initial_ms: int = 500
    reconnect_max_ms: int = 30_000
    # A keepalive frame is sent this often; a peer silent for `idle_timeout_ms` is dropped, which
    # is how a half-open TCP connection (peer vanished without FIN) is detected.
    ping_interval_ms: int = 10_000
    idle_timeout_ms: int = 30_000
    # How long `close()` lets a connection flush before aborting it.
    close_timeout_ms: int = 1_000

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
        # 64 bytes of payload at least, so a frame can carry a vote-sized message.
        _check_range(
            "max_frame_bytes",
            self.max_frame_bytes,
            FRAME_OVERHEAD_BYTES + 64,
            MAX_FRAME_BYTES_CEILING,
        )
        _check_range("send_queue_max_messages", self.send_queue_max_messages, 1, 1_000_000)
        _check_range("receive_queue_max_messages", self.receive_queue_max_messages, 1, 1_000_000)
        _check_range("max_read_buffer_bytes", self.max_read_buffer_bytes, 1_024, 1 << 30)
        _check_range("max_write_buffer_bytes", self.max_write_buffer_bytes, 1_024, 1 << 30)
        _check_range("max_pending_handshakes", self.max_pending_handshakes, 1, 10_000)
        for name in (
            "handshake_timeout_ms",
            "dial_timeout_ms",
            "reconnect_initial_ms",
            "reconnect_max_ms",
            "ping_interval_ms",
            "idle_timeout_ms",
            "close_timeout_ms",
        ):
            _check_range(name, getattr(self, name), MIN_TIMEOUT_MS, MAX_TIMEOUT_MS)
        if self.reconnect_max_ms < self.reconnect_initial_ms:
            raise ValueError("reconnect_max_ms must be >= reconnect_initial_ms")
        # Two missed keepalives are tolerated before a peer counts as gone.
        if self.idle_timeout_ms < 2 * self.ping_interval_ms:
            raise ValueError("idle_timeout_ms must be >= 2 * ping_interval_ms")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be within {low}..{high}, got {value}")
