"""`scripts/bench-catchup`: how fast a node that starts with an empty store catches up a chain
by block sync (issue 18 item 4).

A devnet of `--validators` validators; the last one is not started. The others (a quorum)
commit `--txs` prepared anchor transactions as fast as they accept them (the load of
`emrchain bench`), with `create_empty_blocks = false`, so the chain stops growing when the load
ends. Then the last validator starts from its untouched home and block-syncs from the others,
once per `--runs` entry (`WINDOW:PER_PEER` sets its `[consensus] sync_window_blocks` and
`sync_max_requests_per_peer`; `1:1` is one request at a time, the sync before issue 18), each
time from a copy of its home taken before its first start, on the same chain. A run spelled
`base` starts it from the code of `--base-checkout` instead (e.g. the commit before issue 18,
exported with `git archive`, its compiled core copied in).

Measured per run, from the process start to its height reaching the others': blocks/s and
transactions/s (every transaction in those blocks, the registrations included), the same from
the moment its RPC first answered, the blocks each peer served (its `/status` sync counters),
and the catching-up process's CPU seconds. Progress on stderr; the last stdout line is one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrchain import _core
from emrchain.bench.cpu import process_cpu_seconds
from emrchain.bench.load import WindowOptions, run_window
from emrchain.bench.prepare import LoadPlan, prepare
from emrchain.bench.runner import BENCH_CONSENSUS, MAX_BATCH_TXS
from emrchain.devnet.harness import Devnet

LANES_PER_NODE = 4
SENDERS_PER_LANE = 32
POLL_S = 0.05
BASE_RUN = (0, 0)
"""`--runs base`: the node runs the code of `--base-checkout`."""
NEW_SETTINGS = ("sync_window_blocks", "sync_max_requests_per_peer", "sync_buffer_max_bytes")
"""The settings issue 18 added, removed from the config of a `base` run."""
SETTLE_S = 2.0
"""The chain counts as finished when no node's height moved for this long after the load."""


@dataclass(frozen=True)
class CatchupOptions:
    txs: int = 100_000
    validators: int = 4
    runs: tuple[tuple[int, int], ...] = ((32, 8), (1, 1))
    devnet_dir: Path | None = None
    cache_dir: Path | None = None
    workers: int = max(1, os.cpu_count() or 1)
    timeout_s: float = 1_800.0
    load_timeout_s: float = 1_800.0
    base_checkout: Path | None = None
    """A checkout of the code before issue 18: a run spelled `base` starts the catching-up node
    from it (its config without the settings that code does not know)."""
    max_block_txs: int | None = None
    """Every node's `[limits] max_block_txs` (None: the default, 20,000): smaller blocks make
    more heights for the same transactions, where round trips weigh more than applying."""


def _log(message: str) -> None:
    print(f"bench-catchup: {message}", file=sys.stderr, flush=True)


def _wait_settled(devnet: Devnet, nodes: list[int], timeout_s: float) -> int:
    """The common height once every node in `nodes` has it and none moved for SETTLE_S."""
    deadline = time.monotonic() + timeout_s
    last: list[int] = []
    since = time.monotonic()
    while time.monotonic() < deadline:
        heights = [devnet.height(index) for index in nodes]
        if heights != last:
            last, since = heights, time.monotonic()
        elif len(set(heights)) == 1 and time.monotonic() - since >= SETTLE_S:
            return heights[0]
        time.sleep(0.2)
    raise TimeoutError(f"nodes {nodes} did not settle (heights {last})")


