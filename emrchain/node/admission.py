"""Admission pipeline: signatures of incoming batches are verified in a worker thread, ahead of
their admission on the event loop.

Why: `Mempool.admit_batch` verifies inside the call, so the event loop stood still for the
whole verification (the compiled verifier releases the GIL, but the loop thread waited for it)
and nothing else — executing a block, reading the next request, consensus — used the other
core meanwhile. Here verification of batch k+1 runs in a thread while the loop admits batch k
and does its other work. The worker takes the batches handed to it one after another from its
own queue, so it does not wait for the loop between batches either: while the loop executes a
block, the other core keeps verifying what arrived before.

Order and rules are unchanged: batches are admitted one at a time, in arrival order, by the
same `admit_batch` call, which sees the pool as it is at that moment; the worker only computes
signature outcomes (a pure function of the bytes) and the mempool's verify hook returns those
instead of verifying again. Nothing here touches consensus or state.

Bounded: at most `max_queued_batches` batches wait to be handed to the worker, and as many
(plus the one being handed over) are with the worker or wait for admission; a full queue makes
the submitter (RPC handler, P2P receive loop) wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from emrchain import _core
from emrchain.config.node import MempoolSection
from emrchain.mempool import Mempool
from emrchain.mempool.admission import Admission

logger = logging.getLogger(__name__)

VerifyTransactions = Callable[[Sequence[bytes], int], bytes]


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The `[mempool]` settings of these names (`emrchain/config/node.py` says what each does);
    the node builds this in `node/wiring.py`, the defaults are the settings' defaults."""

    max_queued_batches: int = MempoolSection.max_queued_batches
    verify_threads: int = MempoolSection.verify_threads


@dataclass(slots=True, eq=False)
class _Request:
    txs: list[bytes]
    origin: Hashable | None
    result: asyncio.Future[list[Admission]] | None
    verdicts: dict[bytes, int] = field(default_factory=dict)
    """Signature outcome of each transaction the worker verified, by its bytes."""
    checked: tuple[bytes, list[bytes]] | None = None
    """The batch check of `txs` (verdicts, tx ids) pre-verification ran, for admission."""
    todo: list[bytes] = field(default_factory=list)
    """What the worker verifies for this batch, in the order of its outcome."""
    verification: asyncio.Future[bytes] | None = None
    """The worker's outcome for `todo`, once it has run."""


