"""`POST /txs?wait=commit`: answer a submission only once its accepted transactions are final.

A plain `POST /txs` answers at admission: `accepted` means "in this node's mempool, in memory"
(`docs/spec/rpc.md` §Acknowledgements). With `wait=commit` the node registers a waiter for
every transaction of the batch before admitting it (so no commit can slip past), admits the
batch, then waits, at most `[rpc] commit_wait_timeout_ms`, until each accepted transaction is
committed (its height, index and result code) or has left the mempool uncommitted (dropped:
another transaction took its nonce, or a recheck refused it). Not all final in time: 504
`commit_timeout`, which says that they may still commit. The node stopping meanwhile: 503
`shutting_down`. Waiters are shared between requests for the same transaction and bounded by
`[rpc] max_txs_waiting_for_commit`, checked before anything is admitted.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from emrchain.mempool import Admission
from emrchain.rpc.commit_waits import (
    CommittedTx,
    CommitWaits,
    TxDropped,
    WaitLimitError,
    WaitsClosedError,
)
from emrchain.rpc.errors import RpcError

WAIT_COMMIT = "commit"
"""The only value of the `wait` query parameter."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one transaction of a waited-for batch."""

    admission: Admission
    committed: CommittedTx | None
    """None: refused at admission, or dropped after it."""

    @property
    def name(self) -> str:
        if not self.admission.accepted:
            return "refused"
        return "committed" if self.committed is not None else "dropped"

    def json(self) -> dict[str, Any]:
        admission, committed = self.admission, self.committed
        return {
            "tx_id": admission.tx_id.hex(),
            "accepted": admission.accepted,
            "code": str(admission.code),
            "reason": admission.reason,
            "outcome": self.name,
            "height": committed.height if committed else None,
            "index": committed.index if committed else None,
            "result_code": committed.code if committed else None,
        }


def wants_commit(query: str | None) -> bool:
    """The `wait` query parameter: absent, or `commit`; anything else is a 400."""
    if query is None:
        return False
    if query != WAIT_COMMIT:
        # Refused before the body is read: the connection closes, the body left unread.
        raise RpcError(400, "bad_wait", f"wait must be {WAIT_COMMIT!r} (or absent)", close=True)
    return True


async def admit_and_wait(
    waits: CommitWaits,
    txs: Sequence[bytes],
    admit: Callable[[list[bytes]], Awaitable[list[Admission]]],
    timeout_s: float,
) -> list[Outcome]:
    """Admit `txs` and wait for the accepted ones to be final (module docstring)."""
    tx_ids = list(dict.fromkeys(hashlib.sha256(tx).digest() for tx in txs))
    futures = _expect_all(waits, tx_ids)
    try:
        admissions = await admit(list(txs))
        accepted = {item.tx_id for item in admissions if item.accepted}
        waiting = [futures[tx_id] for tx_id in accepted]
        if waiting:
            # asyncio.wait, not wait_for: a shared future must not be cancelled by our timeout.
            _, late = await asyncio.wait(waiting, timeout=timeout_s)
            if late:
                raise RpcError(
                    504,
                    "commit_timeout",
                    f"{len(late)} of the {len(waiting)} accepted transactions were not committed "
                    f"within {timeout_s * 1000:.0f} ms. They are in this node's mempool and may "
                    "still commit: ask GET /txs/{tx_id}, and do not sign another transaction "
                    "with their nonces",
                )
        return [_outcome(item, futures) for item in admissions]
    finally:
        for tx_id in tx_ids:
            waits.forget(tx_id)


def _expect_all(
    waits: CommitWaits, tx_ids: list[bytes]
) -> dict[bytes, asyncio.Future[CommittedTx]]:
    """A waiter for each id, or none at all (503) when the bound or a stopping node says no."""
    futures: dict[bytes, asyncio.Future[CommittedTx]] = {}
    try:
        for tx_id in tx_ids:
            futures[tx_id] = waits.expect(tx_id)
    except (WaitLimitError, WaitsClosedError) as error:
        for tx_id in futures:
            waits.forget(tx_id)
        if isinstance(error, WaitsClosedError):
            raise RpcError(
                503, "shutting_down", "the node is shutting down", retry_after_s=1.0
            ) from None
        raise RpcError(
            503,
            "too_many_txs_waiting",
            "too many transactions wait for their commit; nothing was admitted",
            retry_after_s=1.0,
        ) from None
    return futures


def _outcome(admission: Admission, futures: dict[bytes, asyncio.Future[CommittedTx]]) -> Outcome:
    if not admission.accepted:  # its id may even be a placeholder (a batch refused whole)
        return Outcome(admission, None)
    try:
        return Outcome(admission, futures[admission.tx_id].result())
    except TxDropped:
        return Outcome(admission, None)
    except WaitsClosedError:
        raise RpcError(
            503,
            "shutting_down",
            "the node shut down before the transactions were committed; they may still "
            "commit on the other validators: ask another node GET /txs/{tx_id}",
        ) from None
