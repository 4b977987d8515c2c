"""Conflicting proposals are evidence (`ConflictingProposalEvidence`, docs/spec/consensus.md
§1.4): the runtime reports two different signed proposals of one proposer at one (height,
round) once, and the evidence verifies, orders canonically and refuses what is not a conflict."""

from __future__ import annotations

import dataclasses

import pytest

from emrchain.consensus.effects import ReportEvidence
from emrchain.sim.application import block_id_of, make_block
from emrchain.types import ConflictingProposalEvidence, DecodeError, EvidenceError, decode_evidence
from emrchain.types.vote import Proposal
from tests.consensus.support import Runtime
from tests.consensus.test_relay import CHAIN_ID, runtime_of


def reported(actions) -> list:
    return [action.evidence for action in actions if isinstance(action, ReportEvidence)]


def test_two_proposals_at_one_position_are_reported_once() -> None:
    runtime, signers = runtime_of()
    proposer = signers[1]  # proposes round 0 of height 1
    blocks = [make_block(1, 0, proposer.public_key, variant=variant) for variant in (0, 1, 2)]
    proposals = [
        Proposal.create(proposer, CHAIN_ID, 1, 0, -1, block_id_of(block)) for block in blocks
    ]
    assert reported(runtime.on_proposal(proposals[0], blocks[0])) == []
    assert reported(runtime.on_proposal(proposals[0], blocks[0])) == []  # the same again
    (evidence,) = reported(runtime.on_proposal(proposals[1], blocks[1]))
    assert evidence == ConflictingProposalEvidence.from_proposals(proposals[1], proposals[0])
    assert evidence.validator == proposer.public_key and evidence.height == 1
    assert reported(runtime.on_proposal(proposals[2], blocks[2])) == []  # once per position


def test_a_forged_second_proposal_is_not_evidence() -> None:
    runtime, signers = runtime_of()
    proposer = signers[1]
    blocks = [make_block(1, 0, proposer.public_key, variant=variant) for variant in (0, 1)]
    first = Proposal.create(proposer, CHAIN_ID, 1, 0, -1, block_id_of(blocks[0]))
    second = Proposal.create(proposer, CHAIN_ID, 1, 0, -1, block_id_of(blocks[1]))
    runtime.on_proposal(first, blocks[0])
    forged = dataclasses.replace(second, signature=bytes(64))
    assert reported(runtime.on_proposal(forged, blocks[1])) == []


def test_the_evidence_verifies_and_refuses_non_conflicts() -> None:
    _, signers = runtime_of()
    validator_set = Runtime().validator_set
    first = Proposal.create(signers[1], CHAIN_ID, 3, 1, -1, b"\x01" * 32)
    second = Proposal.create(signers[1], CHAIN_ID, 3, 1, 0, b"\x01" * 32)  # other pol_round
    evidence = ConflictingProposalEvidence.from_proposals(first, second)
    evidence.verify(CHAIN_ID, validator_set)
    assert decode_evidence(evidence.encode()) == evidence
    assert evidence.encode()[0] == 3
    with pytest.raises(EvidenceError, match="signature"):
        evidence.verify(b"another-chain", validator_set)
    with pytest.raises(EvidenceError, match="must differ"):
        ConflictingProposalEvidence.from_proposals(first, first)
    other = Proposal.create(signers[2], CHAIN_ID, 3, 1, -1, b"\x02" * 32)
    with pytest.raises(EvidenceError, match="proposer"):
        ConflictingProposalEvidence.from_proposals(first, other)
    swapped = b"\x03" + evidence.proposal_b.encode() + evidence.proposal_a.encode()
    with pytest.raises(DecodeError, match="order"):
        decode_evidence(swapped)
