"""BlockStore: genesis, commit/read round-trips, refusals that write nothing, reopening."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from emrchain.state import ExecutionResult, TxResult, read_validator_sets
from emrchain.state.emr import EmrApplication
from emrchain.store import BlockRefusedError, BlockStore, NotInitializedError, StoreError
from emrchain.types import Validator, ValidatorSet
from tests.state.chain import (
    ALICE,
    BOB,
    CHAIN_ID,
    ChainBuilder,
    register_tx,
    signer,
    validator_update_tx,
)
from tests.store.conftest import open_store


def all_entries(store: BlockStore) -> list[tuple[bytes, bytes]]:
    return list(store.database.db.iterator())


def test_genesis_and_blocks_round_trip(store: BlockStore, chain: ChainBuilder) -> None:
    assert (store.last_height(), store.last_block_id()) == (0, bytes(32))
    assert store.last_app_hash() == chain.genesis.app_hash == store.app_hash(0)
    built = [
        chain.add_block([register_tx(ALICE, 1, label=1), register_tx(BOB, 1, label=2)]),
        chain.add_block([register_tx(ALICE, 2, label=3), register_tx(ALICE, 9, label=4)]),
        chain.add_block([]),
    ]
    for item in built:
        store.commit_block(item.block, item.commit, item.result)
    assert store.last_height() == 3
    assert store.last_block_id() == built[-1].block.block_id
    assert store.last_app_hash() == chain.state.last_app_hash()
    for height, item in enumerate(built, start=1):
        assert store.block(height) == item.block
        assert store.block_by_id(item.block.block_id) == item.block
        assert store.commit(height) == item.commit
        assert store.tx_results(height) == item.result.tx_results
        assert store.app_hash(height) == item.result.app_hash
    assert [r.code for r in store.tx_results(2)] == [0, 33]
    assert (
        store.block(4) is None and store.commit(4) is None and store.block_by_id(bytes(32)) is None
    )
    # The committed state is the application's state, key for key.
    view = store.state_view()
    for key, value in chain.state.items():
        assert view.get(key) == value
    assert (view.last_height(), view.last_app_hash()) == (3, chain.state.last_app_hash())


def test_state_view_drives_the_application(store: BlockStore, chain: ChainBuilder) -> None:
    """Execute on the store's own view: same result as on the in-memory state."""
    app = EmrApplication(CHAIN_ID, store.state_view())
    for txs in ([register_tx(ALICE, 1, label=1)], [register_tx(ALICE, 2, label=2)]):
        built = chain.add_block(txs)
        result = app.execute_block(built.block, store.state_view())
        assert result == built.result
        store.commit_block(built.block, built.commit, result)
    assert (store.last_height(), store.last_app_hash()) == (2, chain.state.last_app_hash())


def test_validator_sets_are_kept_per_height(store: BlockStore, chain: ChainBuilder) -> None:
    newcomer = signer(10).public_key
    txs = [validator_update_tx(signer(i), 1, newcomer, 7, 1) for i in range(3)]
    for block_txs in (txs, [], []):
        built = chain.add_block(block_txs)
        store.commit_block(built.block, built.commit, built.result)
        assert store.validator_set(store.last_height() + 1) == read_validator_sets(chain.state)[0]
        assert store.validator_set(store.last_height() + 2) == read_validator_sets(chain.state)[1]
    genesis = chain.genesis_validators
    expanded = ValidatorSet([*genesis, Validator(newcomer, 7)])
    assert [store.validator_set(h) for h in range(1, 6)] == [genesis] * 2 + [expanded] * 3
    assert store.validator_set(0) is None and store.validator_set(6) is None


def test_out_of_order_and_foreign_blocks_are_refused_and_write_nothing(
    store: BlockStore, chain: ChainBuilder
) -> None:
    first = chain.add_block([register_tx(ALICE, 1, label=1)])
    second = chain.add_block([register_tx(ALICE, 2, label=2)])
    before = all_entries(store)
    with pytest.raises(BlockRefusedError, match="height 2 is not the next height 1"):
        store.commit_block(second.block, second.commit, second.result)
    store.commit_block(first.block, first.commit, first.result)
    before = all_entries(store)
    with pytest.raises(BlockRefusedError, match="height 1 is not the next height 2"):
        store.commit_block(first.block, first.commit, first.result)
    forked = dataclasses.replace(
        second.block,
        header=dataclasses.replace(second.block.header, previous_block_id=b"\x07" * 32),
    )
    with pytest.raises(BlockRefusedError, match="does not extend the last block"):
        store.commit_block(forked, second.commit, second.result)
    other_state = dataclasses.replace(
        second.block, header=dataclasses.replace(second.block.header, app_hash=b"\x05" * 32)
    )
    with pytest.raises(BlockRefusedError, match="carries app hash"):
        store.commit_block(other_state, second.commit, second.result)
    with pytest.raises(BlockRefusedError, match="commit certificate is for another block"):
        store.commit_block(second.block, first.commit, second.result)
    short = dataclasses.replace(second.result, tx_results=[])
    with pytest.raises(BlockRefusedError, match="0 results for 1 transactions"):
        store.commit_block(second.block, second.commit, short)
    tampered = dict(second.result.writes)
    tampered[b"\x7f"] = b"sneaked in"
    with pytest.raises(BlockRefusedError, match="app hash does not match its writes"):
        store.commit_block(
            second.block, second.commit, dataclasses.replace(second.result, writes=tampered)
        )
    bad_key = ExecutionResult({b"": b"x"}, second.result.app_hash, second.result.tx_results)
    with pytest.raises(BlockRefusedError, match="invalid write"):
        store.commit_block(second.block, second.commit, bad_key)
    bad_message = dataclasses.replace(second.result, tx_results=[TxResult(0, "x" * 600)])
    with pytest.raises(BlockRefusedError, match="results are invalid"):
        store.commit_block(second.block, second.commit, bad_message)
    assert all_entries(store) == before and store.last_height() == 1
    store.commit_block(second.block, second.commit, second.result)
    assert store.last_height() == 2


def test_uninitialized_store_and_double_genesis(home: Path, chain: ChainBuilder) -> None:
    store = open_store(home)
    assert not store.is_initialized() and store.chain_id is None
    with pytest.raises(NotInitializedError, match="initialize it from genesis"):
        store.last_height()
    built = chain.add_block([])
    with pytest.raises(NotInitializedError):
        store.commit_block(built.block, built.commit, built.result)
    bad_genesis = dataclasses.replace(chain.genesis, app_hash=b"\x01" * 32)
    with pytest.raises(StoreError, match="app hash does not match"):
        store.initialize(CHAIN_ID, chain.genesis_validators, bad_genesis)
    assert all_entries(store) == []
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    with pytest.raises(StoreError, match="already holds chain 'emrchain-test' at height 0"):
        store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    store.database.close()


def test_reopen_restores_head_and_data(home: Path, chain: ChainBuilder) -> None:
    store = open_store(home)
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    built = chain.add_block([register_tx(ALICE, 1, label=1)])
    store.commit_block(built.block, built.commit, built.result)
    store.database.close()
    reopened = open_store(home)
    assert reopened.chain_id == CHAIN_ID
    assert (reopened.last_height(), reopened.last_block_id(), reopened.last_app_hash()) == (
        1,
        built.block.block_id,
        built.result.app_hash,
    )
    assert reopened.block(1) == built.block
    reopened.database.close()
    with pytest.raises(StoreError, match="closed"):
        reopened.block(1)
