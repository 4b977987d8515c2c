"""WebSocket `/ws/blocks`: a push stream of committed block summaries.

Each committed block becomes one text frame, sent to every subscriber in height order:
`{"height": h, "time_ms": t, "block_id": hex, "tx_count": n, "tx_ids": [hex, ...],
"failed": [[index, code], ...]}` — `failed` lists the transactions execution refused (included
and final, but they changed nothing; `GET /txs/{id}` has the message).
Clients (the load generator, explorers) learn about commits as they happen instead of polling
`/blocks/{h}`.

Bounded: at most `max_subscribers` connections (503 beyond), at most `max_per_client` of them
from one client address (429 beyond, so one client cannot take every slot), and each has a
queue of at most `max_queued_blocks` summaries. A subscriber that falls that far behind is
disconnected (close code 1013, "try again later") rather than skipped over: a stream that
silently loses blocks would make a client miscount commits. The summary is encoded once per
block, and only when someone listens.

Shutdown: `stop()` (the server calls it when the node stops) closes every subscription with
close code 1001 ("going away") and refuses new ones, so a connected subscriber never holds up
the node's exit (it once took ~45 s, with the database lock held all along).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from aiohttp import WSCloseCode, web

from emrchain.config.node import RpcSection
from emrchain.rpc.errors import RpcError
from emrchain.rpc.guard import request_client
from emrchain.rpc.limits import SlotCounter
from emrchain.rpc.node_view import NodeView
from emrchain.state.result import TxResult
from emrchain.types import Block

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """A stream's bounds; a node takes them from `[rpc]` (`StreamLimits.of`), and the defaults
    are that section's."""

    max_subscribers: int = RpcSection.max_stream_subscribers
    max_queued_blocks: int = RpcSection.max_stream_queued_blocks
    send_timeout_ms: int = RpcSection.stream_send_timeout_ms
    max_per_client: int = RpcSection.max_stream_subscribers_per_address
    """Per client address on /ws/blocks, per member on /ws/patients."""

    @classmethod
    def of(cls, section: RpcSection, max_per_client: int) -> StreamLimits:
        return cls(
            max_subscribers=section.max_stream_subscribers,
            max_queued_blocks=section.max_stream_queued_blocks,
            send_timeout_ms=section.stream_send_timeout_ms,
            max_per_client=max_per_client,
        )

    def slots(self) -> SlotCounter:
        return SlotCounter(self.max_subscribers, self.max_per_client)


def take_slot(slots: SlotCounter, client: Hashable, what: str) -> None:
    """Take one of `slots` for `client`, or refuse: 503 when all are taken, 429 with
    Retry-After when this client holds its share."""
    refusal = slots.refusal(client)
    if refusal is not None:
        status, why = refusal
        raise RpcError(
            status,
            "too_many_subscribers",
            f"{what} subscriptions: {why}",
            retry_after_s=1.0,
        )
    slots.acquire(client)


def block_summary(block: Block, tx_ids: Sequence[bytes], tx_results: Sequence[TxResult]) -> str:
    """The JSON text frame for one committed block."""
    header = block.header
    joined = b"".join(tx_ids).hex()
    return json.dumps(
        {
            "height": header.height,
            "time_ms": header.time_ms,
            "block_id": block.block_id.hex(),
            "tx_count": len(tx_ids),
            "tx_ids": [joined[start : start + 64] for start in range(0, len(joined), 64)],
            "failed": [
                [index, result.code] for index, result in enumerate(tx_results) if result.code
            ],
        },
        separators=(",", ":"),
    )


def refuse_if_stopping(stopping: bool) -> None:
    """A subscription asked for while the node shuts down: 503, try another node or later."""
    if stopping:
        raise RpcError(503, "shutting_down", "the node is shutting down", retry_after_s=1.0)


class _Subscriber:
    __slots__ = ("overflowed", "queue", "stopping")

    def __init__(self, max_queued_blocks: int) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=max_queued_blocks)
        self.overflowed = False
        self.stopping = False

    def stop(self) -> None:
        """The node shuts down: wake the sender, which closes the connection (1001)."""
        self.stopping = True
        self._wake()

    def offer(self, frame: str) -> None:
        """Queue `frame`, never blocking; a full queue marks the subscriber overflowed."""
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True
            # Wake the sender so it sees the overflow and closes the connection.
            self._wake()

    def _wake(self) -> None:
        """Make room for an empty frame and queue it: the sender wakes and checks the flags."""
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait("")

    async def close_if_ended(self, socket: web.WebSocketResponse) -> bool:
        """Close `socket` if this subscription has ended (fell behind: 1013; node stopping:
        1001); whether it has."""
        if self.overflowed:
            await socket.close(
                code=WSCloseCode.TRY_AGAIN_LATER,
                message=b"subscriber fell too far behind the chain",
            )
        elif self.stopping:
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"the node is shutting down")
        else:
            return False
        return True


class BlockStream:
    """Fans committed blocks out to WebSocket subscribers; `handle` is the route handler."""

    def __init__(self, node: NodeView, limits: StreamLimits | None = None) -> None:
        self._limits = limits or StreamLimits()
        self._subscribers: set[_Subscriber] = set()
        self.slots = self._limits.slots()
        self._stopping = False
        node.add_commit_listener(self.publish)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def stop(self) -> None:
        """Close every subscription (1001) and refuse new ones: the node shuts down."""
        self._stopping = True
        for subscriber in self._subscribers:
            subscriber.stop()

    def publish(
        self, block: Block, tx_ids: Sequence[bytes], tx_results: Sequence[TxResult]
    ) -> None:
        """Called by the chain after each commit (on the event loop); never blocks."""
        if not self._subscribers:
            return
        frame = block_summary(block, tx_ids, tx_results)
        for subscriber in self._subscribers:
            if subscriber.overflowed:
                continue
            subscriber.offer(frame)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        refuse_if_stopping(self._stopping)
        client = request_client(request)
        take_slot(self.slots, client, "block stream")
        try:
            return await self._serve(request)
        finally:
            self.slots.release(client)

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=30.0)
        await socket.prepare(request)
        subscriber = _Subscriber(self._limits.max_queued_blocks)
        self._subscribers.add(subscriber)
        if self._stopping:  # stopped while this upgrade was being answered
            subscriber.stop()
        receiver = asyncio.create_task(self._drain_incoming(socket))
        try:
            await self._send_loop(socket, subscriber, receiver)
        finally:
            self._subscribers.discard(subscriber)
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
            if not socket.closed:
                await socket.close()
        return socket

    async def _send_loop(
        self, socket: web.WebSocketResponse, subscriber: _Subscriber, receiver: asyncio.Task
    ) -> None:
        timeout_s = self._limits.send_timeout_ms / 1000
        while not receiver.done():
            getter = asyncio.ensure_future(subscriber.queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return  # the client closed the connection
            if await subscriber.close_if_ended(socket):
                return
            try:
                await asyncio.wait_for(socket.send_str(getter.result()), timeout_s)
            except (TimeoutError, ConnectionError):
                return

    @staticmethod
    async def _drain_incoming(socket: web.WebSocketResponse) -> None:
        """Read (and ignore) client frames so pings and the close handshake are processed."""
        async for _ in socket:
            pass
