"""A/B load runs: the current checkout against an earlier commit, alternating, on one machine.

Why: on a shared 2-vCPU machine the same code's max-rate TPS moves by ±10 % from run to run
(BENCHMARKS.md), more than most single changes are worth. Running the two versions one after
the other, alternating which goes first, the same hour, and comparing pair by pair is what
separates a change from the machine's mood. Node CPU per committed transaction
(`node_cpu_us_per_tx`) at a fixed offered rate is the steadiest figure.

    scripts/bench-ab bef4c1b --pairs 4 -- --validators 1 --rate 15000 --duration 15

The base runs from a `git worktree` of BASE (detached, in a temporary directory) with its own
compiled core built by this checkout's venv, and `PYTHONPATH` pointing at it; the worktree is
removed afterwards. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
FIGURES = ("tps", "node_cpu_us_per_tx", "p95_ms")
LOWER_IS_BETTER = frozenset(("node_cpu_us_per_tx", "p95_ms"))
MAX_PAIRS = 50
RUN_TIMEOUT_S = 1_800


@dataclass(frozen=True)
class Pair:
    base: dict[str, float | None]
    new: dict[str, float | None]


def summarize(pairs: list[Pair]) -> dict[str, object]:
    """Per figure: both means, the ratio new/base, and how many pairs favour the new code
    (higher TPS; lower CPU per transaction and p95). Pairs missing a figure are left out of
    that figure."""
    summary: dict[str, object] = {"pairs": len(pairs)}
    for figure in FIGURES:
        complete = [
            (base, new)
            for pair in pairs
            if (base := pair.base.get(figure)) is not None
            and (new := pair.new.get(figure)) is not None
        ]
        if not complete:
            summary[figure] = None
            continue
        base_mean = statistics.fmean(float(base) for base, _ in complete)
        new_mean = statistics.fmean(float(new) for _, new in complete)
        lower = figure in LOWER_IS_BETTER
        favour = sum(1 for base, new in complete if (new < base if lower else new > base))
        summary[figure] = {
            "base_mean": round(base_mean, 1),
            "new_mean": round(new_mean, 1),
            "ratio": round(new_mean / base_mean, 4) if base_mean else None,
            "pairs_favouring_new": favour,
            "pairs_compared": len(complete),
        }
    return summary


def _run(tree: Path, bench_arguments: list[str], name: str) -> dict[str, float | None]:
    environment = dict(os.environ, PYTHONPATH=str(tree))
    command = [
        sys.executable, "-m", "emrchain.cli", "bench", *bench_arguments, "--name", name
    ]
    completed = subprocess.run(
        command,
        cwd=tree,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{name}: emrchain bench exited {completed.returncode}")
    result = json.loads(lines[-1])
    return {figure: result.get(figure) for figure in FIGURES}


def _worktree(base: str, directory: Path) -> Path:
    tree = directory / "base"
    subprocess.run(
        ["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", "-q", str(tree), base],
        check=True,
    )
    # The base's own compiled core: its .pyx may differ from this checkout's.
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench-ab", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("base", help="the commit to compare against (any git revision)")
    parser.add_argument("--pairs", type=int, default=3, help=f"pairs of runs (1..{MAX_PAIRS})")
    parser.epilog = "Everything after -- goes to `emrchain bench` for both sides."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    arguments = parser.parse_args(argv[:split])
    bench_arguments = argv[split + 1 :]
    if not 1 <= arguments.pairs <= MAX_PAIRS:
        parser.error(f"--pairs must be within 1..{MAX_PAIRS}")
    if "--name" in bench_arguments:
        parser.error("--name is set by bench-ab (ab-base-N, ab-new-N)")
    # The same defaults as scripts/bench-devnet: results beside the others, signed
    # transactions prepared once for every run.
    temporary = Path(tempfile.gettempdir())
    for option, default in (
        ("--output", temporary / "emrchain-bench"),
        ("--cache-dir", temporary / "emrchain-bench-cache"),
    ):
        if option not in bench_arguments:
            bench_arguments += [option, str(default)]
    pairs: list[Pair] = []
    with tempfile.TemporaryDirectory(prefix="emrchain-ab-") as directory:
        tree = _worktree(arguments.base, Path(directory))
        try:
            for number in range(1, arguments.pairs + 1):
                # Alternate which side goes first, so a drift of the machine favours neither.
                order = ("base", "new") if number % 2 else ("new", "base")
                figures = {}
                for side in order:
                    side_tree = tree if side == "base" else REPOSITORY
                    figures[side] = _run(side_tree, bench_arguments, f"ab-{side}-{number}")
                pair = Pair(figures["base"], figures["new"])
                pairs.append(pair)
                print(f"pair {number}: base {pair.base}  new {pair.new}", file=sys.stderr)
        finally:
            subprocess.run(
                ["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(tree)],
                check=False,
            )
    summary = summarize(pairs)
    summary["base"] = arguments.base
    summary["bench_arguments"] = bench_arguments
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
