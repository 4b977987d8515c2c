"""The step of a round: where a process is inside one round of Algorithm 1."""

from __future__ import annotations

from enum import IntEnum


class Step(IntEnum):
    """Ordered so that `step >= Step.PREVOTE` reads as in the paper (`step_p ≥ prevote`).

    COMMIT is not in Algorithm 1: it marks a height whose value has been decided while the
    runtime has not yet started the next height (it applies the block first).
    """

    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    COMMIT = 4
