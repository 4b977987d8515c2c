"""update: removal of committed and stale transactions, recheck, and input validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from emrchain.mempool import AdmissionCode, Mempool, MempoolConfig
from emrchain.types import Transaction, TxKind
from tests.mempool.txs import (
    CHAIN_ID,
    Chain,
    CountingVerifier,
    ScriptedCheck,
    anchor,
    make_pool,
    sender_key,
    signer,
    tx_id,
)
from tests.vectors.generate_types import sample_fields


class RefuseIds:
    """A stateful check refusing chosen transaction bytes; records the batch sizes it gets."""

    def __init__(self) -> None:
        self.refused: set[bytes] = set()
        self.calls: list[int] = []
        self.judged: list[bytes] = []

    def __call__(self, txs: Sequence[bytes]) -> list[tuple[str, str]]:
        self.calls.append(len(txs))
        self.judged.extend(txs)
        return [("revoked", "member revoked") if raw in self.refused else ("ok", "") for raw in txs]


def test_committed_transactions_leave_and_their_nonces_advance() -> None:
    chain = Chain()
    pool = make_pool(chain=chain)
    pool.admit_batch([anchor(0, 1), anchor(0, 2), anchor(0, 3), anchor(1, 1)])
    chain.nonces.update({sender_key(0): 2, sender_key(1): 1})
    result = pool.update(
        [tx_id(anchor(0, 1)), tx_id(anchor(0, 2)), tx_id(anchor(1, 1))],
        {sender_key(0): 2, sender_key(1): 1},
    )
    assert (result.committed_txs, result.stale_txs, result.recheck_dropped_txs) == (3, 0, 0)
    assert result.dropped_tx_ids == ()
    assert pool.reap(10, 1 << 20) == [anchor(0, 3)]
    assert pool.pending_nonces(sender_key(0)) == (2, 3)
    assert pool.pending_nonces(sender_key(1)) is None
    assert pool.stats().size_bytes == len(anchor(0, 3))
    assert pool.admit_batch([anchor(0, 4), anchor(1, 2)])[1].accepted  # asks the chain again


def test_the_committed_nonce_of_our_own_included_transactions_is_inferred() -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1), anchor(0, 2), anchor(0, 3)])
    result = pool.update([tx_id(anchor(0, 2))])  # nonce 2 committed implies nonce 1 was too
    assert (result.committed_txs, result.stale_txs) == (1, 1)
    assert pool.pending_nonces(sender_key(0)) == (2, 3)


def test_a_nonce_used_by_another_transaction_makes_ours_stale() -> None:
    chain = Chain()
    pool = make_pool(chain=chain)
    pool.admit_batch([anchor(0, 1), anchor(0, 2)])
    foreign = anchor(0, 1, variant=1)  # the block carries a different nonce-1 transaction
    chain.nonces[sender_key(0)] = 1
    result = pool.update([tx_id(foreign)], {sender_key(0): 1})
    assert (result.committed_txs, result.stale_txs) == (0, 1)
    assert result.dropped_tx_ids == (tx_id(anchor(0, 1)),)
    assert pool.reap(10, 1 << 20) == [anchor(0, 2)]
    [again] = pool.admit_batch([foreign])
    assert again.code == AdmissionCode.DUPLICATE and "committed" in again.reason


def test_a_nonce_beyond_every_pending_one_empties_the_sender() -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1), anchor(0, 2)])
    result = pool.update([], {sender_key(0): 9})
    assert result.stale_txs == 2 and len(pool) == 0
    assert pool.stats().senders == 0


def test_recheck_drops_a_refused_transaction_and_the_later_nonces_of_its_sender() -> None:
    check = RefuseIds()
    pool = make_pool(replace(MempoolConfig(), recheck_batch_txs=2), check=check)
    txs = [anchor(0, nonce) for nonce in (1, 2, 3, 4)] + [anchor(1, 1)]
    pool.admit_batch(txs)
    check.calls.clear()
    check.refused.add(anchor(0, 3))
    result = pool.update([])
    assert result.recheck_dropped_txs == 2
    assert set(result.dropped_tx_ids) == {tx_id(anchor(0, 3)), tx_id(anchor(0, 4))}
    assert pool.reap(10, 1 << 20) == [anchor(0, 1), anchor(0, 2), anchor(1, 1)]
    assert pool.pending_nonces(sender_key(0)) == (0, 2)
    # calls of at most recheck_batch_txs; sender 0's nonce 4 was skipped once 3 was cut
    assert check.calls == [2, 2, 1]


def test_recheck_of_a_banned_sender_drops_all_its_transactions() -> None:
    check = ScriptedCheck()
    pool = make_pool(check=check)
    pool.admit_batch([anchor(0, 1), anchor(1, 1), anchor(0, 2)])
    check.banned.add(sender_key(0))
    result = pool.update([])
    assert result.recheck_dropped_txs == 2
    assert pool.reap(10, 1 << 20) == [anchor(1, 1)]


def test_a_targeted_recheck_judges_only_the_named_senders_in_nonce_order() -> None:
    check = RefuseIds()
    pool = make_pool(replace(MempoolConfig(), recheck_batch_txs=2), check=check)
    pool.admit_batch([anchor(0, 1), anchor(1, 1), anchor(0, 2), anchor(2, 1), anchor(0, 3)])
    check.judged.clear()
    check.refused.update({anchor(0, 2), anchor(2, 1)})  # 2 is not named: it stays
    result = pool.update([], None, recheck_senders={sender_key(0), sender_key(5)})
    # Sender 0's in nonce order, in calls of 2; its nonce 3 was cut with 2, never judged.
    assert check.judged == [anchor(0, 1), anchor(0, 2)]
    assert set(result.dropped_tx_ids) == {tx_id(anchor(0, 2)), tx_id(anchor(0, 3))}
    assert result.recheck_dropped_txs == 2
    assert pool.reap(10, 1 << 20) == [anchor(0, 1), anchor(1, 1), anchor(2, 1)]


def test_an_empty_recheck_set_rechecks_nothing() -> None:
    check = RefuseIds()
    pool = make_pool(check=check)
    pool.admit_batch([anchor(0, 1)])
    check.calls.clear()
    check.refused.add(anchor(0, 1))
    assert pool.update([], None, recheck_senders=()).recheck_dropped_txs == 0
    assert check.calls == [] and len(pool) == 1


def test_recheck_now_drops_what_the_check_refuses_for_the_named_senders() -> None:
    check = ScriptedCheck()
    pool = make_pool(check=check)
    pool.admit_batch([anchor(0, 1), anchor(0, 2), anchor(1, 1)])
    check.banned.update({sender_key(0), sender_key(1)})
    assert set(pool.recheck([sender_key(0)])) == {tx_id(anchor(0, 1)), tx_id(anchor(0, 2))}
    assert pool.reap(10, 1 << 20) == [anchor(1, 1)]
    assert make_pool().recheck([sender_key(0)]) == ()  # no stateful check: nothing to judge


def test_last_pending_is_the_newest_transaction_of_the_sender() -> None:
    pool = make_pool()
    assert pool.last_pending(sender_key(0)) is None
    pool.admit_batch([anchor(0, 1), anchor(1, 1), anchor(0, 2)])
    assert pool.last_pending(sender_key(0)) == (2, anchor(0, 2))
    pool.update([tx_id(anchor(0, 1)), tx_id(anchor(0, 2))])
    assert pool.last_pending(sender_key(0)) is None
    assert pool.last_pending(sender_key(1)) == (1, anchor(1, 1))


def test_committed_ids_are_not_verified_again() -> None:
    verifier = CountingVerifier()
    pool = make_pool(verifier=verifier)
    foreign = anchor(3, 1)  # committed through another node's proposal, never seen here
    pool.update([tx_id(foreign)], {sender_key(3): 1})
    [result] = pool.admit_batch([foreign])
    assert result.code == AdmissionCode.DUPLICATE
    assert verifier.calls == []


@pytest.mark.parametrize(
    ("ids", "nonces", "message"),
    [
        ([b"short"], {}, "not 32 bytes"),
        (["x" * 32], {}, "not 32 bytes"),
        ([], {b"short": 1}, "32-byte sender"),
        ([], {sender_key(0): -1}, "not a u64"),
        ([], {sender_key(0): "1"}, "not an int"),
    ],
)
def test_bad_update_input_raises_and_changes_nothing(
    ids: list[object], nonces: dict[object, object], message: str
) -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1), anchor(0, 2)])
    with pytest.raises(ValueError, match=message):
        pool.update(ids, nonces)  # type: ignore[arg-type]
    assert pool.reap(10, 1 << 20) == [anchor(0, 1), anchor(0, 2)]
    assert pool.pending_nonces(sender_key(0)) == (0, 2)


def committed_nonce(pool: Mempool, sender: bytes) -> int:
    nonces = pool.pending_nonces(sender)
    assert nonces is not None, "the sender has nothing pending"
    return nonces[0]


def test_an_included_transaction_the_state_did_not_apply_does_not_raise() -> None:
    # The proposer put nonce 2 before nonce 1: execution refused 2 (NONCE_GAP, its nonce not
    # consumed) and applied 1, so the state's nonce is 1, below an included transaction's.
    pool = make_pool()
    pool.admit_batch([anchor(0, 1), anchor(0, 2), anchor(0, 3)])
    result = pool.update([tx_id(anchor(0, 2)), tx_id(anchor(0, 1))], {sender_key(0): 1})
    assert (result.committed_txs, result.stale_txs, result.dropped_tx_ids) == (1, 0, ())
    assert tx_id(anchor(0, 1)) not in [tx_id(raw) for raw in pool.reap(10, 1 << 20)]
    # The sender's queue follows the state's nonce, not the included transaction's.
    assert committed_nonce(pool, sender_key(0)) == 1


def test_an_included_nonce_gap_leaves_the_committed_nonce_where_the_state_has_it() -> None:
    # Only nonce 2 was included while the state's nonce is 0: nothing applied, nothing moves.
    pool = make_pool()
    pool.admit_batch([anchor(0, 1), anchor(0, 2)])
    result = pool.update([tx_id(anchor(0, 2))], {sender_key(0): 0})
    assert (result.committed_txs, result.stale_txs, result.dropped_tx_ids) == (0, 0, ())
    assert committed_nonce(pool, sender_key(0)) == 0
    assert pool.reap(10, 1 << 20)[0] == anchor(0, 1)  # still the sender's next


def test_a_committed_nonce_cannot_move_back() -> None:
    chain = Chain()
    chain.nonces[sender_key(0)] = 5
    pool = Mempool(MempoolConfig(), CHAIN_ID, chain)
    pool.admit_batch([anchor(0, 6)])
    with pytest.raises(ValueError, match="moves back from 5 to 4"):
        pool.update([], {sender_key(0): 4})
    assert pool.pending_nonces(sender_key(0)) == (5, 6)


def access_event(sender: int, nonce: int) -> bytes:
    fields = dict(sample_fields()[TxKind.ACCESS_EVENT])
    return Transaction.create(signer(sender), CHAIN_ID, TxKind.ACCESS_EVENT, nonce, fields).encode()


def test_pending_access_events_are_counted_through_admission_commit_and_recheck() -> None:
    """The count the consensus driver reads to cut its commit pause short for a waiting
    reader: it follows every way a transaction enters and leaves the pool."""
    check = RefuseIds()
    pool = make_pool(check=check)
    reads = [access_event(0, 1), access_event(0, 2), access_event(1, 1)]
    assert all(item.accepted for item in pool.admit_batch([*reads, anchor(2, 1)]))
    assert pool.pending_access_events == 3
    pool.update([tx_id(reads[0]), tx_id(anchor(2, 1))], {sender_key(0): 1, sender_key(2): 1})
    assert pool.pending_access_events == 2  # committed ones leave the count, anchors never count
    check.refused.add(reads[2])
    pool.update([])
    assert pool.pending_access_events == 1  # a recheck refusal leaves it too
    pool.update([], {sender_key(0): 2})  # its nonce went to another transaction: stale
    assert pool.pending_access_events == 0 and len(pool) == 0