def build_chain(devnet: Devnet, options: CatchupOptions) -> dict[str, Any]:
    """Commit the load on every node but the last; the chain's height and transaction count."""
    producers = list(range(options.validators - 1))
    urls = [devnet.rpc_urls[index] for index in producers]
    lanes_count = len(urls) * LANES_PER_NODE
    plan = LoadPlan(
        chain_id=b"emrchain-devnet",
        seed=0,
        lanes=lanes_count,
        senders_per_lane=SENDERS_PER_LANE,
        txs_per_lane=max(1, math.ceil(options.txs / lanes_count)),
        batch_size=MAX_BATCH_TXS // 2,
    )
    _log(f"preparing {plan.lanes * plan.txs_per_lane:,} signed transactions")
    lanes = prepare(plan, options.workers, options.cache_dir)
    for index in producers:
        devnet.start(index)
    devnet.wait_for_height(1, producers, timeout_s=120)
    devnet.register_workload_members(senders=plan.senders, seed=plan.seed, committed_on=producers)
    _log(f"loading {len(producers)} validators: {', '.join(urls)}")
    started = time.monotonic()
    window = WindowOptions(
        duration_s=options.load_timeout_s,
        rate=None,
        batch_size=plan.batch_size,
        max_outstanding=10_000,
        grace_s=60.0,
    )
    tracker, result = asyncio.run(run_window(urls, lanes, window))
    load_s = time.monotonic() - started
    height = _wait_settled(devnet, producers, timeout_s=300)
    txs = sum(
        devnet.rpc(0, f"/blocks/{block}")["header"]["tx_count"] for block in range(1, height + 1)
    )
    _log(f"chain of {height} blocks, {txs:,} transactions, loaded in {load_s:.1f} s")
    return {
        "height": height,
        "txs": txs,
        "load_s": round(load_s, 1),
        "load_tps": round(txs / load_s),
        "lost": tracker.lost(),
        "exhausted": result.exhausted,
    }


def _without_settings(text: str, names: tuple[str, ...]) -> str:
    """A rendered node.toml without the keys `names` and the comment lines just above each."""
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    for line in lines:
        if line.split("=")[0].strip() in names:
            while kept and kept[-1].startswith("#"):
                kept.pop()
            continue
        kept.append(line)
    return "".join(kept)


def _start(devnet: Devnet, index: int, base_checkout: Path | None) -> None:
    """Start node `index`, from `base_checkout`'s code if given (`python -m` puts the working
    directory first on the path, so the start runs from there)."""
    if base_checkout is None:
        devnet.start(index)
        return
    config = devnet.homes[index] / "config" / "node.toml"
    config.write_text(_without_settings(config.read_text(), NEW_SETTINGS))
    saved_path, saved_directory = os.environ.get("PYTHONPATH"), Path.cwd()
    os.environ["PYTHONPATH"] = str(base_checkout)
    os.chdir(base_checkout)
    try:
        devnet.start(index)
    finally:
        os.chdir(saved_directory)
        if saved_path is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved_path


