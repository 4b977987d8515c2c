"""The always-on invariants of docs/spec/consensus.md §5.1, each broken on purpose.

Each test builds the smallest broken piece that violates one rule (a core whose rule fires
every pass, a core tampered with after its decision, a runtime whose dispatch bound is too
small for what one input causes) and checks that `InvariantViolation` names that rule.
"""

from __future__ import annotations

import pytest

from emrchain.consensus import Step, TendermintCore
from emrchain.consensus.state_machine import MAX_EVALUATION_PASSES
from emrchain.invariants import InvariantViolation, invariant
from tests.consensus.support import PRECOMMIT, A, Runtime


class RuleThatNeverStopsFiring(TendermintCore):
    """Lines 47-48 without their "for the first time" guard: the rule fires on every pass."""

    def _rule_precommit_timeout(self) -> bool:
        return self._is_quorum(self._votes.total_power(self.round, PRECOMMIT))


def test_c1_the_evaluation_loop_stops_within_its_bound() -> None:
    runtime = Runtime(core_class=RuleThatNeverStopsFiring)
    runtime.start()
    runtime.votes([1, 2], PRECOMMIT, 0, A)
    with pytest.raises(InvariantViolation, match="C1 progress") as raised:
        runtime.vote(3, PRECOMMIT, 0, A)  # 2f+1 precommits, no proposal: no decision
    assert raised.value.invariant.startswith("C1")


def test_c1_bound_holds_on_the_longest_correct_evaluation() -> None:
    """The correct core never needs the bound (it is not a limit it works around)."""
    assert MAX_EVALUATION_PASSES == 12
    runtime = Runtime()
    runtime.start()
    runtime.propose(0, A)
    runtime.votes([1, 2, 3], PRECOMMIT, 0, A)
    assert runtime.core.round_step == Step.COMMIT


def test_i1_a_core_decides_once_per_height() -> None:
    runtime = Runtime()
    runtime.start()
    runtime.propose(0, A)
    runtime.votes([1, 2, 3], PRECOMMIT, 0, A)
    assert runtime.core.decided_block_id == A
    runtime.core.round_step = Step.PRECOMMIT  # the bug: the height goes on after deciding
    with pytest.raises(InvariantViolation, match="I1 agreement"):
        runtime.vote(0, PRECOMMIT, 0, A)


def test_invariant_names_the_rule_and_passes_when_it_holds() -> None:
    invariant(True, "X1 never raised")
    with pytest.raises(InvariantViolation) as raised:
        invariant(False, "X2 a rule", "detail")
    assert (raised.value.invariant, raised.value.detail) == ("X2 a rule", "detail")
    assert isinstance(raised.value, AssertionError)
