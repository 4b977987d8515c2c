"""The checkers can fail (issue #3 item 7): deliberately broken cores are caught quickly.

The bounds are pinned: the simulation is deterministic, so "within N seeds" is a fixed fact
about the current code; if a change makes a variant harder to catch, this test says so.
"""

from __future__ import annotations

import pytest

from emrchain.sim.runner import RunSpec, run_one
from tests.consensus.support import PREVOTE, A, B, Runtime, own_votes

# (variant, validators, seeds within which an agreement violation must appear)
BOUNDS = [("no-lock", 4, 40), ("half-threshold", 7, 10)]


@pytest.mark.parametrize(("variant", "validators", "bound"), BOUNDS)
def test_broken_variant_violates_agreement_within_a_bounded_number_of_seeds(
    variant: str, validators: int, bound: int
) -> None:
    for seed in range(bound):
        summary = run_one(RunSpec(seed, validators, 3, "attack", variant))
        if any(line.startswith("I1") for line in summary.safety):
            # The same seed is clean with the correct core: the checker blames the variant.
            correct = run_one(RunSpec(seed, validators, 3, "attack", "correct"))
            assert correct.ok, correct.safety + correct.liveness
            return
    pytest.fail(f"{variant}: no agreement violation in {bound} seeds")


def test_the_no_lock_variant_breaks_exactly_the_lock_rule() -> None:
    from emrchain.consensus import Step
    from emrchain.sim.variants import NoLockCore

    outcomes = {}
    for core_class in (None, NoLockCore):
        runtime = Runtime(**({} if core_class is None else {"core_class": core_class}))
        runtime.start()
        runtime.propose(0, A)
        runtime.votes([1, 2], PREVOTE, 0, A)  # locked on A in round 0
        runtime.timeout(Step.PRECOMMIT)
        effects = runtime.propose(1, B)
        outcomes[core_class] = [vote.block_id for vote in own_votes(effects, PREVOTE)]
    assert outcomes[None] != outcomes[NoLockCore]
    assert outcomes[NoLockCore] == [B]


def test_variants_never_leak_into_production_code() -> None:
    from emrchain.consensus.state_machine import TendermintCore
    from emrchain.sim.variants import VARIANTS

    assert VARIANTS["correct"] is TendermintCore
    assert all(
        issubclass(cls, TendermintCore) and cls.__module__ == "emrchain.sim.variants"
        for name, cls in VARIANTS.items()
        if name != "correct"
    )
