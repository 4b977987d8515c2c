"""WebSocket `/ws/patients/{patient_id}`: committed blocks and one patient's new events.

The upgrade request is a signed request (`docs/spec/rpc.md`) and the caller must be allowed to
list that patient's access trail (the patient, an auditor, an admin of an author organisation).
After each commit every subscriber gets one text frame:
`{"height", "time_ms", "block_id", "events": [access events of the patient new in this block]}`.
Bounded like `/ws/blocks`: a subscriber that falls too far behind is disconnected, never
silently skipped; one member holds at most `[rpc] max_stream_subscribers_per_member` of the
slots (429 beyond); closed with 1001 when the node shuts down, as `/ws/blocks` is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from aiohttp import web

from emrchain.rpc.auth import Authenticator
from emrchain.rpc.errors import RpcError, hex_argument
from emrchain.rpc.node_view import NodeView
from emrchain.rpc.records import event_json
from emrchain.rpc.stream import StreamLimits, _Subscriber, refuse_if_stopping, take_slot
from emrchain.state.emr import list_decision, queries
from emrchain.state.result import TxResult
from emrchain.types import Block

MAX_EVENTS_PER_FRAME = 1_000


class _PatientSubscriber(_Subscriber):
    __slots__ = ("patient_id", "seen_total")

    def __init__(self, max_queued_blocks: int, patient_id: bytes, seen_total: int) -> None:
        super().__init__(max_queued_blocks)
        self.patient_id = patient_id
        self.seen_total = seen_total


class PatientEventStream:
    def __init__(
        self, node: NodeView, authenticator: Authenticator, limits: StreamLimits | None = None
    ) -> None:
        self._node = node
        self._auth = authenticator
        self._limits = limits or StreamLimits()
        self._subscribers: set[_PatientSubscriber] = set()
        self.slots = self._limits.slots()
        self._stopping = False
        node.add_commit_listener(self.publish)

    def stop(self) -> None:
        """Close every subscription (1001) and refuse new ones: the node shuts down."""
        self._stopping = True
        for subscriber in self._subscribers:
            subscriber.stop()

    def publish(
        self, block: Block, tx_ids: Sequence[bytes], tx_results: Sequence[TxResult]
    ) -> None:
        if not self._subscribers:
            return
        view = self._node.chain.state_view()
        for subscriber in self._subscribers:
            if subscriber.overflowed:
                continue
            total = queries.access_events_for(view, patient_id=subscriber.patient_id, limit=1).total
            fresh = min(total - subscriber.seen_total, MAX_EVENTS_PER_FRAME)
            events = []
            if fresh > 0:
                trail = queries.access_events_for(
                    view, patient_id=subscriber.patient_id, limit=fresh
                )
                events = [event_json(event) for event in reversed(trail.events)]
            subscriber.seen_total = total
            frame = json.dumps(
                {
                    "height": block.height,
                    "time_ms": block.header.time_ms,
                    "block_id": block.block_id.hex(),
                    "events": events,
                }
            )
            subscriber.offer(frame)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        refuse_if_stopping(self._stopping)
        patient_id = hex_argument(request.match_info["patient_id"], 32, "patient id")
        caller = await self._auth.authenticate(request)
        view = self._node.chain.state_view()
        decision = list_decision(view, caller.key, patient_id=patient_id)
        if not decision.allowed:
            # As the listings answer: who may not follow a patient learns nothing of it.
            raise RpcError(404, "not_found", "nothing here that you may follow")
        take_slot(self.slots, caller.key, "patient stream")
        try:
            return await self._serve(request, patient_id)
        finally:
            self.slots.release(caller.key)

    async def _serve(self, request: web.Request, patient_id: bytes) -> web.WebSocketResponse:
        view = self._node.chain.state_view()
        seen = queries.access_events_for(view, patient_id=patient_id, limit=1).total
        subscriber = _PatientSubscriber(self._limits.max_queued_blocks, patient_id, seen)
        socket = web.WebSocketResponse(heartbeat=30.0)
        await socket.prepare(request)
        self._subscribers.add(subscriber)
        if self._stopping:  # stopped while this upgrade was being answered
            subscriber.stop()
        try:
            while not socket.closed:
                frame = await subscriber.queue.get()
                if await subscriber.close_if_ended(socket):
                    break
                await asyncio.wait_for(socket.send_str(frame), self._limits.send_timeout_ms / 1000)
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            self._subscribers.discard(subscriber)
            if not socket.closed:
                await socket.close()
        return socket
