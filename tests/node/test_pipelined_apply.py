"""A decided block applied with its durable write in the chain's writer thread
(`Chain.apply_block_pipelined`, what consensus uses) ends exactly where the synchronous
`apply_block` does, and while the write is in flight the chain takes no other block (the same
block again is a no-op)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import pytest

from emrchain.devnet.workload import anchor_transactions
from emrchain.node.blocksync import BlockSync, SyncLimits
from emrchain.node.messages import BlockResponse
from emrchain.node.wiring import build
from emrchain.p2p import Misbehaviour
from emrchain.store import BlockStore, StoreError
from tests.node.in_process import (
    CHAIN_ID,
    commit_for,
    register_workload_senders,
    single_validator_node,
)


def test_pipelined_apply_stores_what_execution_computes(tmp_path: Path) -> None:
    with single_validator_node(tmp_path) as node:
        register_workload_senders(node, senders=8, seed=11)
        txs = anchor_transactions(48, chain_id=CHAIN_ID.encode(), senders=8, seed=11)
        assert all(admission.accepted for admission in node.mempool.admit_batch(txs))
        chain = node.chain
        block = chain.build_block(chain.height + 1, node.validator_key.public_key)
        verdict = chain.own_block_verdict(block)
        # Execution is pure: a dry run on the committed state is what the apply must store.
        expected = chain.application.execute_block(block, chain.store.state_view())
        asyncio.run(chain.apply_block_pipelined(block, commit_for(node, block), verdict))
        chain.close()
        assert chain.height == block.height and not chain.applying
        assert chain.store.last_app_hash() == expected.app_hash
        results = chain.store.tx_results(block.height)
        assert results == expected.tx_results
        assert [result.code for result in results] == [0] * 48
        for key, value in expected.writes.items():
            assert chain.store.state_view().get(key) == value
        assert len(node.mempool) == 0


class _GatedStore:
    """Hold `write_prepared` in the writer thread until the test opens the gate."""

    def __init__(self, store: BlockStore) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self._write = store.write_prepared

    def write_prepared(self, prepared: object) -> None:
        self.entered.set()
        assert self.gate.wait(10)
        self._write(prepared)  # type: ignore[arg-type]


def test_while_the_write_is_in_flight_the_chain_takes_no_other_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with single_validator_node(tmp_path) as node:
        chain = node.chain
        register_workload_senders(node, senders=4, seed=12)
        txs = anchor_transactions(8, chain_id=CHAIN_ID.encode(), senders=4, seed=12)
        assert all(admission.accepted for admission in node.mempool.admit_batch(txs))
        height_before = chain.height
        block = chain.build_block(height_before + 1, node.validator_key.public_key)
        commit = commit_for(node, block)
        gated = _GatedStore(chain.store)
        monkeypatch.setattr(chain.store, "write_prepared", gated.write_prepared)
        synced: list[int] = []
        reports: list[tuple[str, Misbehaviour]] = []
        blocksync = BlockSync(
            chain,
            lambda *_: True,
            synced.append,
            lambda peer, kind: reports.append((peer, kind)),
            build(SyncLimits, node.config),
        )

        async def scenario() -> None:
            task = asyncio.create_task(
                chain.apply_block_pipelined(block, commit, chain.own_block_verdict(block))
            )
            while not gated.entered.is_set():
                await asyncio.sleep(0.001)
            # Executed and being written: readers on the loop still see the old head, the
            # mempool still holds the transactions, and nothing else may commit.
            assert chain.applying
            assert chain.height == height_before
            assert len(node.mempool) == 8
            assert chain.apply_block(block, commit) is False  # the same block: a no-op
            next_block = dataclasses.replace(
                block, header=dataclasses.replace(block.header, height=block.height + 1)
            )
            with pytest.raises(StoreError, match="already in flight"):
                chain.apply_block(next_block, commit)
            blocksync.on_response("peer", BlockResponse(block, commit))
            assert synced == [] and chain.height == height_before
            # Nobody asked that peer: counted against it, nothing applied.
            assert reports == [("peer", Misbehaviour.BAD_SYNC_RESPONSE)]
            gated.gate.set()
            await task

        asyncio.run(scenario())
        chain.close()
        assert not chain.applying
        assert chain.height == height_before + 1
        assert len(node.mempool) == 0
        results = chain.store.tx_results(block.height)
        assert results is not None and [result.code for result in results] == [0] * 8


def test_a_failed_write_leaves_the_head_and_lets_the_block_be_applied_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with single_validator_node(tmp_path) as node:
        chain = node.chain
        block = chain.build_block(chain.height + 1, node.validator_key.public_key)
        commit = commit_for(node, block)
        height_before = chain.height
        real_write = chain.store.write_prepared

        def failing_write(prepared: object) -> None:
            raise StoreError("disk full (test)")

        monkeypatch.setattr(chain.store, "write_prepared", failing_write)
        with pytest.raises(StoreError, match="disk full"):
            asyncio.run(chain.apply_block_pipelined(block, commit, chain.own_block_verdict(block)))
        assert not chain.applying and chain.height == height_before
        monkeypatch.setattr(chain.store, "write_prepared", real_write)
        chain.apply_block(block, commit, chain.own_block_verdict(block))
        chain.close()
        assert chain.height == height_before + 1
