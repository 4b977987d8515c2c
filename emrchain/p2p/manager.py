"""PeerManager: listens, dials persistent peers, keeps one connection per peer, moves messages.

The node calls `start()`, then `send` / `broadcast` (never blocking) and `receive()` /
`messages()`; `close()` cancels every task and closes every socket. Only nodes whose P2P key is
in the allowed set get past the handshake; the node replaces the set after every commit
(`set_allowed_peer_keys`, from committed state: `emrchain/state/peers.py`) and names the
addresses allowed peers advertise on chain (`set_advertised_addresses`), which are dialled like
persistent peers while they stay allowed.

Before a dialer has authenticated it holds a pre-authentication slot: at most
`max_pending_handshakes` in all and `max_pending_handshakes_per_address` from one source
address, each for at most `hello_timeout_ms`, so unauthenticated sockets cannot keep an allowed
validator out. The node reports what a peer did wrong (`report_misbehaviour`); enough of it bans
the peer for `ban_duration_ms`: it is disconnected, refused at the handshake once its key is
known, and not dialled (docs/spec/p2p.md §5.1–5.2).

Two nodes that dial each other at the same moment end up with two connections; both sides then
keep the one opened by the lower node id (`prefer_new_connection`), so they agree without
talking about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emrchain.crypto.keys import Signer
from emrchain.p2p.backoff import backoff_delay_ms
from emrchain.p2p.config import P2PConfig
from emrchain.p2p.connection import PeerConnection, ReceivedMessage
from emrchain.p2p.errors import CloseReason, HandshakeError, HandshakeFailure, MessageTooLargeError
from emrchain.p2p.framing import MAX_CHANNEL, MIN_APPLICATION_CHANNEL
from emrchain.p2p.handshake import MAX_CHAIN_ID_BYTES, Role, perform_handshake
from emrchain.p2p.identity import NODE_KEY_BYTES, NodeAddress, node_id
from emrchain.p2p.scoring import Misbehaviour, PeerScores
from emrchain.p2p.stats import P2PStats, PeerStanding
from emrchain.throttled_log import ThrottledLog

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_peer_connected(peer_id)` / `on_peer_disconnected(peer_id, reason)` are called on
        the event loop when a peer goes from not connected to connected and back; they must not
        block. A duplicate connection replacing another is not a disconnect. `clock` (monotonic
        seconds) times bans and log intervals; tests pass their own to move time."""
        config.validate()
        if not isinstance(chain_id, bytes) or not 1 <= len(chain_id) <= MAX_CHAIN_ID_BYTES:
            raise ValueError(f"chain_id must be 1..{MAX_CHAIN_ID_BYTES} bytes")
        self._config = config
        self._node_key = node_key
        self._chain_id = chain_id
        self._node_id = node_id(node_key.public_key)
        self._allowed_peer_keys = _checked_keys(allowed_peer_keys)
        self._persistent_peers = self._parse_persistent_peers(config.persistent_peers)
        # node id -> (address, task dialling it): peers dialled at their on-chain address.
        self._advertised: dict[str, tuple[NodeAddress, asyncio.Task[object]]] = {}
        self._on_peer_connected = on_peer_connected
        self._on_peer_disconnected = on_peer_disconnected
        self._stats = P2PStats()
        self._clock = clock
        self._scores = PeerScores(
            config.misbehaviour_ban_threshold, config.ban_duration_ms, config.strike_decay_ms
        )
        # Refused connections and misbehaviour reports are the remote side's doing, as often as
        # it likes: one line per interval each.
        self._refusal_log = ThrottledLog(logger, config.log_interval_ms / 1000, clock)
        self._report_log = ThrottledLog(logger, config.log_interval_ms / 1000, clock)
        self._connections: dict[str, PeerConnection] = {}
        self._receive_queue: asyncio.Queue[ReceivedMessage] = asyncio.Queue(
            maxsize=config.receive_queue_max_messages
        )
        self._tasks: set[asyncio.Task[object]] = set()
        # Every socket we hold, so close() can abort one whose task was cancelled before it ran.
        self._transports: set[asyncio.WriteTransport] = set()
        self._server: asyncio.Server | None = None
        self._listen_port: int | None = None
        # Inbound connections whose dialer has not authenticated yet (outbound ones are
        # bounded by the number of persistent peers).
        self._pre_auth = _PreAuthSlots()
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
        """Inbound connections accepted whose dialer has not authenticated yet."""
        return self._pre_auth.total

    @property
    def open_sockets(self) -> int:
        """TCP connections held open, those still in their handshake included."""
        return len(self._transports)

    def stats(self) -> P2PStats:
        """A snapshot of the counters (safe to keep; later traffic does not change it)."""
        return self._stats.snapshot()

    def banned_peers(self) -> dict[str, float]:
        """Every peer banned now, with the seconds its ban has left."""
        return {
            peer_id: remaining_ms / 1000
            for peer_id, remaining_ms in self._scores.banned(self._now_ms()).items()
        }

    def standing(self) -> PeerStanding:
        """Strikes of the connected peers and the bans in force (`/status` "p2p")."""
        now_ms = self._now_ms()
        return PeerStanding(
            strikes={
                peer_id: self._scores.strikes(peer_id, now_ms) for peer_id in self.connected_peers()
            },
            bans_in_force=len(self._scores.banned(now_ms)),
            bans=self._stats.bans,
            unknown_peer_refusals=self._stats.handshake_failures[HandshakeFailure.UNKNOWN_PEER],
        )

    def report_misbehaviour(self, peer_id: str, kind: Misbehaviour) -> bool:
        """Hold `kind` against `peer_id` (the authenticated sender of what was wrong); True if
        this report bans it: the peer is then disconnected, refused at the handshake and not
        dialled for `ban_duration_ms`. A peer that is not allowed is ignored (False)."""
        kind = Misbehaviour(kind)
        if len(peer_id) != 2 * NODE_KEY_BYTES or not _is_allowed(peer_id, self._allowed_peer_keys):
            return False
        self._stats.misbehaviour[kind] += 1
        peer_stats = self._stats.peer(peer_id)
        peer_stats.misbehaviour[kind] += 1
        if not self._scores.report(peer_id, kind, self._now_ms()):
            self._report_log.warning("peer %s reported for %s", peer_id[:16], kind)
            return False
        self._stats.bans += 1
        peer_stats.bans += 1
        # Bans are few (each lasts ban_duration_ms), so each is logged.
        logger.warning(
            "peer %s banned for %d ms after %s", peer_id[:16], self._config.ban_duration_ms, kind
        )
        connection = self._connections.get(peer_id)
        if connection is not None:
            connection.close(CloseReason.BANNED, str(kind))
        return True

    def set_allowed_peer_keys(self, keys: Iterable[bytes]) -> None:
        """Replace the allowed set (validator set change); drop peers no longer in it."""
        allowed = _checked_keys(keys)
        if allowed == self._allowed_peer_keys:
            return
        self._allowed_peer_keys = allowed
        for peer_id, connection in list(self._connections.items()):
            if bytes.fromhex(peer_id) not in self._allowed_peer_keys:
                connection.close(CloseReason.PEER_NO_LONGER_ALLOWED)
        logger.info("allowed peer set: %d node keys", len(allowed))

    def set_advertised_addresses(self, addresses: Mapping[bytes, str]) -> None:
        """Keep dialling allowed peers at the `host:port` they advertise (node key -> address),
        at most `max_dialled_registry_peers` of them, lowest node id first; persistent peers
        and this node are left out, and a peer that drops out of `addresses` is no longer
        dialled (an open connection to it stays while it is allowed)."""
        if self._closing or not self._started:
            return
        wanted: dict[str, NodeAddress] = {}
        persistent = {address.node_id for address in self._persistent_peers}
        for key in sorted(addresses):
            if len(wanted) >= self._config.max_dialled_registry_peers:
                break
            peer_id = node_id(key)
            if peer_id == self._node_id or peer_id in persistent:
                continue
            address = _advertised_address(peer_id, addresses[key])
            if address is not None and key in self._allowed_peer_keys:
                wanted[peer_id] = address
        for peer_id, (address, task) in list(self._advertised.items()):
            if wanted.get(peer_id) != address:
                task.cancel()
                del self._advertised[peer_id]
        for peer_id, address in wanted.items():
            if peer_id not in self._advertised:
                task = asyncio.create_task(self._maintain_persistent_peer(address))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self._advertised[peer_id] = (address, task)

    def dialled_advertised_peers(self) -> list[str]:
        """Node ids dialled at their on-chain address now, sorted."""
        return sorted(self._advertised)

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
        source = _source_address(writer)
        refusal = self._pre_auth.refusal(source, self._config)
        if refusal is not None:
            self._record_handshake_failure(
                refusal, f"pre-authentication slots of {source} full", _peer_label(writer, None)
            )
            writer.transport.abort()
            return
        # Taken here, synchronously, so a burst of connects cannot overshoot the limits.
        self._pre_auth.take(source)
        self._transports.add(writer.transport)
        self._spawn(self._run_connection(reader, writer, Role.RESPONDER, None, source))

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
            ban_remaining_s = self._scores.ban_remaining_ms(address.node_id, self._now_ms()) / 1000
            if ban_remaining_s > 0:
                # Looked at again every reconnect_initial_ms: the clock may be a test's.
                self._stats.banned_dials_skipped += 1
                await asyncio.sleep(min(ban_remaining_s, self._config.reconnect_initial_ms / 1000))
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
        source: str | None = None,
    ) -> bool:
        """Handshake, register, run until closed; True if the handshake succeeded.

        `source` is the address whose pre-authentication slot an inbound connection holds; the
        slot is given back once the dialer authenticated, or when the handshake ends."""
        writer.transport.set_write_buffer_limits(high=self._config.max_write_buffer_bytes)
        handed_over = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        config = self._config
        pre_auth_s = min(config.hello_timeout_ms, config.handshake_timeout_ms) / 1000
        timeout_s = pre_auth_s if source is not None else config.handshake_timeout_ms / 1000
        try:
            try:
                async with asyncio.timeout(timeout_s) as deadline:

                    def authenticated(peer_key: bytes) -> None:
                        nonlocal source
                        self._refuse_if_banned(peer_key)
                        if source is not None:
                            self._pre_auth.release(source)
                            source = None
                            deadline.reschedule(started + config.handshake_timeout_ms / 1000)

                    result = await perform_handshake(
                        reader,
                        writer,
                        role=role,
                        node_key=self._node_key,
                        chain_id=self._chain_id,
                        allowed_peer_keys=self._allowed_peer_keys,
                        expected_peer_key=address.public_key if address else None,
                        on_peer_authenticated=authenticated,
                    )
            except HandshakeError as error:
                self._record_handshake_failure(
                    error.reason, error.detail, _peer_label(writer, address)
                )
                return False
            except TimeoutError:
                stage = "no authentication" if source is not None else "no complete handshake"
                self._record_handshake_failure(
                    HandshakeFailure.TIMEOUT,
                    f"{stage} within {(loop.time() - started) * 1000:.0f} ms",
                    _peer_label(writer, address),
                )
                return False
            except OSError as error:
                self._record_handshake_failure(
                    HandshakeFailure.CONNECTION_CLOSED, repr(error), _peer_label(writer, address)
                )
                return False
            finally:
                if source is not None:
                    self._pre_auth.release(source)
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

    def _refuse_if_banned(self, peer_key: bytes) -> None:
        remaining_ms = self._scores.ban_remaining_ms(node_id(peer_key), self._now_ms())
        if remaining_ms > 0:
            raise HandshakeError(HandshakeFailure.BANNED, f"banned for {remaining_ms} ms more")

    def _now_ms(self) -> int:
        """The manager's monotonic clock in whole milliseconds (bans and strikes are kept in
        them)."""
        return round(self._clock() * 1000)

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
        logger.info(
            "connected to peer %s", connection.peer_id[:16], extra={"peer": connection.peer_id}
        )
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
        self._refusal_log.warning("handshake with %s refused: %s (%s)", peer_label, reason, detail)

    def _parse_persistent_peers(self, addresses: tuple[str, ...]) -> tuple[NodeAddress, ...]:
        parsed: dict[str, NodeAddress] = {}
        for text in addresses:
            address = NodeAddress.parse(text)
            if address.node_id == self._node_id:
                raise ValueError(f"persistent peer {text!r} is this node itself")
            if address.public_key not in self._allowed_peer_keys:
                # The allowed set follows committed state; the peer is dialled once it is in.
                logger.warning("persistent peer %s is not allowed (yet); not dialled", text)
            if address.node_id in parsed:
                raise ValueError(f"persistent peer {address.node_id} is listed twice")
            parsed[address.node_id] = address
        return tuple(parsed.values())


