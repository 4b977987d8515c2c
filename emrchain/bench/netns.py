"""Load runs on 4 validators with hosts of their own, at several network round-trip times.

    scripts/bench-netns --rtt-ms 0 20 50 --rate 1000 --duration 30

For each round-trip time R, two runs of `emrchain.bench.runner.run_bench` on a
`emrchain.devnet.netns.NetnsDevnet` whose peer links are delayed R/2 each way (0: direct
dials, no proxy): one at the fixed offered `--rate`, one as fast as accepted. The client (this
process) reaches each node's RPC over its management relay, with no added delay: a hospital's
clients are near its own node; the delay is between the hospitals. Each run's JSON and plot go
to `--output`; the last stdout line is one JSON object with every run's figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from emrchain.bench.runner import BENCH_CONSENSUS, BenchOptions, run_bench
from emrchain.devnet.netns import NetnsDevnet, is_supported, sweep_stale

FIGURES = ("tps", "offered_tps", "p50_ms", "p95_ms", "committed", "lost", "errors")
MAX_RTT_MS = 1_000


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench-netns", description=__doc__.splitlines()[0])
    parser.add_argument("--rtt-ms", type=int, nargs="+", default=[0, 20, 50])
    parser.add_argument("--rate", type=float, default=1_000.0, help="the fixed offered rate")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per run")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("rate", "max"),
        default=["rate", "max"],
        help="rate: at --rate; max: as fast as accepted",
    )
    parser.add_argument(
        "--output", type=Path, default=Path(tempfile.gettempdir()) / "emrchain-bench-netns"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "emrchain-bench-cache"
    )
    arguments = parser.parse_args(argv)
    for rtt_ms in arguments.rtt_ms:
        if not 0 <= rtt_ms <= MAX_RTT_MS or rtt_ms % 2:
            parser.error(f"--rtt-ms {rtt_ms}: an even number of milliseconds, 0..{MAX_RTT_MS}")
    if not 1 <= arguments.duration <= 3_600 or arguments.rate <= 0:
        parser.error("--duration must be 1..3600 s and --rate positive")
    return arguments


def run(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for rtt_ms in arguments.rtt_ms:
        for mode in arguments.modes:
            name = f"netns-rtt{rtt_ms}-{mode}"
            print(f"bench-netns: {name}", file=sys.stderr, flush=True)
            options = BenchOptions(
                output_dir=arguments.output,
                validators=4,
                duration_s=arguments.duration,
                rate=arguments.rate if mode == "rate" else None,
                cache_dir=arguments.cache_dir,
                name=name,
                consensus=dict(BENCH_CONSENSUS),
                make_devnet=functools.partial(NetnsDevnet, latency_ms=rtt_ms // 2),
            )
            summary = run_bench(options)
            results.append(
                {"rtt_ms": rtt_ms, "mode": mode}
                | {figure: summary[figure] for figure in FIGURES}
                | {"load_average_end": summary["load_average_end"], "json": summary["json"]}
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    supported, reason = is_supported()
    if not supported:
        print(f"bench-netns: {reason}", file=sys.stderr)
        return 2
    sweep_stale()
    results = run(arguments)
    for result in results:
        print(
            f"RTT {result['rtt_ms']:>3} ms {result['mode']:>4}: {result['tps']:>8,.1f} TPS "
            f"(offered {result['offered_tps']:,.0f}) p50 {result['p50_ms']} ms "
            f"p95 {result['p95_ms']} ms lost {result['lost']}"
        )
    print(json.dumps(results, separators=(",", ":")))
    return 0 if all(result["lost"] == 0 and result["errors"] == 0 for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
