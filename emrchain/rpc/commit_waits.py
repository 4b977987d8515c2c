"""Waiting for a transaction's fate: the RPC's read route answers only once the reader's access
event is committed (`docs/spec/access-control.md` §6), so it needs to learn, without polling,
when a transaction it admitted is committed, and with which result — or that it left the
mempool without being committed.

The node feeds every durably committed block (`Chain.commit_listeners`) and every transaction
the mempool dropped after a commit (`Chain.drop_listeners`) into `CommitWaits`; a waiter is a
future keyed by transaction id. Bounded: at most `max_waiting` futures exist at once, and a
waiter that would exceed it is refused at once (`WaitLimitError`), before anything is admitted.
Everything runs on the node's event loop.

Two instances exist: the reads' (one reader per access event, `[records] max_reads_waiting`)
and `POST /txs?wait=commit`'s (`shared`: several requests may wait for the same transaction,
one future for all of them; `[rpc] max_txs_waiting_for_commit`). When the node stops, `close`
fails every waiter with `WaitsClosedError`, so no request waits out its timeout on a node that
will commit nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from emrchain.state.result import TxResult
from emrchain.types import Block


@dataclass(frozen=True, slots=True)
class CommittedTx:
    """Where and how a transaction was committed."""

    height: int
    index: int
    block_time_ms: int
    code: int
    message: str


class TxDropped(Exception):  # noqa: N818 - an outcome, delivered through a future
    """The transaction left the mempool without being committed (its nonce was used by another
    transaction, or a recheck refused it)."""


class WaitLimitError(RuntimeError):
    """As many transactions are waited for as the node allows."""


class WaitsClosedError(RuntimeError):
    """The node is shutting down: it commits nothing more (the transaction may still commit on
    the other validators)."""


class CommitWaits:
    """Futures for transactions' commits, resolved from the chain's listeners."""

    def __init__(self, max_waiting: int, *, shared: bool = False) -> None:
        if max_waiting < 1:
            raise ValueError("max_waiting must be at least 1")
        self._max_waiting = max_waiting
        self._shared = shared
        self._waiting: dict[bytes, asyncio.Future[CommittedTx]] = {}
        self._waiters: dict[bytes, int] = {}
        """Waiters per transaction id (shared instances; else always 1)."""
        self._closed = False

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, tx_id: bytes) -> asyncio.Future[CommittedTx]:
        """A future for `tx_id`'s commit; call before the transaction can commit (before it is
        admitted), and `forget` it once per `expect` when done. WaitLimitError when full,
        WaitsClosedError once closed; ValueError if `tx_id` is already waited for and the
        instance is not shared (one reader per access event). Await a shared future with
        `asyncio.wait`, never `wait_for`: a timeout must not cancel it for the others."""
        if self._closed:
            raise WaitsClosedError("the node is shutting down")
        known = self._waiting.get(tx_id)
        if known is not None:
            if not self._shared:
                raise ValueError(f"transaction {tx_id.hex()} is already waited for")
            self._waiters[tx_id] += 1
            return known
        if len(self._waiting) >= self._max_waiting:
            raise WaitLimitError(f"{len(self._waiting)} transactions are waited for already")
        future: asyncio.Future[CommittedTx] = asyncio.get_running_loop().create_future()
        self._waiting[tx_id] = future
        self._waiters[tx_id] = 1
        return future

    def forget(self, tx_id: bytes) -> None:
        """One waiter of `tx_id` stops waiting (idempotent once none is left); the future is
        cancelled, if still pending, when the last one does."""
        count = self._waiters.get(tx_id, 0) - 1
        if count > 0:
            self._waiters[tx_id] = count
            return
        self._waiters.pop(tx_id, None)
        future = self._waiting.pop(tx_id, None)
        if future is None:
            return
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # an outcome nobody asked for is not an error to report


    def close(self) -> None:
        """The node stops: fail every waiter with WaitsClosedError and refuse new ones."""
        self._closed = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(WaitsClosedError("the node is shutting down"))

    def on_commit(
        self, block: Block, tx_ids: Sequence[bytes], tx_results: Sequence[TxResult]
    ) -> None:
        """`Chain.commit_listeners` entry: resolve the waiters of this block's transactions."""
        waiting = self._waiting
        if not waiting:
            return
        header = block.header
        for index, tx_id in enumerate(tx_ids):
            future = waiting.get(tx_id)
            if future is None or future.done():
                continue
            result = tx_results[index]
            future.set_result(
                CommittedTx(header.height, index, header.time_ms, result.code, result.message)
            )

    def on_dropped(self, tx_ids: Sequence[bytes]) -> None:
        """`Chain.drop_listeners` entry: fail the waiters of transactions that left the
        mempool uncommitted."""
        waiting = self._waiting
        if not waiting:
            return
        for tx_id in tx_ids:
            future = waiting.get(tx_id)
            if future is not None and not future.done():
                future.set_exception(TxDropped(tx_id.hex()))
