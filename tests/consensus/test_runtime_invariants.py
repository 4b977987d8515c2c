"""The runtime's always-on invariants (docs/spec/consensus.md §5.1), broken on purpose: a
dispatch bound smaller than what one input causes (R1) and a core that decides twice (I1).

Four validators of power 1 with the simulator's blocks; we are validator 0, and validator 1
proposes round 0 of height 1 (tests/consensus/support.py's layout).
"""

from __future__ import annotations

import pytest

from emrchain.consensus.effects import Decide
from emrchain.consensus.events import Event
from emrchain.consensus.runtime import (
    CommitBlock,
    ConsensusRuntime,
    PersistedConsensus,
    RuntimeLimits,
)
from emrchain.consensus.state_machine import TendermintCore
from emrchain.invariants import InvariantViolation
from emrchain.sim.application import block_id_of, make_block
from emrchain.sim.node import SimulatedBlocks
from emrchain.sim.simulation import MemoisedVerifier
from emrchain.types.vote import Proposal, Vote, VoteType
from tests.consensus.support import CONFIG, Runtime

CHAIN_ID = b"runtime-invariants"


class DecidesTwice(TendermintCore):
    """A core bug the runtime catches on its own: every decision is reported twice."""

    def step(self, event: Event) -> list:
        effects = super().step(event)
        return effects + [effect for effect in effects if isinstance(effect, Decide)]


def runtime_of(core_class: type[TendermintCore], limits: RuntimeLimits | None = None):
    layout = Runtime()  # keys and validator set only
    signers = layout.signers
    core = core_class(CONFIG, signers[0].public_key)
    runtime = ConsensusRuntime(
        core,
        signers[0],
        CHAIN_ID,
        SimulatedBlocks(signers[0].public_key),
        MemoisedVerifier(CHAIN_ID),
        limits,
    )
    runtime.start_height(1, layout.validator_set)
    return runtime, signers


def proposal_of_round_0(signers):
    block = make_block(1, 0, signers[1].public_key)
    proposal = Proposal.create(signers[1], CHAIN_ID, 1, 0, -1, block_id_of(block))
    return proposal, block


def test_r1_one_input_leads_to_a_bounded_number_of_events() -> None:
    runtime, signers = runtime_of(TendermintCore, RuntimeLimits(max_events_per_dispatch=1))
    proposal, block = proposal_of_round_0(signers)
    # ProposalReceived asks for validation: a second event, one more than the bound allows.
    with pytest.raises(InvariantViolation, match="R1 bounded dispatch"):
        runtime.on_proposal(proposal, block)


def test_i1_the_runtime_commits_one_block_per_height() -> None:
    for core_class, decisions in ((TendermintCore, 1), (DecidesTwice, None)):
        runtime, signers = runtime_of(core_class)
        proposal, block = proposal_of_round_0(signers)
        runtime.on_proposal(proposal, block)
        for signer in signers[1:3]:
            runtime.on_vote(
                Vote.create(signer, CHAIN_ID, VoteType.PRECOMMIT, 1, 0, proposal.block_id)
            )
        last = Vote.create(signers[3], CHAIN_ID, VoteType.PRECOMMIT, 1, 0, proposal.block_id)
        if decisions is None:
            with pytest.raises(InvariantViolation, match=r"I1 agreement.*\(height 1 after 1\)"):
                runtime.on_vote(last)
        else:
            actions = runtime.on_vote(last)
            assert sum(isinstance(action, CommitBlock) for action in actions) == decisions


def test_r2_a_runtime_restarts_once_before_any_height() -> None:
    runtime, _signers = runtime_of(TendermintCore)  # already at height 1
    nothing = PersistedConsensus(None, {})
    with pytest.raises(InvariantViolation, match="R2 restart"):
        runtime.restart(1, Runtime().validator_set, nothing)
