"""`emrchain bench`: the devnet load generator (see `emrchain.bench.load`)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from emrchain.cli.arguments import bounded_integer, home_path
from emrchain.cli.registry import CommandError, command


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1_000_000:
        raise argparse.ArgumentTypeError("must be within (0, 1000000]")
    return value


def _rpc_url(text: str) -> str:
    if not text.startswith("http://"):
        raise argparse.ArgumentTypeError(f"must be an http:// URL, got {text!r}")
    return text


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--validators", type=bounded_integer(1, 16), default=4, help="devnet validators (1..16)"
    )
    parser.add_argument(
        "--duration", type=_positive_number, default=60.0, help="measured window in seconds"
    )
    parser.add_argument(
        "--rate",
        type=_positive_number,
        default=None,
        help="offered transactions per second (default: as fast as the chain accepts)",
    )
    parser.add_argument(
        "--rpc",
        action="append",
        type=_rpc_url,
        default=[],
        help="target this running node instead of starting a devnet (repeat for several); "
        "the workload's senders must be registered members there",
    )
    parser.add_argument(
        "--output",
        type=home_path,
        default=Path(tempfile.gettempdir()) / "emrchain-bench",
        help="directory for the JSON and PNG results",
    )
    parser.add_argument("--name", default="bench", help="file name stem of the JSON and PNG")
    parser.add_argument(
        "--batch-size", type=bounded_integer(1, 1_000), default=None, help="txs per request"
    )
    parser.add_argument(
        "--lanes-per-node",
        type=bounded_integer(1, 64),
        default=4,
        help="concurrent in-order submission lanes per node",
    )
    parser.add_argument(
        "--senders-per-lane", type=bounded_integer(1, 10_000), default=32, help="keys per lane"
    )
    parser.add_argument(
        "--max-outstanding",
        type=bounded_integer(1, 1_000_000),
        default=10_000,
        help="as fast as accepted: most transactions in flight (submitted, not committed)",
    )
    parser.add_argument(
        "--max-txs",
        type=bounded_integer(1, 5_000_000),
        default=None,
        help="txs prepared as fast as accepted (default 10,000/s x duration); at a rate, a cap",
    )
    parser.add_argument(
        "--grace",
        type=_positive_number,
        default=30.0,
        help="seconds to wait after the window for accepted transactions to commit",
    )
    parser.add_argument(
        "--workers", type=bounded_integer(1, 64), default=None, help="signing processes"
    )
    parser.add_argument(
        "--seed",
        type=bounded_integer(0, 1 << 40),
        default=None,
        help="workload seed (default: 0 on a new devnet, the current time with --rpc)",
    )
    parser.add_argument(
        "--cache-dir", type=home_path, default=None, help="reuse signed transactions from here"
    )
    parser.add_argument(
        "--devnet-dir",
        type=home_path,
        default=None,
        help="create the devnet here (must not exist yet) and keep its homes and logs",
    )
    parser.add_argument(
        "--timeout-commit-ms",
        type=bounded_integer(0, 60_000),
        default=None,
        help="devnet consensus timeout_commit_ms (default: the bench devnet's)",
    )
    parser.add_argument(
        "--metrics",
        choices=("on", "off"),
        default="on",
        help="devnet nodes serve /metrics, scraped every second during the window (on, the "
        "default, as testnet homes), or [instrumentation] is disabled (off)",
    )


@command(
    "bench",
    "load-test a devnet (or running nodes): TPS and submission-to-finality latency",
    arguments=_arguments,
)
def bench(args: argparse.Namespace) -> int:
    from emrchain.bench import report
    from emrchain.bench.runner import BENCH_CONSENSUS, BenchOptions, run_bench
    from emrchain.devnet.harness import DevnetError

    if args.devnet_dir is not None and args.devnet_dir.exists():
        raise CommandError(f"--devnet-dir {args.devnet_dir} exists; give a new directory")
    consensus = dict(BENCH_CONSENSUS)
    if args.timeout_commit_ms is not None:
        consensus["timeout_commit_ms"] = args.timeout_commit_ms
    options = BenchOptions(
        output_dir=args.output,
        validators=args.validators,
        duration_s=args.duration,
        rate=args.rate,
        rpc_urls=tuple(args.rpc),
        batch_size=args.batch_size,
        lanes_per_node=args.lanes_per_node,
        senders_per_lane=args.senders_per_lane,
        max_outstanding=args.max_outstanding,
        max_txs=args.max_txs,
        grace_s=args.grace,
        seed=args.seed,
        cache_dir=args.cache_dir,
        name=args.name,
        devnet_dir=args.devnet_dir,
        consensus=consensus,
        metrics=args.metrics == "on",
        **({"workers": args.workers} if args.workers else {}),
    )
    try:
        summary = run_bench(options)
    except (DevnetError, RuntimeError) as error:
        raise CommandError(str(error)) from None
    print(report.human_summary(summary))
    print(json.dumps(summary, separators=(",", ":")))
    return 0 if summary["lost"] == 0 and summary["errors"] == 0 else 1
