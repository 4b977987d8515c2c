"""Undo records, rollback and reindex on real LevelDB stores."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain.devnet.workload import (
    WORKLOAD_ORGANIZATION,
    anchor_transactions,
    registration_transactions,
)
from emrchain.state import keys
from emrchain.state.progress import executed_height
from emrchain.store import BlockStore, ChainDatabase, SigningStateStore, layout, reconcile
from emrchain.store.pruning import Pruner, PruneSettings
from emrchain.store.reindex import reindex
from emrchain.store.rollback import RollbackRefusedError, rollback
from emrchain.store.undo import decode_undo
from tests.state.chain import ALICE, CHAIN_ID, ChainBuilder, clients_organization, register_tx


@pytest.fixture
def undo_store(home: Path, chain: ChainBuilder) -> Iterator[BlockStore]:
    store = BlockStore(ChainDatabase.open(home), undo_heights=2)
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    yield store
    store.database.close()


def state_of(store: BlockStore) -> dict[bytes, bytes]:
    with store.database.db.iterator(prefix=layout.STATE) as entries:
        return dict(entries)


def commit_one(store: BlockStore, chain: ChainBuilder) -> list[bytes]:
    nonce = chain.height + 1
    built = chain.add_block([register_tx(ALICE, nonce, label=nonce)])
    store.commit_block(built.block, built.commit, built.result)
    return list(built.block.tx_ids)


def consistent(store: BlockStore) -> bool:
    status = reconcile(store, application_height=executed_height, full=True)
    return status.problems == ()


def test_undo_records_hold_the_overwritten_values_of_the_last_heights(
    undo_store: BlockStore, chain: ChainBuilder
) -> None:
    before = state_of(undo_store)
    commit_one(undo_store, chain)
    undo = dict(decode_undo(undo_store.database.get(layout.undo_key(1)) or b""))
    written = chain.built[0].result.writes
    assert set(undo) == set(written)
    for key, previous in undo.items():
        assert previous == before.get(layout.STATE + key)
    commit_one(undo_store, chain)
    commit_one(undo_store, chain)
    kept = [h for h in (1, 2, 3) if undo_store.database.get(layout.undo_key(h)) is not None]
    assert kept == [2, 3]


def test_rollback_restores_the_state_and_the_same_block_applies_again(
    undo_store: BlockStore, chain: ChainBuilder
) -> None:
    commit_one(undo_store, chain)
    after_one = state_of(undo_store)
    head_one = (undo_store.last_block_id(), undo_store.last_app_hash())
    commit_one(undo_store, chain)
    after_two = state_of(undo_store)
    third_ids = commit_one(undo_store, chain)
    assert undo_store.tx_location(third_ids[0]) is not None

    signing_state = SigningStateStore(undo_store.database)
    signing_state.save(b"guard: signed height 3")
    result = rollback(undo_store)
    assert (result.removed_height, result.head_height) == (3, 2)
    assert signing_state.load() == b"guard: signed height 3"  # never rolled back
    assert state_of(undo_store) == after_two and consistent(undo_store)
    assert undo_store.block(3) is None and undo_store.tx_location(third_ids[0]) is None
    # The same decided block applies again and reaches the same app hash.
    third = chain.built[2]
    undo_store.commit_block(third.block, third.commit, third.result)
    assert undo_store.last_app_hash() == third.result.app_hash and consistent(undo_store)

    rollback(undo_store)
    rollback(undo_store)  # twice: back to 1
    assert state_of(undo_store) == after_one
    assert (undo_store.last_block_id(), undo_store.last_app_hash()) == head_one
    assert consistent(undo_store)
    with pytest.raises(RollbackRefusedError, match="no undo record for height 1"):
        rollback(undo_store)  # undo_heights = 2: height 1's record left the window
    assert undo_store.last_height() == 1


def test_rollback_at_height_one_returns_to_genesis(
    undo_store: BlockStore, chain: ChainBuilder
) -> None:
    genesis_state = state_of(undo_store)
    with pytest.raises(RollbackRefusedError, match="at genesis"):
        rollback(undo_store)
    commit_one(undo_store, chain)
    assert rollback(undo_store).head_height == 0
    assert state_of(undo_store) == genesis_state and consistent(undo_store)
    assert undo_store.last_app_hash() == chain.genesis.app_hash
    first = chain.built[0]
    undo_store.commit_block(first.block, first.commit, first.result)
    assert undo_store.last_app_hash() == first.result.app_hash


def test_rollback_without_undo_records_is_refused(store: BlockStore, chain: ChainBuilder) -> None:
    commit_one(store, chain)
    with pytest.raises(RollbackRefusedError, match="undo_heights"):
        rollback(store)
    assert store.last_height() == 1 and consistent(store)


def test_rollback_onto_a_pruned_block_is_refused(
    undo_store: BlockStore, chain: ChainBuilder
) -> None:
    for _ in range(4):
        commit_one(undo_store, chain)
    Pruner(undo_store, PruneSettings(1, 10, 1_000, 0)).prune_to(4)
    with pytest.raises(RollbackRefusedError, match="block 3 is pruned"):
        rollback(undo_store)
    assert undo_store.last_height() == 4 and consistent(undo_store)


def test_reindex_rebuilds_the_tx_index_from_the_blocks(
    store: BlockStore, chain: ChainBuilder
) -> None:
    ids = [tx_id for _ in range(5) for tx_id in commit_one(store, chain)]
    # A refused re-inclusion of the same bytes (replayed nonce): the index keeps the applied one.
    replay = chain.add_block([chain.built[1].block.txs[0]])
    assert replay.result.tx_results[0].code != 0
    store.commit_block(replay.block, replay.commit, replay.result)
    with store.database.db.iterator(prefix=layout.TX_LOCATION) as entries:
        index = dict(entries)
    assert len(index) == 5
    for key in index:
        store.database.db.delete(key)
    assert all(store.tx_location(tx_id) is None for tx_id in ids)

    report = reindex(store)
    assert (report.from_height, report.to_height, report.entries_written) == (1, 6, 5)
    with store.database.db.iterator(prefix=layout.TX_LOCATION) as entries:
        assert dict(entries) == index
    assert store.tx_proof(ids[1]) is not None and store.tx_location(ids[1]) == (2, 0)
    # After pruning, only the kept blocks are indexed again: the refused replay in block 6 is
    # then the only inclusion of its bytes left, so it is indexed.
    Pruner(store, PruneSettings(2, 10, 1_000, 0)).prune_to(5)
    report = reindex(store)
    assert (report.from_height, report.entries_deleted, report.entries_written) == (5, 1, 2)
    assert store.tx_location(ids[4]) == (5, 0) and store.tx_location(ids[1]) == (6, 0)


def test_anchors_undo_without_reading_their_new_custody_entries(home: Path) -> None:
    """The custody entries anchors create are written blind; the application's rule (no record
    entry before, so no custody entry) answers them without a read, and the record is exact."""
    organization = dataclasses.replace(
        clients_organization(), organization_id=WORKLOAD_ORGANIZATION
    )
    chain = ChainBuilder(organizations=[organization])
    store = BlockStore(ChainDatabase.open(home), undo_heights=1)
    try:
        store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
        registration = chain.add_block(
            registration_transactions(ALICE, WORKLOAD_ORGANIZATION, chain_id=CHAIN_ID, senders=5)
        )
        store.commit_block(registration.block, registration.commit, registration.result)
        before = state_of(store)
        anchors = chain.add_block(anchor_transactions(20, chain_id=CHAIN_ID, senders=5))
        assert [code for code, _ in anchors.result.tx_results] == [0] * 20
        custody = [key for key in anchors.result.writes if key[:1] == keys.RECORD_CUSTODY_PREFIX]
        assert len(custody) == 20
        assert all(key in anchors.result.previous_values for key in custody)  # no read needed
        assert all(anchors.result.previous_values[key] is None for key in custody)
        store.commit_block(anchors.block, anchors.commit, anchors.result)
        undo = dict(
            decode_undo(store.database.get(layout.undo_key(registration.block.height + 1)) or b"")
        )
        assert undo == {key: before.get(layout.STATE + key) for key in anchors.result.writes}
        rollback(store)
        assert state_of(store) == before and consistent(store)
    finally:
        store.database.close()
