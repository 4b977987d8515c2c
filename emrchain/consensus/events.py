"""Inputs of the consensus core. Time arrives only as `TimeoutFired`.

Messages handed to the core have had their signatures verified by the runtime (batched, at
ingress); the core still checks membership, height and round bounds itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.consensus.step import Step
from emrchain.types.validator import ValidatorSet
from emrchain.types.vote import Proposal, Vote


@dataclass(frozen=True, slots=True)
class StartHeight:
    """Begin `height` with `validator_set` (after the previous block was applied or synced).

    A node restarting in the middle of a height resumes at the round of its last signature
    with the lock its signing state recorded (`SigningState.lock_at`); a fresh height uses the
    defaults. The valid value starts equal to the lock (validRound ≥ lockedRound always holds).
    """

    height: int
    validator_set: ValidatorSet
    round: int = 0
    locked_round: int = -1
    locked_block_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    """A proposal whose signature the runtime has verified (our own ones come back here too)."""

    proposal: Proposal


@dataclass(frozen=True, slots=True)
class VoteReceived:
    """A prevote or precommit whose signature the runtime has verified (our own included)."""

    vote: Vote


@dataclass(frozen=True, slots=True)
class TimeoutFired:
    """A timeout the core asked for with `ScheduleTimeout` has expired."""

    height: int
    round: int
    step: Step


@dataclass(frozen=True, slots=True)
class ValueValidated:
    """The application's answer to `ValidateValue`: the paper's `valid(v)`."""

    height: int
    block_id: bytes
    valid: bool


@dataclass(frozen=True, slots=True)
class ValueToPropose:
    """The application's answer to `RequestValue`: the paper's `getValue()`."""

    height: int
    round: int
    block_id: bytes


Event = (
    StartHeight | ProposalReceived | VoteReceived | TimeoutFired | ValueValidated | ValueToPropose
)