class AdmissionPipeline:
    """Create, `attach(mempool)`, `start()`; then `admit` / `enqueue`; `stop()` at shutdown."""

    def __init__(
        self,
        limits: AdmissionLimits | None = None,
        verify: VerifyTransactions | None = None,
    ) -> None:
        self._limits = limits or AdmissionLimits()
        self._verify = verify or _core.verify_transactions
        self._mempool: Mempool | None = None
        self._current: dict[bytes, int] | None = None
        self._incoming: asyncio.Queue[_Request] | None = None
        self._verified: asyncio.Queue[_Request] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self.preverified_txs = 0

    def attach(self, mempool: Mempool) -> None:
        self._mempool = mempool

    # ------------------------------------------------------------ mempool hook

    def verify_hook(self, txs: Sequence[bytes], threads: int) -> bytes:
        """The mempool's `verify_transactions`: outcomes the worker computed for the batch being
        admitted, and a real verification for anything else (JSON route, or a tx the worker
        skipped)."""
        known = self._current
        if not known:
            return self._verify(txs, threads)
        outcome = bytearray(len(txs))
        missing: list[int] = []
        for index, tx in enumerate(txs):
            verdict = known.get(tx)
            if verdict is None:
                missing.append(index)
            else:
                outcome[index] = verdict
        if missing:
            verified = self._verify([txs[index] for index in missing], threads)
            for index, verdict in zip(missing, verified, strict=True):
                outcome[index] = verdict
        return bytes(outcome)

    # ---------------------------------------------------------------- running

    def start(self) -> None:
        size = self._limits.max_queued_batches
        self._incoming = asyncio.Queue(maxsize=size)
        self._verified = asyncio.Queue(maxsize=size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")
        self._tasks = [
            asyncio.create_task(self._verify_loop()),
            asyncio.create_task(self._admit_loop()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def admit(self, txs: list[bytes], origin: Hashable | None = None) -> list[Admission]:
        """Admit `txs` after every batch submitted before; the per-transaction outcomes."""
        if self._incoming is None:  # not started (tests, tools): admit right away
            return self._admit_now(txs, origin)
        result: asyncio.Future[list[Admission]] = asyncio.get_running_loop().create_future()
        await self._incoming.put(_Request(txs, origin, result))
        return await result

    async def enqueue(self, txs: list[bytes], origin: Hashable | None = None) -> None:
        """Admit `txs` in order without waiting for the outcome (gossip)."""
        if self._incoming is None:
            self._admit_now(txs, origin)
            return
        await self._incoming.put(_Request(txs, origin, None))

    def _admit_now(
        self,
        txs: list[bytes],
        origin: Hashable | None,
        checked: tuple[bytes, list[bytes]] | None = None,
    ) -> list[Admission]:
        assert self._mempool is not None, "attach a mempool first"
        return self._mempool.admit_batch(txs, origin=origin, checked=checked)

    async def _verify_loop(self) -> None:
        assert self._incoming is not None and self._verified is not None
        mempool = self._mempool
        assert mempool is not None
        chain_id = mempool.chain_id
        max_tx_bytes = mempool.config.max_tx_bytes
        max_batch_txs = mempool.config.max_batch_txs
        while True:
            request = await self._incoming.get()
            txs = request.txs
            if len(txs) <= max_batch_txs:  # an oversized batch is refused unverified
                try:
                    self._start_verification(request, chain_id, max_tx_bytes)
                except Exception:  # e.g. a non-bytes item: admit_batch reports it properly
                    logger.exception("pre-verification of a batch of %d failed", len(txs))
            await self._verified.put(request)

    def _start_verification(self, request: _Request, chain_id: bytes, max_tx_bytes: int) -> None:
        """Hand the worker thread the signatures admission will need: structurally valid
        transactions the mempool will not refuse or answer from what it knows.

        Not awaited here: the worker takes batch after batch from its own queue, so it keeps
        verifying while the loop is busy (executing a block takes tens of milliseconds), and
        the admission loop awaits each batch's outcome in order. The `_verified` queue bounds
        how many batches are handed over."""
        mempool = self._mempool
        assert mempool is not None
        txs = request.txs
        verdicts, ids = request.checked = _core.check_transactions(txs, chain_id, max_tx_bytes)
        settled = mempool.signatures_settled(ids)
        pairs = zip(txs, verdicts, settled, strict=True)
        todo = [tx for tx, refused, known in pairs if not (refused or known)]
        if todo:
            loop = asyncio.get_running_loop()
            request.todo = todo
            request.verification = loop.run_in_executor(
                self._executor, self._verify, todo, self._limits.verify_threads
            )

    async def _await_verification(self, request: _Request) -> None:
        if request.verification is None:
            return
        try:
            outcome = await request.verification
        except Exception:  # admission verifies what is missing itself (verify_hook)
            logger.exception("pre-verification of a batch of %d failed", len(request.txs))
            return
        request.verdicts = dict(zip(request.todo, outcome, strict=True))
        self.preverified_txs += len(request.todo)

    async def _admit_loop(self) -> None:
        assert self._verified is not None
        while True:
            request = await self._verified.get()
            await self._await_verification(request)
            self._current = request.verdicts
            try:
                admissions = self._admit_now(request.txs, request.origin, request.checked)
            except Exception as error:  # a bug: fail this batch, keep admitting the others
                logger.exception("admission of a batch of %d failed", len(request.txs))
                if request.result is not None and not request.result.done():
                    request.result.set_exception(error)
                continue
            finally:
                self._current = None
            if request.result is not None and not request.result.done():
                request.result.set_result(admissions)
