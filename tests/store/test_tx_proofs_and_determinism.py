"""Tx index and inclusion proofs; the app hash is the same in independent stores."""

from __future__ import annotations

import hashlib
from pathlib import Path

from emrchain import _core
from emrchain.store import BlockStore
from tests.state.chain import ALICE, BOB, ChainBuilder, register_tx
from tests.store.conftest import initialized_store


def tx_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def test_tx_proofs_verify_against_the_header_and_only_for_their_tx(
    store: BlockStore, chain: ChainBuilder
) -> None:
    txs = [register_tx(ALICE, nonce, label=nonce) for nonce in range(1, 8)]
    built = chain.add_block(txs)
    store.commit_block(built.block, built.commit, built.result)
    root = built.block.header.tx_root
    for index, raw in enumerate(txs):
        proof = store.tx_proof(tx_id(raw))
        assert store.tx_location(tx_id(raw)) == (1, index)
        assert (proof.height, proof.index, proof.total) == (1, index, len(txs))
        assert _core.verify_merkle_proof(
            root, tx_id(raw), proof.index, proof.total, proof.audit_path
        )
        other = tx_id(txs[(index + 1) % len(txs)])
        assert not _core.verify_merkle_proof(
            root, other, proof.index, proof.total, proof.audit_path
        )
        wrong_index = (index + 1) % len(txs)
        assert not _core.verify_merkle_proof(
            root, tx_id(raw), wrong_index, proof.total, proof.audit_path
        )
    never_included = register_tx(BOB, 1, label=99)
    assert store.tx_proof(tx_id(never_included)) is None
    assert store.tx_location(tx_id(never_included)) is None


def test_tx_index_prefers_the_applied_inclusion(store: BlockStore, chain: ChainBuilder) -> None:
    early = register_tx(ALICE, 2, label=1)  # nonce gap at height 1: refused, changes nothing
    for txs in ([early], [register_tx(ALICE, 1, label=2), early], [early]):
        built = chain.add_block(txs)
        store.commit_block(built.block, built.commit, built.result)
    assert [r.code for r in store.tx_results(2)] == [0, 0]
    assert [r.code for r in store.tx_results(3)] == [32]  # replayed bytes: nonce used
    assert store.tx_location(tx_id(early)) == (2, 1)
    proof = store.tx_proof(tx_id(early))
    root = store.block(2).header.tx_root
    assert _core.verify_merkle_proof(root, tx_id(early), proof.index, proof.total, proof.audit_path)


def test_refused_only_inclusions_keep_the_first(store: BlockStore, chain: ChainBuilder) -> None:
    never_valid = register_tx(ALICE, 5, label=1)
    for _ in range(2):
        built = chain.add_block([never_valid])
        store.commit_block(built.block, built.commit, built.result)
    assert store.tx_location(tx_id(never_valid)) == (1, 0)


def test_same_blocks_give_the_same_app_hash_and_state_in_independent_stores(
    tmp_path: Path,
) -> None:
    chains = [ChainBuilder(), ChainBuilder()]
    stores = [initialized_store(tmp_path / name, c) for name, c in zip("ab", chains, strict=True)]
    blocks = [
        [register_tx(ALICE, 1, label=1), register_tx(BOB, 1, label=2)],
        [register_tx(BOB, 2, label=1), b"garbage"],
        [register_tx(ALICE, 2, label=3)],
    ]
    for txs in blocks:
        for chain, store in zip(chains, stores, strict=True):
            built = chain.add_block(txs)
            store.commit_block(built.block, built.commit, built.result)
    first, second = stores
    assert first.last_app_hash() == second.last_app_hash()
    assert list(first.database.db.iterator()) == list(second.database.db.iterator())
    # A chain that differs in one write (one anchor more) diverges from there on. Bob's
    # duplicate record in block 2 was refused but consumed his nonce 2, so his next is 3.
    third = ChainBuilder()
    for txs in [*blocks[:2], [register_tx(ALICE, 2, label=3), register_tx(BOB, 3, label=4)]]:
        third.add_block(txs)
    assert [r.code for r in third.built[2].result.tx_results] == [0, 0]
    assert third.built[1].result.app_hash == chains[0].built[1].result.app_hash
    assert third.state.last_app_hash() != first.last_app_hash()
    for store in stores:
        store.database.close()
