"""Same seed, same run, bit for bit: in one process and across processes (hash seeds differ)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from emrchain.sim.scenario import make_scenario, parse_faults
from emrchain.sim.simulation import Simulation

SIMULATE = Path(__file__).resolve().parents[2] / "scripts" / "simulate"


def run(seed: int, validators: int):
    scenario = make_scenario(seed, validators, parse_faults("mixed"), 3)
    return Simulation(scenario).run()


def test_same_seed_same_trace() -> None:
    for seed, validators in ((3, 4), (11, 7)):
        first, second = run(seed, validators), run(seed, validators)
        assert first.trace_hash == second.trace_hash
        assert (first.events, first.virtual_time_ms, first.heights_decided) == (
            second.events,
            second.virtual_time_ms,
            second.heights_decided,
        )


def test_different_seeds_differ() -> None:
    assert run(3, 4).trace_hash != run(4, 4).trace_hash


def test_same_seeds_same_trace_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    digests = set()
    for hash_seed in ("1", "987654"):
        environment = dict(os.environ, PYTHONHASHSEED=hash_seed)
        completed = subprocess.run(
            [str(SIMULATE), "--seeds", "4", "--validators", "4,7", "--json"],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(json.loads(completed.stdout.strip().splitlines()[-1])["trace_digest"])
    assert len(digests) == 1
