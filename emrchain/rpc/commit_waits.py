"""Waiting for a transaction's fate: the RPC's read route answers only once the reader's access
event is committed (`docs/spec/access-control.md` §6), so it needs to learn, without polling,
when a transaction it admitted is committed, and with which result — or that it left the
mempool without being committed.

The node feeds every durably committed block (`Chain.commit_listeners`) and every transaction
the mempool dropped after a commit (`Chain.drop_listeners`) into `CommitWaits`; a waiter is a
future keyed by transaction id. Bounded: at most `max_waiting` futures exist at once, and a
waiter that would exceed it is refused at once (`WaitLimitError`), before anything is admitted.
Everything runs on the node's event loop.
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


class CommitWaits:
    """Futures for transactions' commits, resolved from the chain's listeners."""

    def __init__(self, max_waiting: int) -> None:
        if max_waiting < 1:
            raise ValueError("max_waiting must be at least 1")
        self._max_waiting = max_waiting
        self._waiting: dict[bytes, asyncio.Future[CommittedTx]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, tx_id: bytes) -> asyncio.Future[CommittedTx]:
        """A future for `tx_id`'s commit; call before the transaction can commit (before it is
        admitted), and `forget` it when done. WaitLimitError when full, ValueError if `tx_id`
        is already waited for (one reader per access event)."""
        if tx_id in self._waiting:
            raise ValueError(f"transaction {tx_id.hex()} is already waited for")
        if len(self._waiting) >= self._max_waiting:
            raise WaitLimitError(f"{len(self._waiting)} transactions are waited for already")
        future: asyncio.Future[CommittedTx] = asyncio.get_running_loop().create_future()
        self._waiting[tx_id] = future
        return future

    def forget(self, tx_id: bytes) -> None:
        """Stop waiting for `tx_id` (idempotent); a pending future is cancelled."""
        future = self._waiting.pop(tx_id, None)
        if future is not None and not future.done():
            future.cancel()

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
