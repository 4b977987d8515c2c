"""Committed evidence jails its offender from height + 2 (`emrchain/state/evidence.py`,
docs/spec/state.md §4.4): recorded once, never committable again, never emptying the set, and
undone only by a VALIDATOR_UPDATE the remaining validators approve."""

from __future__ import annotations

from emrchain.state import ResultCode, read_validator_sets
from emrchain.state.evidence import (
    MAX_EVIDENCE_AGE_BLOCKS,
    block_evidence_error,
    decode_committed,
    evidence_error,
)
from emrchain.state.keys import committed_evidence_key
from emrchain.types import (
    ConflictingProposalEvidence,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    VoteType,
)
from tests.state.chain import CHAIN_ID, ChainBuilder, signer, validator_update_tx


def double_sign(index: int, height: int, round_number: int = 0) -> DuplicateVoteEvidence:
    votes = [
        Vote.create(signer(index), CHAIN_ID, VoteType.PREVOTE, height, round_number, block_id)
        for block_id in (b"\x01" * 32, b"\x02" * 32)
    ]
    return DuplicateVoteEvidence.from_votes(*votes)


def keys_of(validator_set) -> set[bytes]:
    return {validator.public_key for validator in validator_set}


def test_the_offender_is_jailed_from_commit_height_plus_two() -> None:
    chain = ChainBuilder(powers=(1, 1, 1, 1))
    chain.add_block()
    offender = signer(3).public_key
    evidence = double_sign(3, 1)
    built = chain.add_block(evidence=(evidence,))  # committed at height 2
    assert [(update.public_key, update.power) for update in built.result.validator_updates] == [
        (offender, 0)
    ]
    next_set, after_next = read_validator_sets(chain.state)
    assert offender in keys_of(next_set)  # height 3: already fixed
    assert offender not in keys_of(after_next)  # height 4 = 2 + 2
    assert len(after_next) == 3
    chain.add_block()
    assert offender not in keys_of(read_validator_sets(chain.state)[0])  # signs no block 4
    stored = chain.state.get(committed_evidence_key(evidence.hash))
    assert stored is not None and decode_committed(stored) == (2, evidence)


def test_committed_evidence_cannot_be_committed_again() -> None:
    chain = ChainBuilder(powers=(1, 1, 1, 1))
    chain.add_block()
    evidence = double_sign(3, 1)

    def sets(height: int):
        return chain.genesis_validators if height <= 2 else None

    assert evidence_error(evidence, 2, CHAIN_ID, sets, chain.state) is None
    twice = block_evidence_error((evidence, evidence), 2, CHAIN_ID, sets, chain.state)
    assert twice == "the same evidence appears twice in the block"
    chain.add_block(evidence=(evidence,))
    reason = evidence_error(evidence, 3, CHAIN_ID, sets, chain.state)
    assert reason == "this evidence was committed already"


def test_evidence_must_be_older_than_its_block_and_young_enough() -> None:
    chain = ChainBuilder(powers=(1, 1, 1, 1))
    evidence = double_sign(3, 5)

    def sets(height: int):
        return chain.genesis_validators

    assert "not below" in str(evidence_error(evidence, 5, CHAIN_ID, sets, chain.state))
    assert (
        evidence_error(evidence, 5 + MAX_EVIDENCE_AGE_BLOCKS, CHAIN_ID, sets, chain.state) is None
    )
    too_old = evidence_error(evidence, 6 + MAX_EVIDENCE_AGE_BLOCKS, CHAIN_ID, sets, chain.state)
    assert "older than" in str(too_old)
    stranger = double_sign(9, 5)
    assert "not in the validator set" in str(
        evidence_error(stranger, 6, CHAIN_ID, sets, chain.state)
    )


def test_the_last_validator_is_not_jailed() -> None:
    chain = ChainBuilder(powers=(1,))
    chain.add_block()
    evidence = double_sign(0, 1)
    built = chain.add_block(evidence=(evidence,))
    assert built.result.validator_updates == []
    assert keys_of(read_validator_sets(chain.state)[1]) == {signer(0).public_key}
    assert chain.state.get(committed_evidence_key(evidence.hash)) is not None  # still recorded


def test_a_validator_update_restores_the_jailed_validator() -> None:
    chain = ChainBuilder(powers=(1, 1, 1, 1))
    chain.add_block()
    offender = signer(3).public_key
    chain.add_block(evidence=(double_sign(3, 1),))
    chain.add_block()
    chain.add_block()
    assert offender not in keys_of(read_validator_sets(chain.state)[0])
    # The three remaining validators (all of the current power) approve its return.
    approvals = [validator_update_tx(signer(index), 1, offender, 1, 1) for index in range(3)]
    built = chain.add_block(approvals)
    assert [result.code for result in built.result.tx_results] == [ResultCode.OK] * 3
    assert offender in keys_of(read_validator_sets(chain.state)[1])


def test_conflicting_proposals_jail_too() -> None:
    chain = ChainBuilder(powers=(1, 1, 1, 1))
    chain.add_block()
    offender = signer(2)
    evidence = ConflictingProposalEvidence.from_proposals(
        *(
            Proposal.create(offender, CHAIN_ID, 1, 0, -1, block_id)
            for block_id in (b"\x01" * 32, b"\x02" * 32)
        )
    )
    assert (
        evidence_error(evidence, 2, CHAIN_ID, lambda height: chain.genesis_validators, chain.state)
        is None
    )
    chain.add_block(evidence=(evidence,))
    assert offender.public_key not in keys_of(read_validator_sets(chain.state)[1])
