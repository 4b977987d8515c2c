"""Startup reconciliation: what a consistent store reports, and that damage is named."""

from __future__ import annotations

from pathlib import Path

from emrchain.state import keys
from emrchain.state.progress import executed_height
from emrchain.store import BlockStore, StartupAction, StoreStatus, layout, reconcile
from tests.state.chain import ALICE, ChainBuilder, register_tx
from tests.store.conftest import open_store


def check(store: BlockStore, *, full: bool = False) -> StoreStatus:
    """The node's startup check: the application height read as the node reads it."""
    return reconcile(store, application_height=executed_height, full=full)


def commit_blocks(store: BlockStore, chain: ChainBuilder, count: int) -> None:
    for nonce in range(1, count + 1):
        built = chain.add_block([register_tx(ALICE, nonce, label=nonce)])
        store.commit_block(built.block, built.commit, built.result)


def test_empty_store_asks_for_genesis(home: Path) -> None:
    store = open_store(home)
    status = check(store)
    assert status.consistent and status.action is StartupAction.INITIALIZE_FROM_GENESIS
    assert "initialize from genesis" in status.describe()
    store.database.close()


def test_consistent_store_syncs_from_the_next_height(
    store: BlockStore, chain: ChainBuilder
) -> None:
    status = check(store, full=True)
    assert status.consistent and status.next_height == 1
    assert status.action is StartupAction.SYNC_FROM_NEXT_HEIGHT
    commit_blocks(store, chain, 3)
    status = check(store, full=True)
    assert status.problems == ()
    assert (status.last_height, status.application_height, status.next_height) == (3, 3, 4)
    assert status.last_app_hash == chain.state.last_app_hash()


def test_missing_last_block_is_reported(store: BlockStore, chain: ChainBuilder) -> None:
    commit_blocks(store, chain, 2)
    store.database.db.delete(layout.block_key(2))
    status = check(store)
    assert status.action is StartupAction.REFUSE_TO_START
    assert status.problems == ("block, commit or results of height 2 missing",)


def test_application_state_behind_the_blocks_is_reported(
    store: BlockStore, chain: ChainBuilder
) -> None:
    commit_blocks(store, chain, 2)
    progress = layout.state_key(keys.PROGRESS)
    store.database.db.put(progress, (1).to_bytes(8, "big") + bytes(8))
    assert check(store).problems == ("application state is at height 1 but blocks are at 2",)


def test_app_hash_mismatch_and_data_beyond_the_head_are_reported(
    store: BlockStore, chain: ChainBuilder
) -> None:
    commit_blocks(store, chain, 2)
    store.database.db.put(layout.app_hash_key(2), b"\x09" * 32)
    store.database.db.put(layout.block_key(3), b"stray")
    problems = check(store).problems
    assert "the app hash recorded for height 2 differs from the head's" in problems
    assert "data for height 3 exists beyond the head" in problems


def test_full_check_finds_a_broken_link_below_the_head(
    store: BlockStore, chain: ChainBuilder
) -> None:
    commit_blocks(store, chain, 3)
    store.database.db.put(layout.app_hash_key(1), b"\x09" * 32)
    assert check(store).consistent  # the head alone looks fine
    problems = check(store, full=True).problems
    assert "block 2 does not carry the app hash after height 1" in problems


def test_a_missing_progress_record_is_reported(store: BlockStore, chain: ChainBuilder) -> None:
    """The reader the caller hands over raises StateCorruptionError; reconcile names it."""
    commit_blocks(store, chain, 1)
    store.database.db.delete(layout.state_key(keys.PROGRESS))
    status = check(store)
    assert status.action is StartupAction.REFUSE_TO_START
    assert status.application_height is None
    assert status.problems == (
        "application state: the progress record is missing or malformed (no genesis?)",
    )
