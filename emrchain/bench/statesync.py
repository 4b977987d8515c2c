"""`scripts/bench-statesync`: how long a node takes to join by state sync, for chains of
several lengths of history (issue 20 part 3: its join time must not grow with the chain).

Per `--txs` entry, a fresh devnet of `--validators` validators: all but the last commit that
many prepared anchors as fast as they accept them (the chain of `scripts/bench-catchup`,
`emrchain/bench/catchup.py`). Then they restart with empty blocks on and
`[statesync] snapshot_interval_blocks = --interval`, so each builds a snapshot of the whole
state at the next multiple and vouches for it; once every one of them has a vouched snapshot,
the last validator starts from its untouched home with `[statesync] enable = true`.

Measured from its process start: the seconds until the snapshot is restored (its
`data/statesync.json`), and until its height reaches the others' (restored, then block-synced
and following). For comparison, the same node from its untouched home with state sync off,
until block sync reaches the others' height. Also the restored height, entries, chunk bytes,
and how long the serving validators took to build the snapshot. Progress on stderr; the last
stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from emrchain import _core
from emrchain.bench.catchup import CatchupOptions, build_chain
from emrchain.bench.runner import BENCH_CONSENSUS
from emrchain.devnet.harness import Devnet
from emrchain.statesync.join import REPORT_FILE
from emrchain.statesync.snapshots import SNAPSHOTS_DIRECTORY, VOUCHES_FILE
from emrchain.store.database import database_path

POLL_S = 0.05


@dataclass(frozen=True)
class StateSyncBenchOptions:
    txs: tuple[int, ...] = (10_000, 100_000)
    validators: int = 4
    interval_blocks: int = 5
    extra_blocks: int = 0
    """Empty blocks the producers add after the load before the snapshot the joiner takes: a
    longer chain (in blocks) with the same state."""
    devnet_dir: Path | None = None
    cache_dir: Path | None = None
    workers: int = max(1, os.cpu_count() or 1)
    timeout_s: float = 1_800.0


def _log(message: str) -> None:
    print(f"bench-statesync: {message}", file=sys.stderr, flush=True)


def _snapshots(devnet: Devnet, index: int) -> Path:
    return database_path(devnet.homes[index]).parent / SNAPSHOTS_DIRECTORY


def _vouched_height(devnet: Devnet, index: int) -> int | None:
    """The newest complete snapshot of node `index` that carries its own vouch."""
    root = _snapshots(devnet, index)
    if not root.exists():
        return None
    heights = sorted(int(path.name) for path in root.iterdir() if path.name.isdigit())
    vouched = [height for height in heights if (root / f"{height:020d}" / VOUCHES_FILE).exists()]
    return vouched[-1] if vouched else None


def _build_seconds(devnet: Devnet, index: int) -> float | None:
    """How long node `index` took to build its last snapshot (its log line)."""
    lines = devnet.log_path(index).read_text(errors="replace").splitlines()
    built = [line for line in lines if "emrchain.statesync.service: snapshot" in line]
    if not built or not built[-1].endswith(" s"):
        return None
    return float(built[-1].rsplit(", ", 1)[-1].removesuffix(" s"))


def one_chain(root: Path, txs: int, options: StateSyncBenchOptions) -> dict[str, Any]:
    consensus: dict[str, int | bool] = {**BENCH_CONSENSUS, "create_empty_blocks": False}
    with Devnet(root, options.validators, consensus=consensus) as devnet:
        joiner = options.validators - 1
        producers = list(range(joiner))
        pristine = root.parent / f"{root.name}-node{joiner}-pristine"
        shutil.rmtree(pristine, ignore_errors=True)
        shutil.copytree(devnet.homes[joiner], pristine)
        chain = build_chain(
            devnet,
            replace(
                CatchupOptions(),
                txs=txs,
                validators=options.validators,
                cache_dir=options.cache_dir,
                workers=options.workers,
            ),
        )
        settings: dict[str, dict[str, Any]] = {
            "consensus": {"create_empty_blocks": True},
            "statesync": {"snapshot_interval_blocks": options.interval_blocks},
        }
        for index in producers:
            devnet.stop(index)
            devnet.configure(index, settings)
            devnet.start(index)
        longer = chain["height"] + options.extra_blocks
        devnet.wait_for_height(longer, producers, timeout_s=options.timeout_s)
        devnet.wait_for(
            lambda: all((_vouched_height(devnet, index) or 0) >= longer for index in producers),
            options.timeout_s,
            "a vouched snapshot on every producer",
            poll_s=POLL_S,
        )
        devnet.configure(joiner, {"statesync": {"enable": True, "discovery_time_ms": 500}})
        _log(f"{chain['txs']:,} transactions of history: node{joiner} joins by state sync")
        report_path = database_path(devnet.homes[joiner]).parent / REPORT_FILE
        started = time.monotonic()
        devnet.start(joiner)
        devnet.wait_for(report_path.exists, options.timeout_s, "the restore", poll_s=POLL_S)
        restored_s = time.monotonic() - started

        def following() -> bool:
            height = devnet.height(joiner)
            return height > 0 and height >= max(devnet.height(index) for index in producers) - 1

        devnet.wait_for(following, options.timeout_s, "the joiner to follow", poll_s=POLL_S)
        joined_s = time.monotonic() - started
        report = json.loads(report_path.read_text())
        block_sync_s = _block_sync(devnet, joiner, producers, pristine, options.timeout_s)
        figures = {
            "extra_blocks": options.extra_blocks,
            "history_txs": chain["txs"],
            "history_blocks": chain["height"],
            "restored_height": report["height"],
            "entries": report["entries"],
            "chunks": report["chunks"],
            "chunk_bytes": report["chunk_bytes"],
            "restore_s": round(restored_s, 2),
            "restore_in_process_s": report["seconds"],
            "discovery_s": report["discovery_s"],
            "joined_and_following_s": round(joined_s, 2),
            "snapshot_build_s": _build_seconds(devnet, 0),
            "chunks_by_peer": sorted(report["served"].values(), reverse=True),
            "block_sync_s": round(block_sync_s, 2),
        }
        _log(json.dumps(figures))
        return figures


def _block_sync(
    devnet: Devnet, joiner: int, producers: list[int], pristine: Path, timeout_s: float
) -> float:
    """For comparison: the same node from its untouched home, state sync off, catching up
    by block sync to the producers' height at its start."""
    devnet.stop(joiner)
    home = devnet.homes[joiner]
    shutil.rmtree(home)
    shutil.copytree(pristine, home)
    target = max(devnet.height(index) for index in producers)
    started = time.monotonic()
    devnet.start(joiner)
    devnet.wait_for(lambda: devnet.height(joiner) >= target, timeout_s, "block sync", POLL_S)
    seconds = time.monotonic() - started
    devnet.stop(joiner)
    return seconds