def _advertised_address(peer_id: str, text: str) -> NodeAddress | None:
    """`host:port` (or `[ipv6]:port`) advertised for `peer_id` as a dialable address; None if
    it is not one (state validates addresses, so only a node of another version could see
    that)."""
    host, separator, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        return NodeAddress.parse(f"{peer_id}@{host}:{port}") if separator else None
    except ValueError:
        return None


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


@dataclass(slots=True)
class _PreAuthSlots:
    """Inbound connections whose dialer has not authenticated: in all and by source address."""

    total: int = 0
    by_source: Counter[str] = field(default_factory=Counter)

    def refusal(self, source: str, config: P2PConfig) -> HandshakeFailure | None:
        """Why a new connection from `source` is refused, or None if it may take a slot."""
        if self.total >= config.max_pending_handshakes:
            return HandshakeFailure.TOO_MANY_PENDING
        if self.by_source[source] >= config.max_pending_handshakes_per_address:
            return HandshakeFailure.TOO_MANY_PENDING_FROM_ADDRESS
        return None

    def take(self, source: str) -> None:
        self.total += 1
        self.by_source[source] += 1

    def release(self, source: str) -> None:
        self.total -= 1
        self.by_source[source] -= 1
        if not self.by_source[source]:
            del self.by_source[source]  # the counter holds only addresses with a slot


def _source_address(writer: asyncio.StreamWriter) -> str:
    """The address whose slots a connection counts against: the IPv4 address, or the /64 of an
    IPv6 one (a single host commonly owns a whole /64)."""
    peer = writer.get_extra_info("peername")
    host = str(peer[0]) if peer else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _is_allowed(peer_id: str, allowed_peer_keys: frozenset[bytes]) -> bool:
    try:
        return bytes.fromhex(peer_id) in allowed_peer_keys
    except ValueError:
        return False
