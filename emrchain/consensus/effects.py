"""Outputs of the consensus core: requests the runtime carries out.

The core never signs, sends, stores or waits. `SignVote` and `SignProposal` are how it
"broadcasts": the runtime must, in this order, (1) ask the signing guard and persist the state
it returns, (2) sign, (3) broadcast, (4) feed the signed message back to the core as a received
event. A crash between any two of these steps is then safe (docs/spec/consensus.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.consensus.step import Step
from emrchain.types.commit import CommitCertificate
from emrchain.types.evidence import Evidence
from emrchain.types.vote import Proposal, Vote


@dataclass(frozen=True, slots=True)
class SignProposal:
    """Guard, persist, sign and broadcast this (unsigned) proposal, then feed it back."""

    proposal: Proposal


@dataclass(frozen=True, slots=True)
class SignVote:
    """Guard, persist, sign and broadcast this (unsigned) vote, then feed it back."""

    vote: Vote


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Deliver `TimeoutFired(height, round, step)` after `duration_ms`."""

    height: int
    round: int
    step: Step
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RequestValue:
    """We are the proposer and hold no valid value: answer with `ValueToPropose`."""

    height: int
    round: int


@dataclass(frozen=True, slots=True)
class ValidateValue:
    """Ask the application whether the block is valid: answer with `ValueValidated`."""

    height: int
    block_id: bytes


@dataclass(frozen=True, slots=True)
class Decide:
    """The height is decided: apply the block, then send `StartHeight(height + 1, ...)`."""

    height: int
    round: int
    block_id: bytes
    commit: CommitCertificate


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    """A validator signed two different votes for one (type, height, round)."""

    evidence: Evidence


Effect = (
    SignProposal
    | SignVote
    | ScheduleTimeout
    | RequestValue
    | ValidateValue
    | Decide
    | ReportEvidence
)