def run_statesync_bench(options: StateSyncBenchOptions) -> dict[str, Any]:
    runs = []
    for txs in options.txs:
        if options.devnet_dir is not None:
            runs.append(one_chain(options.devnet_dir / f"net-{txs}", txs, options))
            continue
        with tempfile.TemporaryDirectory(prefix="emrchain-statesync-") as temporary:
            runs.append(one_chain(Path(temporary) / "net", txs, options))
    return {
        "runs": runs,
        "validators": options.validators,
        "interval_blocks": options.interval_blocks,
        "extra_blocks": options.extra_blocks,
        "core": _core.IMPLEMENTATION,
        "cores": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-statesync", description=__doc__)
    parser.add_argument("--txs", type=int, nargs="+", default=list(StateSyncBenchOptions.txs))
    parser.add_argument("--validators", type=int, default=StateSyncBenchOptions.validators)
    parser.add_argument("--interval", type=int, default=StateSyncBenchOptions.interval_blocks)
    parser.add_argument(
        "--extra-blocks",
        type=int,
        default=0,
        help="empty blocks added after the load, before the snapshot (a longer chain)",
    )
    parser.add_argument("--devnet-dir", type=Path, help="keep the devnets here (logs, data)")
    parser.add_argument("--cache-dir", type=Path, help="cache the signed transactions here")
    parser.add_argument("--timeout", type=float, default=StateSyncBenchOptions.timeout_s)
    parsed = parser.parse_args(arguments)
    if parsed.validators < 4:
        parser.error("--validators must be at least 4 (3 of 4 vouch: more than 2/3)")
    options = replace(
        StateSyncBenchOptions(),
        txs=tuple(parsed.txs),
        validators=parsed.validators,
        interval_blocks=parsed.interval,
        extra_blocks=parsed.extra_blocks,
        devnet_dir=parsed.devnet_dir,
        cache_dir=parsed.cache_dir,
        timeout_s=parsed.timeout,
    )
    print(json.dumps(run_statesync_bench(options)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
