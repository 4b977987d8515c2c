"""Proposer selection: a pure function of (validator set, height, round).

Rule (docs/spec/consensus.md §2). Each validator gets a weight: its voting power divided by the
greatest common divisor of all powers, scaled down proportionally (never below 1) when the
weights would sum to more than `MAX_SCHEDULE_LENGTH`. A schedule of length L = sum of weights is
built by smooth weighted round-robin, the rotation rule behind CometBFT's proposer priority:
every validator's priority grows by its weight, the highest priority proposes (ties go to the
smaller public key) and pays back L. Over one schedule every validator proposes exactly
`weight` times, spread out rather than bunched. The proposer of (height, round) is
`schedule[(height + round) mod L]`, so in any L consecutive rounds of a height every validator
proposes at least once: the bound the liveness argument needs.

Unlike CometBFT we carry no priorities from height to height, so the choice depends only on
the three inputs and every node computes it identically without extra state.
"""

from __future__ import annotations

import math

from emrchain.types.validator import ValidatorSet

MAX_SCHEDULE_LENGTH = 10_000


def proposer_weights(validator_set: ValidatorSet) -> tuple[int, ...]:
    """Schedule weights in the set's canonical (public key) order."""
    powers = [validator.power for validator in validator_set]
    if not powers:
        raise ValueError("an empty validator set has no proposer")
    divisor = math.gcd(*powers)
    weights = [power // divisor for power in powers]
    total = sum(weights)
    if total > MAX_SCHEDULE_LENGTH:
        weights = [max(1, weight * MAX_SCHEDULE_LENGTH // total) for weight in weights]
    return tuple(weights)


def proposer_schedule(validator_set: ValidatorSet) -> tuple[bytes, ...]:
    """One full rotation of proposers (public keys) for `validator_set`."""
    keys = [validator.public_key for validator in validator_set]
    weights = proposer_weights(validator_set)
    length = sum(weights)
    priorities = [0] * len(keys)
    schedule: list[bytes] = []
    for _ in range(length):
        best = 0
        for index, weight in enumerate(weights):
            priorities[index] += weight
            # Strictly greater keeps the earliest (smallest key) on ties.
            if priorities[index] > priorities[best]:
                best = index
        priorities[best] -= length
        schedule.append(keys[best])
    return tuple(schedule)


class ProposerSelector:
    """Caches the schedule of one validator set; `proposer(height, round)` is then O(1)."""

    __slots__ = ("_schedule",)

    def __init__(self, validator_set: ValidatorSet) -> None:
        self._schedule = proposer_schedule(validator_set)

    @property
    def schedule_length(self) -> int:
        """Every validator proposes at least once in this many consecutive rounds."""
        return len(self._schedule)

    def proposer(self, height: int, round_number: int) -> bytes:
        """Public key of the proposer of (height, round)."""
        return self._schedule[(height + round_number) % len(self._schedule)]


def proposer(validator_set: ValidatorSet, height: int, round_number: int) -> bytes:
    """Public key of the proposer of (height, round); see the module docstring for the rule."""
    return ProposerSelector(validator_set).proposer(height, round_number)
