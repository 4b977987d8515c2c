"""The measured window of a load run: submit prepared batches, follow commits, time each tx.

Submission: each lane (see `prepare`) sends its batches one request at a time, in order, to its
node, through the binary batch route. At an offered rate, batch j of the interleaved sequence
of all lanes is due at `start + j * batch_size / rate`; a lane that is still waiting for a reply
sends late (the achieved offered rate is reported). As fast as accepted, a lane sends its next
batch as soon as the previous reply arrives, while the transactions in flight (submitted,
neither refused nor committed) stay under `max_outstanding`.

Commits are followed through the first node's WebSocket block stream; a transaction's latency
is the time its block summary arrived minus the time its batch was sent, on one monotonic clock.
The run is bounded: it stops submitting after `duration_s` (or when the prepared transactions
run out), then waits at most `grace_s` for the accepted ones to commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from emrchain.bench.prepare import Batch
from emrchain.bench.stats import LoadTracker
from emrchain.rpc.binary import CONTENT_TYPE

REQUEST_TIMEOUT_S = 30.0
PROGRESS_INTERVAL_S = 1.0
OUTSTANDING_POLL_S = 0.005
STREAM_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""A block summary of 20,000 transactions is ~1.4 MB of JSON; headroom for larger limits."""


@dataclass(frozen=True, slots=True)
class WindowOptions:
    duration_s: float
    rate: float | None
    batch_size: int
    max_outstanding: int
    grace_s: float


@dataclass(slots=True)
class WindowResult:
    start_s: float
    window_end_s: float
    """When submission stopped (duration reached or prepared transactions exhausted)."""
    end_s: float
    """When the run stopped waiting for commits."""
    exhausted: bool
    """Every prepared transaction was submitted before the duration ended."""
    stream_error: str | None


class _Window:
    """State shared by the lanes, the stream follower and the progress printer."""

    def __init__(
        self,
        urls: list[str],
        lanes: list[list[Batch]],
        options: WindowOptions,
        clock: Callable[[], float],
    ) -> None:
        self.urls = urls
        self.lanes = lanes
        self.options = options
        self.clock = clock
        self.tracker = LoadTracker()
        self.start_s = 0.0
        self.submitting = True
        self.stream_ready = asyncio.Event()
        self.stream_error: str | None = None

    async def run_lane(self, session: aiohttp.ClientSession, lane: int) -> None:
        options = self.options
        url = self.urls[lane % len(self.urls)] + "/txs"
        lane_count = len(self.lanes)
        tracker = self.tracker
        deadline = self.start_s + options.duration_s
        headers = {"Content-Type": CONTENT_TYPE}
        for position, batch in enumerate(self.lanes[lane]):
            if options.rate is not None:
                due = self.start_s + (position * lane_count + lane) * options.batch_size / (
                    options.rate
                )
                delay = due - self.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                while tracker.outstanding + batch.count > options.max_outstanding:
                    if self.clock() >= deadline:
                        return
                    await asyncio.sleep(OUTSTANDING_POLL_S)
            if self.clock() >= deadline or not self.submitting:
                return
            ids = batch.ids()
            tracker.on_submit(ids, self.clock())
            try:
                async with session.post(url, data=batch.body, headers=headers) as response:
                    reply = await response.read()
                    if response.status != 200:
                        tracker.on_error(ids)
                        continue
                answer = json.loads(reply)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                tracker.on_error(ids)
                continue
            for refusal in answer["refused"]:
                tracker.on_refused(ids[refusal["index"]], refusal["code"])

    async def follow_commits(self, session: aiohttp.ClientSession) -> None:
        tracker = self.tracker
        try:
            async with session.ws_connect(
                self.urls[0] + "/ws/blocks", max_msg_size=STREAM_MAX_MESSAGE_BYTES
            ) as socket:
                self.stream_ready.set()
                async for message in socket:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    now = self.clock()
                    summary = json.loads(message.data)
                    blob = bytes.fromhex("".join(summary["tx_ids"]))
                    tracker.on_commit(
                        [blob[i : i + 32] for i in range(0, len(blob), 32)],
                        now,
                        summary.get("failed", ()),
                    )
                close_code = socket.close_code
        except (aiohttp.ClientError, TimeoutError) as error:
            self.stream_error = f"block stream failed: {error}"
        else:
            self.stream_error = f"block stream closed by the node (code {close_code})"
        finally:
            self.stream_ready.set()

    async def report_progress(self) -> None:
        tracker = self.tracker
        previous_committed, previous_s = 0, self.clock()
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            now = self.clock()
            rate = (tracker.committed - previous_committed) / max(now - previous_s, 1e-9)
            previous_committed, previous_s = tracker.committed, now
            recent = sorted(tracker.latencies_s[-2_000:])
            p95 = recent[int(0.95 * (len(recent) - 1))] * 1000 if recent else float("nan")
            phase = "submitting" if self.submitting else "draining"
            print(
                f"[{now - self.start_s:6.1f} s {phase}] submitted {tracker.submitted} "
                f"committed {tracker.committed} ({rate:,.0f}/s) in flight {tracker.outstanding} "
                f"rejected {tracker.rejected} errors {tracker.errors} recent p95 {p95:.0f} ms",
                file=sys.stderr,
                flush=True,
            )


async def run_window(
    urls: list[str],
    lanes: list[list[Batch]],
    options: WindowOptions,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[LoadTracker, WindowResult]:
    """Submit `lanes` to `urls` (lane l to url l mod len(urls)) and follow commits on urls[0]."""
    window = _Window(urls, lanes, options, clock)
    connector = aiohttp.TCPConnector(limit=len(lanes) + 2)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        follower = asyncio.create_task(window.follow_commits(session))
        await window.stream_ready.wait()
        if window.stream_error is not None:
            raise RuntimeError(window.stream_error)
        window.start_s = clock()
        progress = asyncio.create_task(window.report_progress())
        lane_tasks = [
            asyncio.create_task(window.run_lane(session, lane)) for lane in range(len(lanes))
        ]
        await asyncio.gather(*lane_tasks)
        window.submitting = False
        window_end_s = clock()
        exhausted = window_end_s < window.start_s + options.duration_s
        tracker = window.tracker
        grace_deadline = window_end_s + options.grace_s
        while tracker.lost() and clock() < grace_deadline and not follower.done():
            await asyncio.sleep(0.05)
        end_s = clock()
        progress.cancel()
        follower.cancel()
        for task in (progress, follower):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    stream_error = window.stream_error if tracker.lost() else None
    return tracker, WindowResult(window.start_s, window_end_s, end_s, exhausted, stream_error)
