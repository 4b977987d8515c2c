"""Shared pieces of the p2p tests: fast configs, node clusters, waiting, an async test runner.

pytest-asyncio is not a dependency, so every async test body runs through `run()`, which also
puts a hard deadline on it: a hung socket fails the test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from emrchain.crypto.keys import Ed25519Signer
from emrchain.p2p import P2PConfig, PeerManager, ReceivedMessage

CHAIN_ID = b"emrchain-test"
HOST = "127.0.0.1"
TEST_DEADLINE_S = 15.0

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], deadline_s: float = TEST_DEADLINE_S) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(deadline_s):
            return await coroutine

    return asyncio.run(bounded())


def fast_config(**overrides: Any) -> P2PConfig:
    """Small limits and short timeouts, listening on an ephemeral port of 127.0.0.1."""
    base = P2PConfig(
        listen_host=HOST,
        listen_port=0,
        max_frame_bytes=64 * 1024,
        handshake_timeout_ms=1_000,
        dial_timeout_ms=500,
        reconnect_initial_ms=20,
        reconnect_max_ms=160,
        # Long enough that keepalives never interfere unless a test asks for them.
        ping_interval_ms=5_000,
        idle_timeout_ms=10_000,
        close_timeout_ms=200,
    )
    return replace(base, **overrides)


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


async def receive_within(manager: PeerManager, timeout_s: float = 3.0) -> ReceivedMessage:
    async with asyncio.timeout(timeout_s):
        return await manager.receive()


async def nothing_received(manager: PeerManager, wait_s: float = 0.1) -> bool:
    try:
        async with asyncio.timeout(wait_s):
            await manager.receive()
    except TimeoutError:
        return True
    return False


@dataclass
class Events:
    """Connect/disconnect notifications a manager reported, in order."""

    connected: list[str] = field(default_factory=list)
    disconnected: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Node:
    key: Ed25519Signer
    manager: PeerManager
    events: Events

    @property
    def node_id(self) -> str:
        return self.manager.node_id

    async def close(self) -> None:
        await self.manager.close()


async def start_node(
    key: Ed25519Signer,
    allowed: list[bytes],
    *,
    chain_id: bytes = CHAIN_ID,
    clock: Callable[[], float] = time.monotonic,
    **config_overrides: Any,
) -> Node:
    events = Events()
    manager = PeerManager(
        fast_config(**config_overrides),
        key,
        chain_id,
        allowed,
        on_peer_connected=events.connected.append,
        on_peer_disconnected=lambda peer, reason: events.disconnected.append((peer, reason)),
        clock=clock,
    )
    await manager.start()
    return Node(key, manager, events)


def address_at(node_id: str, port: int) -> str:
    return f"{node_id}@{HOST}:{port}"


async def close_all(*closables: Any) -> None:
    for closable in closables:
        if closable is not None:
            await closable.close()


async def exchange(sender: Node, receiver: Node, channel: int, payload: bytes) -> None:
    """Send one message and check it arrives intact, from the right peer, on the right channel."""
    assert sender.manager.send(receiver.node_id, channel, payload)
    message = await receive_within(receiver.manager)
    assert message == (sender.node_id, channel, payload)


async def fully_connected(nodes: list[Node], timeout_s: float = 5.0) -> None:
    def check() -> bool:
        return all(
            set(node.manager.connected_peers()) == {n.node_id for n in nodes if n is not node}
            for node in nodes
        )

    await wait_until(check, timeout_s, "full mesh")


@contextlib.asynccontextmanager
async def linked_pair(
    a_options: Mapping[str, Any] | None = None, **both: Any
) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes that allow each other, B dialling A, yielded once fully connected and closed
    on exit whatever happens. `both` overrides the config of both, `a_options` only A's."""
    signers = [Ed25519Signer.generate() for _ in range(2)]
    allowed = [signer.public_key for signer in signers]
    a = b = None
    try:
        a = await start_node(signers[0], allowed, **{**both, **(a_options or {})})
        b = await start_node(signers[1], allowed, persistent_peers=(a.manager.address,), **both)
        await fully_connected([a, b])
        yield a, b
    finally:
        await close_all(a, b)


@contextlib.asynccontextmanager
async def lone_node(**options: Any) -> AsyncIterator[tuple[Node, OpenSockets]]:
    """A node that allows only itself, and raw sockets to hit it with; both closed on exit."""
    signer = Ed25519Signer.generate()
    sockets = OpenSockets()
    node = None
    try:
        node = await start_node(signer, [signer.public_key], **options)
        yield node, sockets
    finally:
        await sockets.close()
        await close_all(node)


async def gather_bounded(*awaitables: Awaitable[Any], timeout_s: float = 5.0) -> list[Any]:
    async with asyncio.timeout(timeout_s):
        return await asyncio.gather(*awaitables, return_exceptions=True)


class OpenSockets:
    """Raw test connections, all aborted by `close()` (call it in a finally)."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def connect(
        self, port: int, source_host: str = HOST
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect from `source_host`: 127.0.0.2, 127.0.0.3... are loopback too on Linux, so
        each models another remote address."""
        reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source_host, 0))
        self.writers.append(writer)
        return reader, writer

    def track(self, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)

    async def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        # Let the loop run the transports' connection_lost callbacks before it stops.
        await asyncio.sleep(0)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


class TestServer:
    """A listening socket whose handler tasks and sockets `close()` ends (call it in a finally).

    Handlers run in tasks of our own: asyncio 3.11 logs a spurious error when a handler task it
    created itself is cancelled at shutdown.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets = OpenSockets()
        self.port = 0

    async def start(self) -> TestServer:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._sockets.track(writer)
        task = asyncio.create_task(self._handler(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._sockets.close()
        if self._server is not None:
            await self._server.wait_closed()
