"""`emrchain bench` end to end: a devnet (or running nodes), the prepared load, the measured
window, and the summary, JSON file and plot."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrchain import _core
from emrchain.bench import report
from emrchain.bench.cpu import process_cpu_seconds
from emrchain.bench.load import WindowOptions, run_window
from emrchain.bench.prepare import LoadPlan, prepare
from emrchain.config.node import MempoolSection, RpcSection
from emrchain.devnet.harness import Devnet

BENCH_CONSENSUS = {
    "timeout_propose_ms": 2_000,
    "timeout_prevote_ms": 500,
    "timeout_precommit_ms": 500,
    "timeout_delta_ms": 250,
    "timeout_commit_ms": 10,
}
"""Devnet timeouts for load runs. A short pause after a commit: under load a height's own work
(verify, execute, commit) already gathers the next block's transactions, and a long pause only
adds latency (4 validators at an offered 1,000 TPS: p50 400 ms with 50 ms, 132-179 ms with
0-10 ms); but with no pause at all a lone validator spins out empty blocks as fast as it can
commit them, starving admission (single node: 1,091 TPS and a block stream overflow at 0 ms,
5,729 at 10 ms). The propose timeout leaves room for a proposer busy with a large block."""
MAX_RATE_TXS_PER_S = 10_000
"""As fast as accepted, the run prepares this many transactions per second of duration (the
issue's physical ceiling of a 4-validator devnet on 2 cores), unless --max-txs says otherwise."""
MAX_BATCH_TXS = min(RpcSection.max_batch_txs, MempoolSection.max_batch_txs)
"""The node's default [rpc] and [mempool] max_batch_txs (1,000 each)."""
BATCHES_PER_SECOND_AT_RATE = 50
START_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class BenchOptions:
    output_dir: Path
    validators: int = 4
    duration_s: float = 60.0
    rate: float | None = None
    rpc_urls: tuple[str, ...] = ()
    batch_size: int | None = None
    lanes_per_node: int = 4
    senders_per_lane: int = 32
    max_outstanding: int = 10_000
    max_txs: int | None = None
    grace_s: float = 30.0
    workers: int = max(1, os.cpu_count() or 1)
    seed: int | None = None
    cache_dir: Path | None = None
    name: str = "bench"
    devnet_dir: Path | None = None
    """Create the devnet's homes here and keep them (logs, data) after the run."""
    consensus: dict[str, int] = dataclasses.field(default_factory=lambda: dict(BENCH_CONSENSUS))
    metrics: bool = True
    """Devnet nodes serve /metrics ([instrumentation], as testnet homes do), scraped every
    METRICS_SCRAPE_INTERVAL_S during the window like Prometheus would; False turns it off."""
    make_devnet: Callable[..., Devnet] = Devnet
    """Builds the devnet: `make_devnet(root, validators, consensus=..., settings=...)`, a
    `Devnet` or a subclass (e.g. `emrchain.devnet.netns.NetnsDevnet`, hosts of their own); it
    is left with `__exit__`, which for a subclass may tear down more than the processes."""


METRICS_SCRAPE_INTERVAL_S = 1.0
"""Fifteen times Prometheus's default rate: the cost of scraping shows, if it has one."""


class MetricsScraper:
    """A thread that GETs every node's /metrics each interval until stopped; counts replies."""

    def __init__(self, urls: list[str], interval_s: float) -> None:
        import threading

        self._urls, self._interval_s = urls, interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.scrapes = 0
        self.failures = 0

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            for url in self._urls:
                try:
                    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
                        response.read()
                    self.scrapes += 1
                except OSError:
                    self.failures += 1

    def __enter__(self) -> MetricsScraper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(10)


def _batch_size(options: BenchOptions) -> int:
    if options.batch_size is not None:
        return options.batch_size
    if options.rate is None:
        return MAX_BATCH_TXS // 2
    # At an offered rate, small frequent batches: latency is measured from the batch's send.
    return max(1, min(MAX_BATCH_TXS, round(options.rate / BATCHES_PER_SECOND_AT_RATE)))


def _plan(options: BenchOptions, chain_id: bytes, nodes: int, seed: int) -> LoadPlan:
    if options.rate is not None:
        total = math.ceil(options.rate * options.duration_s)
        if options.max_txs is not None:
            total = min(total, options.max_txs)
    elif options.max_txs is not None:
        total = options.max_txs
    else:
        total = math.ceil(MAX_RATE_TXS_PER_S * options.duration_s)
    lanes = nodes * options.lanes_per_node
    return LoadPlan(
        chain_id=chain_id,
        seed=seed,
        lanes=lanes,
        senders_per_lane=options.senders_per_lane,
        txs_per_lane=max(1, math.ceil(total / lanes)),
        batch_size=_batch_size(options),
    )


def _get_json(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _devnet_cpu_seconds(devnet: Devnet | None) -> float | None:
    """CPU time of all the devnet's node processes so far (None without a devnet of ours)."""
    if devnet is None:
        return None
    readings = [process_cpu_seconds(process.pid) for process in devnet.processes.values()]
    if not readings or any(reading is None for reading in readings):
        return None
    return sum(reading for reading in readings if reading is not None)


def node_health(urls: list[str]) -> list[dict[str, Any]]:
    """Halt reason, equivocation evidence and the admission counters of every node after the
    run (signatures verified and taken from the cache since the node started: with the
    committed count they say how often each node verified each transaction; the state cache's
    hits and misses)."""
    health: list[dict[str, Any]] = []
    for url in urls:
        try:
            status = _get_json(url + "/status")
        except (OSError, ValueError) as error:
            health.append({"url": url, "error": str(error)})
            continue
        health.append(
            {
                "url": url,
                "height": status["latest_height"],
                "halt": status["halt"],
                "evidence": len(status["evidence"]),
                "signatures_verified": status["counters"]["signatures_verified"],
                "signature_cache_hits": status["counters"]["signature_cache_hits"],
                "preverified_txs": status["counters"]["preverified_txs"],
                "state_cache_hits": status["counters"]["state_cache_hits"],
                "state_cache_misses": status["counters"]["state_cache_misses"],
            }
        )
    return health


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Run one load benchmark and return its summary (also written as JSON and PNG)."""
    devnet: Devnet | None = None
    temporary: Path | None = None
    try:
        if options.rpc_urls:
            urls = [url.rstrip("/") for url in options.rpc_urls]
            chain_id = _get_json(urls[0] + "/status")["chain_id"].encode()
            # Running nodes may hold earlier runs' senders: a fresh seed gives fresh senders.
            seed = options.seed if options.seed is not None else int(time.time())
        else:
            if options.devnet_dir is not None:
                root = options.devnet_dir
            else:
                temporary = Path(tempfile.mkdtemp(prefix="emrchain-bench-"))
                root = temporary / "net"
            devnet = options.make_devnet(
                root,
                options.validators,
                consensus=options.consensus,
                settings={"instrumentation": {"enabled": options.metrics}},
            )
            urls = devnet.rpc_urls
            chain_id = b"emrchain-devnet"
            seed = options.seed if options.seed is not None else 0
        plan = _plan(options, chain_id, len(urls), seed)
        total = plan.lanes * plan.txs_per_lane
        _log(
            f"preparing {total:,} signed transactions ({plan.lanes} lanes x "
            f"{plan.senders_per_lane} senders, batches of {plan.batch_size}) in "
            f"{options.workers} processes"
        )
        started = time.monotonic()
        lanes = prepare(plan, options.workers, options.cache_dir)
        _log(f"prepared in {time.monotonic() - started:.1f} s")
        if devnet is not None:
            devnet.start_all()
            devnet.wait_for_height(1, list(range(len(urls))), timeout_s=START_TIMEOUT_S)
            _log(f"devnet of {len(urls)} validators running: {', '.join(urls)}")
            # Anchors execute only for registered clinicians about registered patients.
            devnet.register_workload_members(senders=plan.senders, seed=seed)
            _log(f"registered the workload's {plan.senders} senders and their patients")
        else:
            _log("targeting running nodes: the workload's senders must be registered already")
        load_start = _load_average()
        window_options = WindowOptions(
            duration_s=options.duration_s,
            rate=options.rate,
            batch_size=plan.batch_size,
            max_outstanding=options.max_outstanding,
            grace_s=options.grace_s,
        )
        client_cpu_start_s = time.process_time()
        node_cpu_start_s = _devnet_cpu_seconds(devnet)
        scraped = (
            [devnet.instrumentation_url(index) for index in range(len(urls))]
            if devnet is not None and options.metrics
            else []
        )
        with MetricsScraper(scraped, METRICS_SCRAPE_INTERVAL_S) as scraper:
            tracker, window = asyncio.run(run_window(urls, lanes, window_options))
        node_cpu_end_s = _devnet_cpu_seconds(devnet)
        client_cpu_s = time.process_time() - client_cpu_start_s
        summary = report.summarize(tracker, window)
        # The nodes' CPU over the window and its drain, per committed transaction: a figure
        # that a shared machine's load moves far less than TPS (BENCHMARKS.md, 2026-12-01).
        node_cpu_s = None
        if node_cpu_start_s is not None and node_cpu_end_s is not None:
            node_cpu_s = node_cpu_end_s - node_cpu_start_s
        committed = summary["committed"]
        summary.update(
            validators=len(urls),
            duration_s=options.duration_s,
            rate=options.rate,
            batch_size=plan.batch_size,
            lanes=plan.lanes,
            load_average_start=load_start,
            load_average_end=_load_average(),
            client_cpu_s=round(client_cpu_s, 2),
            metrics=options.metrics,
            metrics_scrapes=scraper.scrapes,
            metrics_scrape_failures=scraper.failures,
            node_cpu_s=None if node_cpu_s is None else round(node_cpu_s, 2),
            node_cpu_us_per_tx=(
                round(node_cpu_s / committed * 1e6, 1) if node_cpu_s and committed else None
            ),
            nodes=node_health(urls),
            core=_core.IMPLEMENTATION,
            cores=os.cpu_count(),
            machine=platform.machine(),
            date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        )
        rows = report.timeline_rows(tracker, window.start_s)
        json_path = options.output_dir / f"{options.name}.json"
        png_path = options.output_dir / f"{options.name}.png"
        summary.update(json=str(json_path), plot=str(png_path))
        report.write_json(json_path, summary, rows)
        report.write_plot(png_path, summary, rows)
        return summary
    finally:
        if devnet is not None:
            devnet.__exit__(None, None, None)
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
