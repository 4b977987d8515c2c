"""reap (proposal order and limits) and gossip_batch (cursors, echo, byte limits)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from emrchain.mempool import MempoolConfig
from emrchain.mempool import pending as pending_module
from tests.mempool.txs import ScriptedCheck, anchor, make_pool, sender_key, tx_id

SMALL = len(anchor(0, 1))
BIG = len(anchor(0, 1, cid_bytes=64))


def test_reap_is_oldest_first_and_in_nonce_order() -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1), anchor(1, 1)])
    pool.admit_batch([anchor(0, 2), anchor(2, 1), anchor(1, 2)])
    expected = [anchor(0, 1), anchor(1, 1), anchor(0, 2), anchor(2, 1), anchor(1, 2)]
    assert pool.reap(100, 1 << 20) == expected
    assert pool.reap(100, 1 << 20) == expected  # reaping removes nothing
    assert pool.reap(2, 1 << 20) == expected[:2]
    assert pool.reap(100, 3 * SMALL) == expected[:3]
    assert pool.reap(0, 1 << 20) == []
    assert pool.reap(100, SMALL - 1) == []


def test_reap_with_ids_gives_each_transactions_own_id() -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1), anchor(1, 1), anchor(0, 2), anchor(2, 1, cid_bytes=64)])
    for max_txs, max_bytes in ((100, 1 << 20), (2, 1 << 20), (100, 2 * SMALL), (0, 1 << 20)):
        txs, ids = pool.reap_with_ids(max_txs, max_bytes)
        assert txs == pool.reap(max_txs, max_bytes)
        assert ids == [tx_id(raw) for raw in txs]


def test_a_transaction_that_does_not_fit_ends_its_senders_run_only() -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1, cid_bytes=64), anchor(0, 2), anchor(1, 1)])
    # sender 0's nonce 1 does not fit, so its nonce 2 (which would) must not be proposed
    assert BIG > SMALL + 10
    assert pool.reap(100, SMALL + 10) == [anchor(1, 1)]


@pytest.mark.parametrize(("max_txs", "max_bytes"), [(-1, 10), (1, -1), (True, 10), (1, 2.0)])
def test_reap_refuses_bad_limits(max_txs: object, max_bytes: object) -> None:
    with pytest.raises(ValueError):
        make_pool().reap(max_txs, max_bytes)  # type: ignore[arg-type]


def test_gossip_streams_each_transaction_once_per_cursor() -> None:
    pool = make_pool()
    txs = [anchor(sender, 1) for sender in range(5)]
    pool.admit_batch(txs)
    first, cursor = pool.gossip_batch(0, 2, 1 << 20)
    second, cursor = pool.gossip_batch(cursor, 2, 1 << 20)
    third, cursor = pool.gossip_batch(cursor, 2, 1 << 20)
    assert first + second + third == txs
    assert (len(first), len(second), len(third)) == (2, 2, 1)
    assert cursor == pool.latest_sequence == 5
    assert pool.gossip_batch(cursor, 2, 1 << 20) == ([], cursor)
    pool.admit_batch([anchor(0, 2)])
    assert pool.gossip_batch(cursor, 2, 1 << 20) == ([anchor(0, 2)], 6)


def test_gossip_does_not_echo_to_the_origin_peer() -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1)], origin="peer-a")
    pool.admit_batch([anchor(1, 1)])
    pool.admit_batch([anchor(2, 1)], origin="peer-b")
    assert pool.gossip_batch(0, 10, 1 << 20, peer="peer-a") == ([anchor(1, 1), anchor(2, 1)], 3)
    assert pool.gossip_batch(0, 10, 1 << 20, peer="peer-b") == ([anchor(0, 1), anchor(1, 1)], 3)
    # skipped echoes still advance the cursor, so they are not rescanned
    assert pool.gossip_batch(2, 10, 1 << 20, peer="peer-b") == ([], 3)


def test_a_reconnected_peer_gets_the_whole_pool_it_had_then_then_local_gossip() -> None:
    pool = make_pool()
    pool.admit_batch([anchor(0, 1)], origin="peer-a")  # peer-a's own: it may have lost it
    pool.admit_batch([anchor(1, 1)], origin="peer-b")
    pool.admit_batch([anchor(2, 1)])
    through = pool.latest_sequence  # peer-a reconnects now
    pool.admit_batch([anchor(0, 2)], origin="peer-a")  # sent by it since: never echoed
    pool.admit_batch([anchor(1, 2)], origin="peer-b")  # relayed by nobody after the snapshot
    pool.admit_batch([anchor(2, 2)])
    batch, cursor = pool.gossip_batch(
        0, 10, 1 << 20, peer="peer-a", local_only=True, relay_all_through=through
    )
    assert batch == [anchor(0, 1), anchor(1, 1), anchor(2, 1), anchor(2, 2)]
    assert cursor == pool.latest_sequence
    # Paced like any gossip: at most max_txs per call, the cursor resumes the snapshot.
    first, cursor = pool.gossip_batch(
        0, 2, 1 << 20, peer="peer-a", local_only=True, relay_all_through=through
    )
    rest, _ = pool.gossip_batch(
        cursor, 10, 1 << 20, peer="peer-a", local_only=True, relay_all_through=through
    )
    assert first + rest == batch


def test_gossip_stops_at_the_byte_limit_instead_of_skipping() -> None:
    config = replace(MempoolConfig(), max_tx_bytes=BIG)
    pool = make_pool(config)
    txs = [anchor(0, 1), anchor(1, 1, cid_bytes=64), anchor(0, 2)]
    pool.admit_batch(txs)
    batch, cursor = pool.gossip_batch(0, 10, SMALL + BIG)
    assert batch == txs[:2] and cursor == 2
    assert pool.gossip_batch(cursor, 10, BIG) == (txs[2:], 3)


def test_gossip_refuses_limits_that_could_stall() -> None:
    pool = make_pool()
    with pytest.raises(ValueError, match="max_bytes"):
        pool.gossip_batch(0, 10, pool.config.max_tx_bytes - 1)
    with pytest.raises(ValueError, match="max_txs"):
        pool.gossip_batch(0, 0, 1 << 20)
    with pytest.raises(ValueError, match="cursor"):
        pool.gossip_batch(-1, 10, 1 << 20)


def test_gossip_skips_removed_transactions_and_survives_compaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pending_module, "COMPACT_MINIMUM_ENTRIES", 0)
    pool = make_pool()
    pool.admit_batch([anchor(0, 1), anchor(1, 1), anchor(0, 2), anchor(2, 1), anchor(3, 1)])
    _, cursor = pool.gossip_batch(0, 1, 1 << 20)
    committed = [tx_id(anchor(0, 1)), tx_id(anchor(1, 1)), tx_id(anchor(0, 2))]
    pool.update(committed, {sender_key(0): 2, sender_key(1): 1})
    assert pool.stats().log_entries == 2  # 5 entries, 3 removed: compacted
    assert pool.gossip_batch(cursor, 10, 1 << 20) == ([anchor(2, 1), anchor(3, 1)], 5)
    assert pool.gossip_batch(0, 10, 1 << 20) == ([anchor(2, 1), anchor(3, 1)], 5)


def test_a_readmitted_transaction_is_listed_once() -> None:
    check = ScriptedCheck()
    pool = make_pool(check=check)
    pool.admit_batch([anchor(0, 1), anchor(1, 1)])
    check.banned.add(sender_key(0))
    pool.update([])  # the recheck drops sender 0's transaction
    check.banned.clear()
    pool.admit_batch([anchor(0, 1)])  # the same id again, with a new sequence number
    assert pool.reap(10, 1 << 20) == [anchor(1, 1), anchor(0, 1)]
    assert pool.gossip_batch(0, 10, 1 << 20) == ([anchor(1, 1), anchor(0, 1)], 3)
