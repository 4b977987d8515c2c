"""PeerManager: listens, dials persistent peers, keeps one connection per peer, moves messages.

The node calls `start()`, then `send` / `broadcast` (never blocking) and `receive()` /
`messages()`; `close()` cancels every task and closes every socket. Only nodes whose P2P key is
in the allowed set (from genesis) get past the handshake.

Two nodes that dial each other at the same moment end up with two connections; both sides then
keep the one opened by the lower node id (`prefer_new_connection`), so they agree without
talking about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

from emrchain.crypto.keys import Signer
from emrchain.p2p.backoff import backoff_delay_ms
from emrchain.p2p.config import P2PConfig
from emrchain.p2p.connection import PeerConnection, ReceivedMessage
from emrchain.p2p.errors import CloseReason, HandshakeError, HandshakeFailure, MessageTooLargeError
from emrchain.p2p.framing import MAX_CHANNEL, MIN_APPLICATION_CHANNEL
from emrchain.p2p.handshake import MAX_CHAIN_ID_BYTES, Role, perform_handshake
from emrchain.p2p.identity import NODE_KEY_BYTES, NodeAddress, node_id
from emrchain.p2p.stats import P2PStats

logger = logging.getLogger("emrchain.p2p")

PeerConnectedCallback = Callable[[str], None]
PeerDisconnectedCallback = Callable[[str, str], None]


def prefer_new_connection(
    new_dialer_id: str, existing_dialer_id: str, local_id: str, peer_id: str
) -> bool:
    """Whether a second connection to the same peer replaces the first (same answer both sides).

    The connection dialed by the lower node id wins. If the same node dialed both, it only
    redialed because it considers the old one dead, so the new one wins.
    """
    preferred_dialer = min(local_id, peer_id)
    new_preferred = new_dialer_id == preferred_dialer
    existing_preferred = existing_dialer_id == preferred_dialer
    if new_preferred != existing_preferred:
        return new_preferred
    return True


class PeerManager:
    """All P2P connections of one node."""

    def __init__(
        self,
        config: P2PConfig,
        node_key: Signer,
        chain_id: bytes,
        allowed_peer_keys: Iterable[bytes],
        *,
        on_peer_connected: PeerConnectedCallback | None = None,
        on_peer_disconnected: PeerDisconnectedCallback | None = None,
    ) -> None:
        """`on_peer_connected(peer_id)` / `on_peer_disconnected(peer_id, reason)` are called on
        the event loop when a peer goes from not connected to connected and back; they must not
        block. A duplicate connection replacing another is not a disconnect."""
        config.validate()
        if not isinstance(chain_id, bytes) or not 1 <= len(chain_id) <= MAX_CHAIN_ID_BYTES:
            raise ValueError(f"chain_id must be 1..{MAX_CHAIN_ID_BYTES} bytes")
        self._config = config
        self._node_key = node_key
        self._chain_id = chain_id
        self._node_id = node_id(node_key.public_key)
        self._allowed_peer_keys = _checked_keys(allowed_peer_keys)
        self._persistent_peers = self._parse_persistent_peers(config.persistent_peers)
        self._on_peer_connected = on_peer_connected
        self._on_peer_disconnected = on_peer_disconnected
        self._stats = P2PStats()
        self._connections: dict[str, PeerConnection] = {}
        self._receive_queue: asyncio.Queue[ReceivedMessage] = asyncio.Queue(
            maxsize=config.receive_queue_max_messages
        )
        self._tasks: set[asyncio.Task[object]] = set()
        # Every socket we hold, so close() can abort one whose task was cancelled before it ran.
        self._transports: set[asyncio.WriteTransport] = set()
        self._server: asyncio.Server | None = None
        self._listen_port: int | None = None
        # Inbound connections still in their handshake (outbound ones are bounded by the
        # number of persistent peers).
        self._pending_inbound_handshakes = 0
        self._started = False
        self._closing = False

    # ----------------------------------------------------------------------------- identity

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def config(self) -> P2PConfig:
        return self._config

    @property
    def listen_port(self) -> int:
        """The port actually bound (useful when the config says 0)."""
        if self._listen_port is None:
            raise RuntimeError("PeerManager is not started")
        return self._listen_port

    @property
    def address(self) -> str:
        """This node's address, `"<node_id>@<listen_host>:<port>"`, for other nodes' configs."""
        return f"{self._node_id}@{self._config.listen_host}:{self.listen_port}"

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind the listening socket and start dialing the persistent peers."""
        if self._started:
            raise RuntimeError("PeerManager already started")
        self._started = True
        self._server = await asyncio.start_server(
            self._on_inbound,
            self._config.listen_host,
            self._config.listen_port,
            limit=self._config.max_read_buffer_bytes,
        )
        self._listen_port = self._server.sockets[0].getsockname()[1]
        logger.info("p2p node %s listening on %s", self._node_id[:16], self.address)
        for address in self._persistent_peers:
            self._spawn(self._maintain_persistent_peer(address))

    async def close(self) -> None:
        """Stop listening and dialing, close every connection and wait for every task."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.close(CloseReason.SHUTDOWN)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        if self._server is not None:
            await self._server.wait_closed()
        logger.info("p2p node %s closed", self._node_id[:16])

    # ------------------------------------------------------------------------------ queries

    def connected_peers(self) -> list[str]:
        """Node ids of the peers connected now, sorted."""
        return sorted(self._connections)

    def is_connected(self, peer_id: str) -> bool:
        return peer_id in self._connections

    @property
    def pending_inbound_handshakes(self) -> int:
        """Inbound connections accepted whose handshake has not finished yet."""
        return self._pending_inbound_handshakes

    @property
    def open_sockets(self) -> int:
        """TCP connections held open, those still in their handshake included."""
        return len(self._transports)

    def stats(self) -> P2PStats:
        """A snapshot of the counters (safe to keep; later traffic does not change it)."""
        return self._stats.snapshot()

    def set_allowed_peer_keys(self, keys: Iterable[bytes]) -> None:
        """Replace the allowed set (validator set change); drop peers no longer in it."""
        self._allowed_peer_keys = _checked_keys(keys)
        for peer_id, connection in list(self._connections.items()):
            if bytes.fromhex(peer_id) not in self._allowed_peer_keys:
                connection.close(CloseReason.PEER_NO_LONGER_ALLOWED)

    # ----------------------------------------------------------------------------- messages

    def send(self, peer_id: str, channel: int, payload: bytes) -> bool:
        """Queue `payload` for `peer_id` on `channel` (1..255) without blocking.

        Returns False when the peer is not connected or its send queue is full (the message is
        dropped and counted). Raises ValueError for a bad channel and MessageTooLargeError for a
        payload that cannot fit in one frame: those are caller bugs, not network conditions.
        """
        payload = self._checked_outgoing(channel, payload)
        connection = self._connections.get(peer_id)
        if connection is None:
            self._stats.send_not_connected += 1
            return False
        return connection.enqueue(channel, payload)

    def broadcast(self, channel: int, payload: bytes) -> int:
        """Queue `payload` for every connected peer; return how many queues accepted it."""
        payload = self._checked_outgoing(channel, payload)
        return sum(
            connection.enqueue(channel, payload) for connection in self._connections.values()
        )

    async def receive(self) -> ReceivedMessage:
        """Wait for the next `(peer_id, channel, payload)` from any peer."""
        return await self._receive_queue.get()

    async def messages(self) -> AsyncIterator[ReceivedMessage]:
        """Every received message, forever (until the consuming task is cancelled)."""
        while True:
            yield await self._receive_queue.get()

    def _checked_outgoing(self, channel: int, payload: bytes) -> bytes:
        if not isinstance(channel, int) or not MIN_APPLICATION_CHANNEL <= channel <= MAX_CHANNEL:
            raise ValueError(
                f"channel must be {MIN_APPLICATION_CHANNEL}..{MAX_CHANNEL} (0 is the p2p layer's)"
            )
        if isinstance(payload, bytearray | memoryview):
            payload = bytes(payload)  # a bytearray could change while it waits in a queue
        elif not isinstance(payload, bytes):
            # bytes(5) would quietly send five zero bytes: refuse anything not bytes-like.
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        if len(payload) > self._config.max_payload_bytes:
            raise MessageTooLargeError(
                f"payload of {len(payload)} bytes > max payload {self._config.max_payload_bytes}"
            )
        return payload

    async def _deliver(self, message: ReceivedMessage) -> None:
        await self._receive_queue.put(message)

    # -------------------------------------------------------------------------- connections

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, not a coroutine: asyncio 3.11 logs a spurious error when it cancels
        # a handler task it created, so the connection runs in a task of our own instead.
        if self._closing:
            writer.transport.abort()
            return
        if self._pending_inbound_handshakes >= self._config.max_pending_handshakes:
            self._record_handshake_failure(
                HandshakeFailure.TOO_MANY_PENDING,
                f"{self._config.max_pending_handshakes} handshakes already in progress",
                _peer_label(writer, None),
            )
            writer.transport.abort()
            return
        # Counted here, synchronously, so a burst of connects cannot overshoot the limit.
        self._pending_inbound_handshakes += 1
        self._transports.add(writer.transport)
        self._spawn(self._run_connection(reader, writer, Role.RESPONDER, None))

    async def _maintain_persistent_peer(self, address: NodeAddress) -> None:
        """Keep `address` connected: dial when not connected, back off on failures."""
        failures = 0
        last_attempt = float("-inf")
        while True:
            existing = self._connections.get(address.node_id)
            if existing is not None:
                await existing.wait_closed()
                continue
            if address.public_key not in self._allowed_peer_keys:
                # Removed from the allowed set: we would refuse it ourselves, so do not dial.
                await asyncio.sleep(self._config.reconnect_max_ms / 1000)
                continue
            # Dials start at least backoff_delay_ms apart: initial after a success, doubling
            # with each consecutive failure up to reconnect_max_ms.
            delay = (
                backoff_delay_ms(
                    failures, self._config.reconnect_initial_ms, self._config.reconnect_max_ms
                )
                / 1000
            )
            wait = last_attempt + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                if address.node_id in self._connections:
                    continue  # the peer dialed us meanwhile
            last_attempt = time.monotonic()
            if await self._dial(address):
                failures = 0
            else:
                failures += 1

    async def _dial(self, address: NodeAddress) -> bool:
        """Dial once and run the connection until it ends; True if the handshake succeeded."""
        try:
            async with asyncio.timeout(self._config.dial_timeout_ms / 1000):
                reader, writer = await asyncio.open_connection(
                    address.host, address.port, limit=self._config.max_read_buffer_bytes
                )
        except (OSError, TimeoutError) as error:
            self._stats.dial_failures += 1
            logger.debug("dial %s failed: %r", address, error)
            return False
        self._transports.add(writer.transport)
        return await self._run_connection(reader, writer, Role.DIALER, address)

    async def _run_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        role: Role,
        address: NodeAddress | None,
    ) -> bool:
        """Handshake, register, run until closed; True if the handshake succeeded."""
        writer.transport.set_write_buffer_limits(high=self._config.max_write_buffer_bytes)
        handed_over = False
        try:
            try:
                async with asyncio.timeout(self._config.handshake_timeout_ms / 1000):
                    result = await perform_handshake(
                        reader,
                        writer,
                        role=role,
                        node_key=self._node_key,
                        chain_id=self._chain_id,
                        allowed_peer_keys=self._allowed_peer_keys,
                        expected_peer_key=address.public_key if address else None,
                    )
            except HandshakeError as error:
                self._record_handshake_failure(
                    error.reason, error.detail, _peer_label(writer, address)
                )
                return False
            except TimeoutError:
                self._record_handshake_failure(
                    HandshakeFailure.TIMEOUT,
                    f"no complete handshake within {self._config.handshake_timeout_ms} ms",
                    _peer_label(writer, address),
                )
                return False
            except OSError as error:
                self._record_handshake_failure(
                    HandshakeFailure.CONNECTION_CLOSED, repr(error), _peer_label(writer, address)
                )
                return False
            finally:
                if role is Role.RESPONDER:
                    self._pending_inbound_handshakes -= 1
            if self._closing:
                return True
            peer_id = node_id(result.peer_public_key)
            connection = PeerConnection(
                peer_id=peer_id,
                dialer_id=self._node_id if role is Role.DIALER else peer_id,
                reader=reader,
                writer=writer,
                sealer=result.sealer,
                opener=result.opener,
                config=self._config,
                stats=self._stats,
                deliver=self._deliver,
                on_closed=self._unregister,
            )
            handed_over = True
            if not self._register(connection):
                connection.close(CloseReason.DUPLICATE_CONNECTION, "kept the preferred one")
            await connection.run()
            return True
        finally:
            if not handed_over:
                writer.transport.abort()
            self._transports.discard(writer.transport)

    def _register(self, connection: PeerConnection) -> bool:
        existing = self._connections.get(connection.peer_id)
        if existing is not None:
            if not prefer_new_connection(
                connection.dialer_id, existing.dialer_id, self._node_id, connection.peer_id
            ):
                return False
            # The mapping changes first, so closing the old one is not seen as a disconnect:
            # the peer stays connected throughout.
            self._connections[connection.peer_id] = connection
            existing.close(CloseReason.REPLACED_BY_DUPLICATE)
            return True
        self._connections[connection.peer_id] = connection
        self._stats.connections_established += 1
        logger.info("connected to peer %s", connection.peer_id[:16])
        self._notify(self._on_peer_connected, connection.peer_id)
        return True

    def _unregister(self, connection: PeerConnection) -> None:
        reason = connection.close_reason or CloseReason.SHUTDOWN
        self._stats.disconnects[reason] += 1
        if self._connections.get(connection.peer_id) is connection:
            del self._connections[connection.peer_id]
            self._notify(self._on_peer_disconnected, connection.peer_id, str(reason))

    def _notify(self, callback: Callable[..., None] | None, *arguments: str) -> None:
        if callback is None:
            return
        try:
            callback(*arguments)
        except Exception:
            # A bug in the node's callback must not take the p2p layer down with it.
            logger.exception("peer notification callback %r failed", callback)

    def _record_handshake_failure(
        self, reason: HandshakeFailure, detail: str, peer_label: str
    ) -> None:
        self._stats.handshake_failures[reason] += 1
        logger.warning("handshake with %s refused: %s (%s)", peer_label, reason, detail)

    def _parse_persistent_peers(self, addresses: tuple[str, ...]) -> tuple[NodeAddress, ...]:
        parsed: dict[str, NodeAddress] = {}
        for text in addresses:
            address = NodeAddress.parse(text)
            if address.node_id == self._node_id:
                raise ValueError(f"persistent peer {text!r} is this node itself")
            if address.public_key not in self._allowed_peer_keys:
                raise ValueError(f"persistent peer {text!r} is not in the allowed peer keys")
            if address.node_id in parsed:
                raise ValueError(f"persistent peer {address.node_id} is listed twice")
            parsed[address.node_id] = address
        return tuple(parsed.values())


def _checked_keys(keys: Iterable[bytes]) -> frozenset[bytes]:
    checked = frozenset(keys)
    for key in checked:
        if not isinstance(key, bytes) or len(key) != NODE_KEY_BYTES:
            raise ValueError("every allowed peer key is exactly 32 bytes")
    return checked


def _peer_label(writer: asyncio.StreamWriter, address: NodeAddress | None) -> str:
    with contextlib.suppress(OSError):
        peer = writer.get_extra_info("peername")
        if peer:
            location = f"{peer[0]}:{peer[1]}"
            return f"{address.node_id[:16]}@{location}" if address else location
    return str(address) if address else "unknown peer"