def catch_up(
    devnet: Devnet,
    index: int,
    pristine: Path,
    run: tuple[int, int],
    target: int,
    options: CatchupOptions,
) -> dict[str, Any]:
    """Start node `index` from a copy of `pristine` with window `run`; time its catch-up."""
    home = devnet.homes[index]
    shutil.rmtree(home)
    shutil.copytree(pristine, home)
    window, per_peer = run
    base = run == BASE_RUN
    if base and options.base_checkout is None:
        raise ValueError("a base run needs --base-checkout")
    if not base:
        devnet.configure(
            index,
            {"consensus": {"sync_window_blocks": window, "sync_max_requests_per_peer": per_peer}},
        )
    timeout_s = options.timeout_s
    started = time.monotonic()
    _start(devnet, index, options.base_checkout if base else None)
    rpc_at: float | None = None
    rpc_height = 0
    deadline = started + timeout_s
    status: dict[str, Any] | None = None
    while True:
        if not devnet.is_running(index):
            raise RuntimeError(f"node{index} exited; see {devnet.log_path(index)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"node{index} did not catch up within {timeout_s} s")
        status = devnet.try_status(index)
        if status is not None:
            if rpc_at is None:
                rpc_at, rpc_height = time.monotonic(), status["latest_height"]
            if status["latest_height"] >= target:
                break
        time.sleep(POLL_S)
    done = time.monotonic()
    process = devnet.processes[index]
    cpu_s = process_cpu_seconds(process.pid)
    devnet.stop(index)
    assert rpc_at is not None
    sync = status.get("sync", {})  # the base code has no sync counters
    return {
        "code": "base" if base else "this checkout",
        "window_blocks": window if not base else 1,
        "max_requests_per_peer": per_peer if not base else 1,
        "seconds": round(done - started, 2),
        "seconds_from_rpc": round(done - rpc_at, 2),
        "height_when_rpc_answered": rpc_height,
        "blocks_synced": status["blocks_synced"],
        "blocks_by_peer": sorted(sync.get("blocks_by_peer", {}).values(), reverse=True),
        "timeouts": sync.get("timeouts"),
        "responses_refused": sync.get("responses_refused"),
        "node_cpu_s": None if cpu_s is None else round(cpu_s, 1),
    }


def run_catchup(options: CatchupOptions) -> dict[str, Any]:
    temporary: Path | None = None
    if options.devnet_dir is not None:
        root = options.devnet_dir
    else:
        temporary = Path(tempfile.mkdtemp(prefix="emrchain-catchup-"))
        root = temporary / "net"
    consensus: dict[str, int | bool] = {**BENCH_CONSENSUS, "create_empty_blocks": False}
    try:
        with Devnet(root, options.validators, consensus=consensus) as devnet:
            if options.max_block_txs is not None:
                _set_max_block_txs(devnet, options.max_block_txs)
            late = options.validators - 1
            pristine = root.parent / f"{root.name}-node{late}-pristine"
            shutil.rmtree(pristine, ignore_errors=True)
            shutil.copytree(devnet.homes[late], pristine)
            chain = build_chain(devnet, options)
            runs = []
            for run in options.runs:
                what = "the base code" if run == BASE_RUN else f"window {run[0]}, {run[1]} per peer"
                _log(f"node{late} catching up with {what}")
                figures = catch_up(devnet, late, pristine, run, chain["height"], options)
                figures["blocks_per_s"] = round(chain["height"] / figures["seconds"], 1)
                figures["txs_per_s"] = round(chain["txs"] / figures["seconds"])
                figures["txs_per_s_from_rpc"] = round(chain["txs"] / figures["seconds_from_rpc"])
                _log(json.dumps(figures))
                runs.append(figures)
        return {
            "max_block_txs": options.max_block_txs,
            "chain": chain,
            "runs": runs,
            "validators": options.validators,
            "core": _core.IMPLEMENTATION,
            "cores": os.cpu_count(),
            "load_average": [round(value, 2) for value in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _set_max_block_txs(devnet: Devnet, max_block_txs: int) -> None:
    """A consensus parameter: the genesis of every home and every node's `[limits]` agree."""
    for index, home in enumerate(devnet.homes):
        path = home / "config" / "genesis.json"
        genesis = json.loads(path.read_text())
        genesis["consensus_params"]["max_block_txs"] = max_block_txs
        path.write_text(json.dumps(genesis, indent=2))
        devnet.configure(index, {"limits": {"max_block_txs": max_block_txs}})


def _run(text: str) -> tuple[int, int]:
    if text == "base":
        return BASE_RUN
    window, _, per_peer = text.partition(":")
    return int(window), int(per_peer or window)


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-catchup", description=__doc__)
    parser.add_argument("--txs", type=int, default=CatchupOptions.txs)
    parser.add_argument("--validators", type=int, default=CatchupOptions.validators)
    parser.add_argument(
        "--runs",
        type=_run,
        nargs="+",
        default=list(CatchupOptions.runs),
        help="WINDOW:PER_PEER per catch-up run (default 32:8 1:1), or base",
    )
    parser.add_argument("--base-checkout", type=Path, help="code a `base` run starts the node from")
    parser.add_argument("--devnet-dir", type=Path, help="keep the devnet here (logs, data)")
    parser.add_argument("--cache-dir", type=Path, help="cache the signed transactions here")
    parser.add_argument("--timeout", type=float, default=CatchupOptions.timeout_s)
    parser.add_argument("--max-block-txs", type=int, help="every node's [limits] max_block_txs")
    parsed = parser.parse_args(arguments)
    if parsed.validators < 2:
        parser.error("--validators must be at least 2 (one catches up from the others)")
    options = dataclasses.replace(
        CatchupOptions(),
        txs=parsed.txs,
        validators=parsed.validators,
        runs=tuple(parsed.runs),
        devnet_dir=parsed.devnet_dir,
        cache_dir=parsed.cache_dir,
        timeout_s=parsed.timeout,
        max_block_txs=parsed.max_block_txs,
        base_checkout=parsed.base_checkout.absolute() if parsed.base_checkout else None,
    )
    print(json.dumps(run_catchup(options)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
