"""Pinned runs: every seed that ever failed, and the seeds that catch the broken variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emrchain.sim.runner import RunSpec, run_one

PINNED = json.loads((Path(__file__).parent / "regression_seeds.json").read_text())["runs"]


@pytest.mark.parametrize(
    "entry", PINNED, ids=[f"{e['variant']}-{e['seed']}-n{e['validators']}" for e in PINNED]
)
def test_pinned_run(entry: dict) -> None:
    spec = RunSpec(
        entry["seed"], entry["validators"], entry["heights"], entry["faults"], entry["variant"]
    )
    summary = run_one(spec)
    if entry["expect"] == "ok":
        assert summary.ok, (summary.safety + summary.liveness, spec.replay_command())
    else:
        found = {line.split()[0] for line in summary.safety}
        assert entry["expect"] in found, (summary.safety, spec.replay_command())
