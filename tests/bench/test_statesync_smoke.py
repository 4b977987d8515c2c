"""A short `scripts/bench-statesync`: a devnet with 600 transactions of history, a validator
joining by state sync. Asserts the figures are there and consistent; the join times for 10,000
and 100,000 transactions belong to BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from emrchain.bench.statesync import StateSyncBenchOptions, run_statesync_bench

pytestmark = pytest.mark.slow


def test_a_validator_joins_a_short_chain_by_state_sync(tmp_path: Path) -> None:
    summary = run_statesync_bench(
        StateSyncBenchOptions(
            txs=(600,),
            devnet_dir=tmp_path,
            cache_dir=tmp_path / "cache",
            workers=1,
            timeout_s=300.0,
        )
    )
    (run,) = summary["runs"]
    assert run["history_txs"] >= 600
    assert run["restored_height"] >= run["history_blocks"]  # the snapshot covers the history
    assert run["entries"] > 600 and run["chunks"] >= 1 and run["chunk_bytes"] > 0
    assert 0 < run["restore_s"] <= run["joined_and_following_s"]
    assert sum(run["chunks_by_peer"]) == run["chunks"]
    assert run["block_sync_s"] > 0
