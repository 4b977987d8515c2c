"""The pending set's always-on invariant: a sender's pending nonces are contiguous from its
committed nonce + 1. Rules keep it by construction; the check exists to catch the bug that
breaks it, so these tests break it on purpose and expect the check to fire."""

from __future__ import annotations

import pytest

from emrchain.invariants import InvariantViolation
from emrchain.mempool.pending import PendingSet
from tests.mempool.txs import anchor, sender_key, tx_id


def pending_of_one_sender(count: int) -> PendingSet:
    pending = PendingSet()
    for nonce in range(1, count + 1):
        raw = anchor(0, nonce)
        pending.append(tx_id(raw), raw, sender_key(0), 0, None)
    return pending


def test_removals_keep_the_nonces_contiguous() -> None:
    pending = pending_of_one_sender(4)
    committed, stale = pending.advance_committed(sender_key(0), 1, {tx_id(anchor(0, 1))})
    assert (committed, stale) == (1, [])
    queue = pending.senders[sender_key(0)]
    assert pending.cut_from(queue.entries[2]) == [tx_id(anchor(0, 4))]
    assert [entry.nonce for entry in pending.senders[sender_key(0)].entries] == [2, 3]


def test_a_gap_after_a_commit_is_caught() -> None:
    pending = pending_of_one_sender(3)
    pending.senders[sender_key(0)].entries[1].nonce = 7  # the bug: a queue out of step
    with pytest.raises(InvariantViolation, match="contiguous"):
        pending.advance_committed(sender_key(0), 1, {tx_id(anchor(0, 1))})


def test_a_queue_whose_committed_nonce_drifted_is_caught_at_a_cut() -> None:
    pending = pending_of_one_sender(3)
    queue = pending.senders[sender_key(0)]
    queue.committed_nonce = 1  # the bug: entries no longer start at committed + 1
    with pytest.raises(InvariantViolation, match="contiguous"):
        pending.cut_from(queue.entries[2])
