"""Each invariant checker fires on a fabricated violation (the checkers can fail)."""

from __future__ import annotations

import pytest

from emrchain.consensus import TendermintCore
from emrchain.sim import variants
from emrchain.sim.application import block_id_of, make_block
from emrchain.sim.checkers import InvariantChecker
from emrchain.sim.runner import RunSpec, run_one
from emrchain.types.commit import CommitCertificate
from emrchain.types.evidence import DuplicateVoteEvidence
from emrchain.types.validator import Validator, ValidatorSet
from emrchain.types.vote import Proposal, Vote, VoteType
from tests.consensus.support import make_signers

CHAIN = b"checker-test"


@pytest.fixture
def world():
    signers = make_signers(4)
    validator_set = ValidatorSet(Validator(signer.public_key, 1) for signer in signers)
    keys = [signer.public_key for signer in signers]
    checker = InvariantChecker(CHAIN, validator_set, keys, [True, True, True, False])
    return signers, checker


def proposed(checker: InvariantChecker, signers, height: int, round_number: int, **block) -> bytes:
    proposer_key = checker._selector.proposer(height, round_number)
    signer = next(s for s in signers if s.public_key == proposer_key)
    payload = make_block(height, round_number, proposer_key, **block)
    proposal = Proposal.create(signer, CHAIN, height, round_number, -1, block_id_of(payload))
    checker.on_proposal_signed(0, 0, proposal, payload)
    return payload


def commit_for(signers, height: int, payload: bytes, count: int = 3) -> CommitCertificate:
    block_id = block_id_of(payload)
    return CommitCertificate.from_precommits(
        [Vote.create(s, CHAIN, VoteType.PRECOMMIT, height, 0, block_id) for s in signers[:count]]
    )


def invariants(checker: InvariantChecker) -> list[str]:
    return [violation.invariant for violation in checker.violations]


def test_a_correct_decision_passes(world) -> None:
    signers, checker = world
    payload = proposed(checker, signers, 1, 0)
    checker.on_decision(0, 0, 1, payload, commit_for(signers, 1, payload))
    checker.on_decision(0, 1, 1, payload, commit_for(signers, 1, payload))
    assert checker.violations == []


def test_i1_two_blocks_at_one_height(world) -> None:
    signers, checker = world
    first = proposed(checker, signers, 1, 0)
    second = proposed(checker, signers, 1, 1)
    checker.on_decision(0, 0, 1, first, commit_for(signers, 1, first))
    checker.on_decision(0, 1, 1, second, commit_for(signers, 1, second))
    assert invariants(checker) == ["I1"]
    assert checker.agreement_violated


def test_i1_ignores_byzantine_nodes(world) -> None:
    signers, checker = world
    first = proposed(checker, signers, 1, 0)
    second = proposed(checker, signers, 1, 1)
    checker.on_decision(0, 0, 1, first, commit_for(signers, 1, first))
    checker.on_decision(0, 3, 1, second, commit_for(signers, 1, second))
    assert checker.violations == []


def test_i2_unproposed_or_invalid_blocks(world) -> None:
    signers, checker = world
    never_proposed = make_block(1, 0, signers[0].public_key, variant=9)
    checker.on_decision(0, 0, 1, never_proposed, commit_for(signers, 1, never_proposed))
    invalid = proposed(checker, signers, 2, 0, valid=False)
    checker.on_decision(0, 0, 2, invalid, commit_for(signers, 2, invalid))
    assert invariants(checker) == ["I2", "I2"]


def test_i3_conflicting_signatures_of_a_correct_node(world) -> None:
    signers, checker = world
    for block_id in (bytes(32), b"\x01" * 32):
        checker.on_vote_signed(
            0, 1, Vote.create(signers[1], CHAIN, VoteType.PREVOTE, 1, 0, block_id)
        )
    checker.on_vote_signed(0, 1, Vote.create(signers[1], CHAIN, VoteType.PREVOTE, 1, 0, bytes(32)))
    assert invariants(checker) == ["I3"]


def test_i4_certificate_without_quorum(world) -> None:
    signers, checker = world
    payload = proposed(checker, signers, 1, 0)
    checker.on_decision(0, 0, 1, payload, commit_for(signers, 1, payload, count=2))
    assert invariants(checker) == ["I4"]


def test_i6_evidence_against_a_correct_validator(world) -> None:
    signers, checker = world

    def evidence_against(index: int) -> DuplicateVoteEvidence:
        votes = [
            Vote.create(signers[index], CHAIN, VoteType.PREVOTE, 1, 0, block_id)
            for block_id in (bytes(32), b"\x02" * 32)
        ]
        return DuplicateVoteEvidence.from_votes(*votes)

    checker.on_evidence(0, 0, evidence_against(3))  # validator 3 is the byzantine one
    assert checker.violations == []
    checker.on_evidence(0, 0, evidence_against(1))
    assert invariants(checker) == ["I6"]


class NeverDecides(TendermintCore):
    def _is_quorum(self, power: int) -> bool:
        return False


def test_i5_a_core_that_never_decides_fails_liveness(monkeypatch) -> None:
    monkeypatch.setitem(variants.VARIANTS, "never-decides", NeverDecides)
    summary = run_one(RunSpec(1, 4, 2, "none", "never-decides"))
    assert summary.safety == ()
    assert summary.liveness and summary.liveness[0].startswith("I5")
