"""The long one: >= 500 mixed-fault seeds of the correct core (issue #3 acceptance).

Part of the default suite; about 35 s on the 2-core development machine.
Deselect with -m "not slow".
"""

from __future__ import annotations

import pytest

from emrchain.sim.runner import RunSpec, Totals, run_one

SEEDS = range(10_000, 10_500)


@pytest.mark.slow
def test_500_mixed_fault_seeds_keep_every_invariant() -> None:
    totals = Totals(seeds=len(SEEDS))
    for seed in SEEDS:
        # 4 and 7 validators for every seed, 10 for every second one: 1250 runs.
        for validators in (4, 7, 10) if seed % 2 == 0 else (4, 7):
            totals.add(run_one(RunSpec(seed, validators, 3, "mixed", "correct")))
    report = totals.as_json()
    assert report["failing_seeds"] == [], report["failing_seeds"][:5]
    assert report["heights_decided"] >= 3 * report["runs"]
