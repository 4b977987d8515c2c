"""Catch-up through block sync, in-process (issue 18 item 4): a fresh follower of a source
chain of BLOCKS blocks of TXS_PER_BLOCK anchors fetches them through `BlockSync` from three
peers with the default window, answers delivered in a shuffled order, and applies them in
height order: each block's commit verified, its signatures verified (the follower's mempool
never saw them), executed and written to LevelDB. No network: the figure is the node's own
catch-up ceiling; `scripts/bench-catchup` measures real processes (BENCHMARKS.md).

Correctness, not timing, is asserted: the follower ends at the source's height and app hash,
having applied blocks from every peer.

Run: .venv/bin/python -m pytest benchmarks/test_bench_catchup.py --benchmark-only -s
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain import _core
from emrchain.node.node import Node
from tests.node.sync_pair import SyncRun, fill, follower, source_and_fresh_home

BLOCKS = 20
TXS_PER_BLOCK = 500
ROUNDS = 3
PEERS = ("peer-a", "peer-b", "peer-c")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Path]]:
    with source_and_fresh_home(tmp_path_factory.mktemp("catchup")) as (node, home):
        fill(node, blocks=BLOCKS, txs_per_block=TXS_PER_BLOCK)
        yield node, home


def test_catch_up_from_three_peers(benchmark, source: tuple[Node, Path], tmp_path: Path) -> None:
    node, pristine = source
    benchmark.group = f"catch-up, {BLOCKS} blocks of {TXS_PER_BLOCK} anchors"
    copies = itertools.count()
    seconds: list[float] = []
    runs: list[SyncRun] = []

    def fresh_home() -> tuple[tuple[Path], dict[str, object]]:
        home = tmp_path / f"follower-{next(copies)}"
        shutil.copytree(pristine, home)
        return (home,), {}

    def catch_up(home: Path) -> None:
        with follower(home) as fresh:
            run = SyncRun(node, fresh, PEERS, seed=len(runs))
            started = time.perf_counter()
            run.run()
            seconds.append(time.perf_counter() - started)
            assert fresh.chain.store.last_app_hash() == node.chain.store.last_app_hash()
            runs.append(run)

    benchmark.pedantic(catch_up, setup=fresh_home, rounds=ROUNDS, iterations=1)
    assert all(len(run.sync.blocks_synced_by_peer) == len(PEERS) for run in runs)
    height = node.chain.height
    best = min(seconds)
    blocks_per_s = height / best
    txs_per_s = BLOCKS * TXS_PER_BLOCK / best
    benchmark.extra_info.update(blocks_per_s=round(blocks_per_s, 1), txs_per_s=round(txs_per_s))
    print(
        f"\ncatch-up: {height} blocks in {best:.2f} s: {blocks_per_s:.1f} blocks/s, "
        f"{txs_per_s:,.0f} anchors/s (best of {len(seconds)}, {_core.IMPLEMENTATION} core)"
    )
