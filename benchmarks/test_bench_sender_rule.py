"""The sender rule of stateful admission (issue 15, `docs/spec/state.md` §6) on a real node's
store (in-process, temporary home), with the load generator's shape: lanes of 32 members,
batches of 1,000 anchors, blocks of 8,000 from 256 members.

Measured, per transaction: the admission check of one lane's batch, the rule a follower applies
to a proposed block (and a proposer to its reap), and finding the senders to recheck after the
block commits. Correctness, not timing, is asserted: every anchor is admissible, the block
holds no refusal, an anchor-only block rechecks nobody. µs per transaction are printed and kept
in `extra_info`.

Run: .venv/bin/python -m pytest benchmarks/test_bench_sender_rule.py --benchmark-only -s
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emrchain.devnet.workload import anchor_fields, sender_key
from emrchain.node.node import Node
from emrchain.schema import TxKind
from emrchain.types import Block, Transaction
from tests.node.in_process import (
    CHAIN_ID,
    commit_own_block,
    register_workload_senders,
    single_validator_node,
)

LANES = 8
MEMBERS_PER_LANE = 32
BATCH_TXS = 1_000
ROUNDS = 20


def lane_batch(lane: int, first_nonce: int) -> list[bytes]:
    """One lane's batch: its 32 members round-robin, consecutive nonces from `first_nonce`."""
    txs = []
    for position in range(BATCH_TXS):
        index = lane * MEMBERS_PER_LANE + position % MEMBERS_PER_LANE
        nonce = first_nonce + position // MEMBERS_PER_LANE
        fields = anchor_fields(0, index, nonce)
        signer = sender_key(0, index)
        tx = Transaction.create(signer, CHAIN_ID.encode(), TxKind.ANCHOR_RECORD, nonce, fields)
        txs.append(tx.encode())
    return txs


@pytest.fixture(scope="module")
def node_with_block(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Block]]:
    """A node whose last block holds every lane's first batch (8,000 anchors, 256 members)."""
    root: Path = tmp_path_factory.mktemp("sender-rule")
    with single_validator_node(root) as node:
        register_workload_senders(node, senders=LANES * MEMBERS_PER_LANE, seed=0)
        for lane in range(LANES):
            assert all(result.accepted for result in node.mempool.admit_batch(lane_batch(lane, 1)))
        block = commit_own_block(node)
        assert len(block.txs) == LANES * BATCH_TXS
        yield node, block


def best_us_per_tx(benchmark, label: str, call: Callable[[], object], txs: int) -> float:
    seconds = []

    def run() -> object:
        started = time.perf_counter()
        outcome = call()
        seconds.append(time.perf_counter() - started)
        return outcome

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    micros = min(seconds) / txs * 1e6
    benchmark.extra_info[f"{label}_us_per_tx"] = round(micros, 3)
    print(f"\n{label}: {micros:.3f} µs per transaction (best of {ROUNDS})")
    return micros


def test_admission_check_of_a_lane_batch(benchmark, node_with_block) -> None:
    node, _ = node_with_block
    batch = lane_batch(0, 1 + BATCH_TXS // MEMBERS_PER_LANE + 1)  # the lane's next nonces
    outcomes = node.sender_admission(batch)
    assert {code for code, _ in outcomes} == {"ok"}
    best_us_per_tx(benchmark, "admission check", lambda: node.sender_admission(batch), BATCH_TXS)


def test_proposal_rule_on_a_block(benchmark, node_with_block) -> None:
    node, block = node_with_block
    txs = list(block.txs)
    assert node.sender_admission.judge().refusals(txs) == []
    judge = node.sender_admission.judge
    best_us_per_tx(benchmark, "proposal rule", lambda: judge().refusals(txs), len(txs))


def test_recheck_senders_of_an_anchor_block(benchmark, node_with_block) -> None:
    node, block = node_with_block
    results = node.chain.store.tx_results(block.height)
    assert results is not None and {result.code for result in results} == {0}
    recheck = node.sender_admission.recheck_senders
    assert recheck(block, results) == set()
    best_us_per_tx(benchmark, "recheck senders", lambda: recheck(block, results), len(block.txs))
