"""Tendermint BFT consensus as a pure state machine, plus the double-sign guard.

Pure: no clock, randomness, asyncio, threads or I/O anywhere in this package. The runtime
turns network messages, timers and application answers into events and carries out effects.
Specification: docs/spec/consensus.md.
"""

from emrchain.consensus.config import ConsensusConfig
from emrchain.consensus.effects import (
    Decide,
    Effect,
    ReportEvidence,
    RequestValue,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    ValidateValue,
)
from emrchain.consensus.events import (
    Event,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    ValueToPropose,
    ValueValidated,
    VoteReceived,
)
from emrchain.consensus.proposer import ProposerSelector, proposer, proposer_schedule
from emrchain.consensus.signing_guard import (
    DoubleSignError,
    SignedStep,
    SigningState,
    authorize,
    request_for_proposal,
    request_for_vote,
)
from emrchain.consensus.state_machine import ConsensusState, TendermintCore
from emrchain.consensus.step import Step

__all__ = [
    "ConsensusConfig",
    "ConsensusState",
    "Decide",
    "DoubleSignError",
    "Effect",
    "Event",
    "ProposalReceived",
    "ProposerSelector",
    "ReportEvidence",
    "RequestValue",
    "ScheduleTimeout",
    "SignProposal",
    "SignVote",
    "SignedStep",
    "SigningState",
    "StartHeight",
    "Step",
    "TendermintCore",
    "TimeoutFired",
    "ValidateValue",
    "ValueToPropose",
    "ValueValidated",
    "VoteReceived",
    "authorize",
    "proposer",
    "proposer_schedule",
    "request_for_proposal",
    "request_for_vote",
]
