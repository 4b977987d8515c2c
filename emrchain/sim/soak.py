"""`scripts/soak-simulate`: many seeds in parallel chunks, with progress, for long soaks.

Run on purpose (not in CI), e.g. the 100,000-seed soak of docs/spec/consensus.md §7:
    scripts/soak-simulate --seeds 100000 --processes 2 > soak.log
Every chunk prints one progress line; the last line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from emrchain.sim.cli import parse_validators
from emrchain.sim.runner import Totals, describe_failure, run_many, specs
from emrchain.sim.scenario import parse_faults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak-simulate", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100_000)
    parser.add_argument("--start-seed", type=int, default=0)
    parser.add_argument("--validators", type=parse_validators, default=[4, 7, 10])
    parser.add_argument("--heights", type=int, default=3)
    parser.add_argument("--faults", default="mixed")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=1_000, help="seeds per progress line")
    args = parser.parse_args(argv)
    parse_faults(args.faults)
    totals = Totals()
    end = args.start_seed + args.seeds
    for chunk_start in range(args.start_seed, end, args.chunk):
        seeds = list(range(chunk_start, min(chunk_start + args.chunk, end)))
        chunk_specs = specs(seeds, args.validators, args.heights, args.faults, "correct")
        for summary in run_many(chunk_specs, args.processes):
            totals.add(summary)
            if not summary.ok:
                describe_failure(summary, print)
        totals.seeds += len(seeds)
        report = totals.as_json()
        print(
            f"progress: seeds {args.start_seed}..{seeds[-1]} ({totals.seeds}/{args.seeds}), "
            f"runs {totals.runs}, safety violations {totals.safety_violations}, "
            f"liveness failures {totals.liveness_failures}, "
            f"{report['seeds_per_second']} seeds/s",
            flush=True,
        )
    print(json.dumps(totals.as_json({"validators": args.validators, "faults": args.faults})))
    return 0 if not totals.failing else 1


if __name__ == "__main__":
    sys.exit(main())
