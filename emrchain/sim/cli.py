"""`scripts/simulate`: run seeds through the simulator and report invariant violations."""

from __future__ import annotations

import argparse
import json
import sys

from emrchain.sim.runner import Totals, describe_failure, run_many, run_one, specs
from emrchain.sim.scenario import parse_faults
from emrchain.sim.variants import VARIANTS


def parse_validators(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(count < 1 or count > 100 for count in counts):
        raise argparse.ArgumentTypeError("validators is a comma list of counts within 1..100")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/simulate",
        description="Deterministic BFT simulation with fault injection and invariant checkers "
        "(docs/spec/consensus.md).",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=int, default=20, help="number of seeds to run")
    which.add_argument("--seed", type=int, help="replay exactly this seed (verbose)")
    parser.add_argument("--start-seed", type=int, default=0, help="first seed of --seeds")
    parser.add_argument("--validators", type=parse_validators, default=[4, 7], help="e.g. 4,7,10")
    parser.add_argument("--heights", type=int, default=3, help="K: heights to decide after GST")
    parser.add_argument(
        "--faults",
        default="mixed",
        help="mixed (default) | none | attack | comma list of network,crash,byzantine and "
        "byzantine behaviours (e.g. junk-proposals,extreme-time,future-flood: only these)",
    )
    parser.add_argument(
        "--variant",
        default="correct",
        choices=sorted(VARIANTS),
        help="a deliberately broken core, to demonstrate that the checkers fail",
    )
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parse_faults(args.faults)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.heights < 1:
        print("error: --heights must be at least 1", file=sys.stderr)
        return 2
    seeds = (
        [args.seed]
        if args.seed is not None
        else list(range(args.start_seed, args.start_seed + args.seeds))
    )
    run_specs = specs(seeds, args.validators, args.heights, args.faults, args.variant)
    totals = Totals(seeds=len(seeds))
    if args.seed is not None:
        for spec in run_specs:
            summary = run_one(spec)
            totals.add(summary)
            print(
                f"seed={spec.seed} validators={spec.validators}: {summary.description}\n"
                f"  heights decided {summary.heights_decided}, events {summary.events}, "
                f"virtual time {summary.virtual_time_ms} ms, trace {summary.trace_hash[:16]}"
            )
            if not summary.ok:
                describe_failure(summary, print)
    else:
        for summary in run_many(run_specs, args.processes):
            totals.add(summary)
            if not summary.ok:
                describe_failure(summary, print)
    report = totals.as_json(
        {
            "validators": args.validators,
            "heights": args.heights,
            "faults": args.faults,
            "variant": args.variant,
            "processes": args.processes,
        }
    )
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(
            f"{report['runs']} runs ({report['seeds']} seeds): "
            f"{report['safety_violations']} safety violations, "
            f"{report['liveness_failures']} liveness failures, "
            f"{report['heights_decided']} heights decided, "
            f"{report['seeds_per_second']} seeds/s"
        )
    return 0 if not totals.failing else 1


if __name__ == "__main__":
    sys.exit(main())
