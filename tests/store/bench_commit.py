"""Measure execute + commit throughput on a real LevelDB: blocks of anchor transactions.

    .venv/bin/python -m tests.store.bench_commit [--blocks 10] [--txs 2000] [--undo-heights N]
        [--node-caches]

Transactions are signed and certificates made before the clock starts; each block is executed
on the store's committed view (stateless decode, batched signature verification, nonce, anchor)
and committed in one synced write batch. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from emrchain import _core
from emrchain.devnet.workload import (
    WORKLOAD_ORGANIZATION,
    anchor_transactions,
    registration_transactions,
)
from emrchain.state.emr import EmrApplication
from emrchain.store import BlockStore, ChainDatabase
from emrchain.store.absence import AbsenceFilter
from emrchain.store.state_cache import StateCache
from tests.state.chain import ALICE, CHAIN_ID, ChainBuilder, clients_organization


def run(
    blocks: int,
    txs_per_block: int,
    home: Path,
    preverified: bool,
    undo_heights: int = 0,
    node_caches: bool = False,
) -> dict[str, object]:
    """`undo_heights`: the store writes undo records (`store/undo.py`); `node_caches`: the
    absence filter and state cache a node runs with by default."""
    txs = anchor_transactions(blocks * txs_per_block, chain_id=CHAIN_ID, senders=500)
    # The builder proposes and certifies (its own in-memory execution gives the next header's
    # app hash); only the store-side execute and commit below are timed.
    # The workload's anchors name its organisation as their custody set: the genesis
    # organisation takes that id, and registers the workload's senders in it.
    organization = dataclasses.replace(
        clients_organization(), organization_id=WORKLOAD_ORGANIZATION
    )
    chain = ChainBuilder(organizations=[organization])
    registration = chain.add_block(
        registration_transactions(ALICE, WORKLOAD_ORGANIZATION, chain_id=CHAIN_ID, senders=500)
    )
    built = [
        chain.add_block(txs[height * txs_per_block : (height + 1) * txs_per_block])
        for height in range(blocks)
    ]
    store = BlockStore(
        ChainDatabase.open(home),
        absence=AbsenceFilter(1 << 24, EmrApplication.ABSENCE_FILTERED_PREFIXES)
        if node_caches
        else None,
        cache=StateCache(65_536) if node_caches else None,
        undo_heights=undo_heights,
    )
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    app = EmrApplication(CHAIN_ID, store.state_view())
    store.commit_block(registration.block, registration.commit, registration.result)
    execute_seconds, commit_seconds = [], []
    for item in built:
        # A node verifies a proposal's signatures before prevoting; --preverified hands those
        # verdicts to execution (computed here before the clock starts) instead of re-verifying.
        verdicts = _core.verify_transactions(list(item.block.txs)) if preverified else None
        start = time.perf_counter()
        result = app.execute_block(item.block, store.state_view(), signature_verdicts=verdicts)
        middle = time.perf_counter()
        store.commit_block(item.block, item.commit, result)
        end = time.perf_counter()
        assert result.app_hash == item.result.app_hash
        assert all(code == 0 for code, _ in result.tx_results)
        execute_seconds.append(middle - start)
        commit_seconds.append(end - middle)
    store.database.close()
    execute_total, commit_total = sum(execute_seconds), sum(commit_seconds)
    total_txs = blocks * txs_per_block
    return {
        "core": _core.IMPLEMENTATION,
        "signatures_verified_in_execution": not preverified,
        "undo_heights": undo_heights,
        "node_caches": node_caches,
        "blocks": blocks,
        "txs_per_block": txs_per_block,
        "execute_ms_per_block_median": 1000 * statistics.median(execute_seconds),
        "commit_ms_per_block_median": 1000 * statistics.median(commit_seconds),
        "execute_txs_per_second": total_txs / execute_total,
        "commit_txs_per_second": total_txs / commit_total,
        "execute_and_commit_txs_per_second": total_txs / (execute_total + commit_total),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--txs", type=int, default=2000, help="transactions per block")
    parser.add_argument(
        "--preverified",
        action="store_true",
        help="pass signature verdicts computed before timing (as after proposal validation)",
    )
    parser.add_argument("--undo-heights", type=int, default=0, help="keep undo records")
    parser.add_argument(
        "--node-caches", action="store_true", help="the absence filter and state cache"
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        report = run(
            arguments.blocks,
            arguments.txs,
            Path(directory),
            arguments.preverified,
            arguments.undo_heights,
            arguments.node_caches,
        )
    for name, value in report.items():
        shown = f"{value:.1f}" if isinstance(value, float) else value
        print(f"{name:36} {shown}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
