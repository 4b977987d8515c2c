"""Startup reconciliation: what a consistent store reports, and that damage is named."""

from __future__ import annotations

from pathlib import Path

from emrchain.state import keys
from emrchain.store import BlockStore, StartupAction, layout, reconcile
from tests.state.chain import ALICE, ChainBuilder, register_tx
from tests.store.conftest import open_store


def commit_blocks(store: BlockStore, chain: ChainBuilder, count: int) -> None:
    for nonce in range(1, count + 1):
        built = chain.add_block([register_tx(ALICE, nonce, label=nonce)])
        store.commit_block(built.block, built.commit, built.result)


def test_empty_store_asks_for_genesis(home: Path) -> None:
    store = open_store(home)
    status = reconcile(store)
    assert status.consistent and status.action is StartupAction.INITIALIZE_FROM_GENESIS
    assert "initialize from genesis" in status.describe()
    store.database.close()


def test_consistent_store_syncs_from_the_next_height(
    store: BlockStore, chain: ChainBuilder
) -> None:
    status = reconcile(store, full=True)
    assert status.consistent and status.next_height == 1
    assert status.action is StartupAction.SYNC_FROM_NEXT_HEIGHT
    commit_blocks(store, chain, 3)
    status = reconcile(store, full=True)
    assert status.problems == ()
    assert (status.last_height, status.application_height, status.next_height) == (3, 3, 4)
    assert status.last_app_hash == chain.state.last_app_hash()


def test_missing_last_block_is_reported(store: BlockStore, chain: ChainBuilder) -> None:
    commit_blocks(store, chain, 2)
    store.database.db.delete(layout.block_key(2))
    status = reconcile(store)
    assert status.action is StartupAction.REFUSE_TO_START
    assert status.problems == ("block, commit or results of height 2 missing",)


def test_application_state_behind_the_blocks_is_reported(
    store: BlockStore, chain: ChainBuilder
) -> None:
    commit_blocks(store, chain, 2)
    progress = layout.state_key(keys.PROGRESS)
    store.database.db.put(progress, (1).to_bytes(8, "big") + bytes(8))
    assert reconcile(store).problems == ("application state is at height 1 but blocks are at 2",)


def test_app_hash_mismatch_and_data_beyond_the_head_are_reported(
    store: BlockStore, chain: ChainBuilder
) -> None:
    commit_blocks(store, chain, 2)
    store.database.db.put(layout.app_hash_key(2), b"\x09" * 32)
    store.database.db.put(layout.block_key(3), b"stray")
    problems = reconcile(store).problems
    assert "the app hash recorded for height 2 differs from the head's" in problems
    assert "data for height 3 exists beyond the head" in problems


def test_full_check_finds_a_broken_link_below_the_head(
    store: BlockStore, chain: ChainBuilder
) -> None:
    commit_blocks(store, chain, 3)
    store.database.db.put(layout.app_hash_key(1), b"\x09" * 32)
    assert reconcile(store).consistent  # the head alone looks fine
    problems = reconcile(store, full=True).problems
    assert "block 2 does not carry the app hash after height 1" in problems
