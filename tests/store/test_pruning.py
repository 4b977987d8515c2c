"""Pruning on real LevelDB stores: what goes, what stays, the base, the protections and the
retain rule (`docs/spec/pruning.md`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emrchain.state.progress import executed_height
from emrchain.store import BlockStore, layout, reconcile
from emrchain.store.errors import HeightPrunedError
from emrchain.store.pruning import (
    Pruner,
    PruneSettings,
    RetainDecision,
    lagging_peer_floor,
    retain_height,
)
from tests.state.chain import ALICE, ChainBuilder, register_tx


def commit_blocks(store: BlockStore, chain: ChainBuilder, count: int) -> list[bytes]:
    """`count` blocks of one registration each; their tx ids."""
    ids = []
    for _ in range(count):
        nonce = chain.height + 1
        built = chain.add_block([register_tx(ALICE, nonce, label=nonce)])
        store.commit_block(built.block, built.commit, built.result)
        ids.extend(built.block.tx_ids)
    return ids


def settings(retain_blocks: int, batch: int = 2, lag_max: int = 100) -> PruneSettings:
    return PruneSettings(retain_blocks, batch, 1_000, lag_max)


def test_the_retain_rule_takes_the_lowest_need() -> None:
    assert retain_height(10, 0, {}) == RetainDecision(1, "retain_blocks = 0: every block is kept")
    assert retain_height(10, 3, {}) == RetainDecision(8, "retain_blocks")
    assert retain_height(10, 3, {"a": None, "b": 9}) == RetainDecision(8, "retain_blocks")
    assert retain_height(10, 3, {"snapshot": 5, "peer": 6}) == RetainDecision(5, "snapshot")
    assert retain_height(10, 50, {}).height == 1
    # A lagging peer at height 2 needs 3..; one 1,000 behind is not waited for past the bound.
    assert lagging_peer_floor(10, 2, 100) == 3
    assert lagging_peer_floor(1_000, 0, 100) == 901
    assert lagging_peer_floor(10, None, 100) is None


def test_pruning_deletes_below_the_retain_height_and_moves_the_base(
    store: BlockStore, chain: ChainBuilder
) -> None:
    ids = commit_blocks(store, chain, 10)
    assert store.base_height() == 1
    pruner = Pruner(store, settings(3, batch=2))
    decision = pruner.decide()
    assert decision == RetainDecision(8, "retain_blocks")
    assert pruner.prune_batch(decision.height) == 3  # one bounded batch: heights 1, 2
    assert store.base_height() == 3
    assert pruner.prune_to(decision.height) == 8
    assert store.base_height() == 8 and pruner.heights_pruned == 7
    for height in range(1, 8):
        assert store.block(height) is None and store.commit(height) is None
        assert store.tx_results(height) is None
        assert store.database.get(layout.undo_key(height)) is None
        assert store.tx_location(ids[height - 1]) is None
        assert store.tx_proof(ids[height - 1]) is None
    for height in range(8, 11):
        assert store.block(height) is not None and store.tx_location(ids[height - 1]) is not None
    assert store.app_hash(7) is not None and store.app_hash(6) is None  # base's link kept
    assert store.validator_set(1) is not None  # evidence verification reads old sets
    status = reconcile(store, application_height=executed_height, full=True)
    assert status.problems == ()
    # Commits go on above the base; pruning again moves it with them.
    commit_blocks(store, chain, 2)
    assert pruner.prune_to(pruner.decide().height) == 10


def test_protections_hold_back_pruning(store: BlockStore, chain: ChainBuilder) -> None:
    commit_blocks(store, chain, 12)
    pruner = Pruner(store, settings(2))
    pruner.protect_snapshots(lambda: 4)
    pruner.protect("lagging_peer", lambda: lagging_peer_floor(12, 6, 100))
    assert pruner.decide() == RetainDecision(5, "state_sync_snapshot")
    pruner.protect_snapshots(lambda: None)
    assert pruner.decide() == RetainDecision(7, "lagging_peer")

    def broken() -> int | None:
        raise OSError("vault unreadable")

    pruner.protect("erasure_cursor", broken)
    assert pruner.decide().height == 1  # a reader that cannot say keeps everything
    assert pruner.prune_to(pruner.decide().height) == 1 and store.block(1) is not None


def test_retain_blocks_zero_keeps_everything(store: BlockStore, chain: ChainBuilder) -> None:
    commit_blocks(store, chain, 5)
    pruner = Pruner(store, settings(0))
    assert pruner.prune_to(pruner.decide().height) == 1
    assert all(store.block(height) is not None for height in range(1, 6))


def test_a_proof_whose_block_went_meanwhile_names_the_base(
    store: BlockStore, chain: ChainBuilder
) -> None:
    ids = commit_blocks(store, chain, 4)
    location = store.database.get(layout.tx_location_key(ids[0]))
    assert location is not None
    Pruner(store, settings(1)).prune_to(4)
    # The index entry read just before its block was pruned (put back to stage that read).
    store.database.db.put(layout.tx_location_key(ids[0]), location)
    with pytest.raises(HeightPrunedError) as caught:
        store.tx_proof(ids[0])
    assert (caught.value.height, caught.value.base_height) == (1, 4)


def test_base_height_is_bounded_by_the_head(store: BlockStore, chain: ChainBuilder) -> None:
    commit_blocks(store, chain, 2)
    with pytest.raises(ValueError, match=r"outside 1\.\.3"):
        store.set_base_height(4)
    store.set_base_height(3)  # a state-synced store: no block yet above its snapshot
    assert store.base_height() == 3


def test_a_block_left_below_the_base_is_reported(
    store: BlockStore, chain: ChainBuilder, home: Path
) -> None:
    commit_blocks(store, chain, 5)
    raw = store.database.get(layout.block_key(2))
    assert raw is not None
    Pruner(store, settings(2)).prune_to(4)
    store.database.db.put(layout.block_key(2), raw)
    status = reconcile(store, application_height=executed_height, full=True)
    assert status.problems == ("a block below the base 4 is stored (height 2)",)
