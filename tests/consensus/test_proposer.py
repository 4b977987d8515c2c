"""Proposer selection (issue #3 item 2; docs/spec/consensus.md §2)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.consensus import ProposerSelector, proposer, proposer_schedule
from emrchain.consensus.proposer import MAX_SCHEDULE_LENGTH, proposer_weights
from emrchain.types.validator import Validator, ValidatorSet


def validator_set(powers: list[int]) -> ValidatorSet:
    return ValidatorSet(
        Validator(bytes([index + 1]) * 32, power) for index, power in enumerate(powers)
    )


def test_equal_power_is_plain_round_robin() -> None:
    validators = validator_set([5, 5, 5, 5])
    keys = [validator.public_key for validator in validators]
    for height in (1, 2, 99):
        window = [proposer(validators, height, r) for r in range(4)]
        assert sorted(window) == keys


def test_it_is_a_pure_function_of_its_inputs() -> None:
    powers = [3, 1, 7, 2]
    first = [proposer(validator_set(powers), h, r) for h in range(1, 5) for r in range(9)]
    second = [proposer(validator_set(powers), h, r) for h in range(1, 5) for r in range(9)]
    assert first == second


def test_weights_are_reduced_by_the_common_divisor() -> None:
    assert proposer_weights(validator_set([10, 20, 30])) == (1, 2, 3)


def test_each_validator_proposes_its_weight_times_per_schedule() -> None:
    validators = validator_set([3, 1, 2])
    schedule = proposer_schedule(validators)
    counts = Counter(schedule)
    assert [counts[v.public_key] for v in validators] == [3, 1, 2]
    # Spread out, not bunched: the heaviest never proposes three times in a row.
    assert schedule.count(schedule[0]) == 3 and len(set(schedule[:3])) > 1


def test_huge_powers_are_scaled_but_nobody_is_starved() -> None:
    validators = validator_set([10**12, 1, 3 * 10**11 + 7])
    schedule = proposer_schedule(validators)
    assert len(schedule) <= MAX_SCHEDULE_LENGTH + len(validators)
    assert set(schedule) == {validator.public_key for validator in validators}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=12), st.integers(1, 10**6)
)
def test_every_validator_gets_a_turn_within_the_schedule_length(powers, height) -> None:
    validators = validator_set(powers)
    selector = ProposerSelector(validators)
    length = selector.schedule_length
    for start in (0, 3, length + 1):
        window = {selector.proposer(height, start + r) for r in range(length)}
        assert window == {validator.public_key for validator in validators}
