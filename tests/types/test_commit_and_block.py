"""Commit certificates, equivocation evidence and block consistency rules."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from emrchain.types import (
    Block,
    CommitCertificate,
    CommitError,
    CommitSignature,
    DuplicateVoteEvidence,
    EvidenceError,
    Limits,
    Validator,
    ValidatorSet,
    Vote,
    VoteType,
    verify_commit,
)
from tests.vectors.generate_types import CHAIN_ID, digest, key, structures

BLOCK = digest("block-9")


def validator_set(powers: list[int]) -> ValidatorSet:
    return ValidatorSet([Validator(key(i).public_key, power) for i, power in enumerate(powers)])


def commit_from(signers: list[int], block_id: bytes = BLOCK, height: int = 9) -> CommitCertificate:
    votes = [
        Vote.create(key(i), CHAIN_ID, VoteType.PRECOMMIT, height, 1, block_id) for i in signers
    ]
    return CommitCertificate.from_precommits(votes)


def test_quorum_is_strictly_more_than_two_thirds() -> None:
    powers = validator_set([1, 1, 1, 1])
    verify_commit(commit_from([0, 1, 2]), powers, CHAIN_ID, height=9, block_id=BLOCK)
    with pytest.raises(CommitError, match="more than 2/3"):
        verify_commit(commit_from([0, 1]), powers, CHAIN_ID)
    # Weighted: 2 of 3 validators but holding exactly 2/3 of the power is not enough.
    weighted = validator_set([2, 1, 3])
    with pytest.raises(CommitError, match="more than 2/3"):
        verify_commit(commit_from([1, 2]), weighted, CHAIN_ID)  # 4 of 6
    verify_commit(commit_from([0, 2]), weighted, CHAIN_ID)  # 5 of 6


def test_a_set_larger_than_the_default_limit_verifies_its_own_commits() -> None:
    """A chain configured for more than the default 150 validators: a commit signed by 160 of
    its 200 decodes under its limits and must verify (found by reading encoding.md against the
    code: verify_commit bounded the entries by the default limits and refused it)."""
    limits = Limits(max_validators=200)
    powers = validator_set([1] * 200)
    commit = commit_from(list(range(160)))
    decoded = CommitCertificate.decode(commit.encode(), limits)
    verify_commit(decoded, powers, CHAIN_ID, height=9, block_id=BLOCK)
    # The bound that remains is the set's own size: a smaller set refuses the same commit.
    with pytest.raises(CommitError, match=r"1\.\.100 signatures"):
        verify_commit(decoded, validator_set([1] * 100), CHAIN_ID)


def test_commit_refuses_foreign_and_forged_entries() -> None:
    powers = validator_set([1, 1, 1, 1])
    with pytest.raises(CommitError, match="not in the validator set"):
        verify_commit(commit_from([0, 1, 2, 7]), powers, CHAIN_ID)
    good = commit_from([0, 1, 2, 3])
    forged_entry = CommitSignature(good.signatures[0].validator, good.signatures[1].signature)
    forged = dataclasses.replace(good, signatures=(forged_entry, *good.signatures[1:]))
    with pytest.raises(CommitError, match="invalid signature"):
        verify_commit(forged, powers, CHAIN_ID)
    with pytest.raises(CommitError, match="invalid signature"):
        verify_commit(good, powers, b"other-chain")
    with pytest.raises(CommitError, match="height"):
        verify_commit(good, powers, CHAIN_ID, height=10)
    with pytest.raises(CommitError, match="another block"):
        verify_commit(good, powers, CHAIN_ID, block_id=digest("other"))


def test_commit_from_mixed_precommits_is_refused() -> None:
    votes = [
        Vote.create(key(0), CHAIN_ID, VoteType.PRECOMMIT, 9, 1, BLOCK),
        Vote.create(key(1), CHAIN_ID, VoteType.PRECOMMIT, 9, 2, BLOCK),
    ]
    with pytest.raises(CommitError, match="disagree"):
        CommitCertificate.from_precommits(votes)
    with pytest.raises(CommitError, match="nil"):
        verify_commit(
            commit_from([0, 1, 2], block_id=bytes(32)), validator_set([1, 1, 1]), CHAIN_ID
        )


def test_evidence_verifies_and_rejects() -> None:
    members = validator_set([1, 1, 1, 1])
    first = Vote.create(key(3), CHAIN_ID, VoteType.PRECOMMIT, 4, 0, digest("x"))
    second = Vote.create(key(3), CHAIN_ID, VoteType.PRECOMMIT, 4, 0, bytes(32))
    evidence = DuplicateVoteEvidence.from_votes(first, second)
    evidence.verify(CHAIN_ID, members)
    assert evidence.vote_a.block_id == bytes(32)  # canonical order: nil sorts first
    with pytest.raises(EvidenceError, match="not in the validator set"):
        evidence.verify(CHAIN_ID, validator_set([1, 1, 1]))
    with pytest.raises(EvidenceError, match="signature"):
        evidence.verify(b"other-chain", members)
    other_round = Vote.create(key(3), CHAIN_ID, VoteType.PRECOMMIT, 4, 1, digest("y"))
    with pytest.raises(EvidenceError, match="differ"):
        DuplicateVoteEvidence.from_votes(first, other_round)
    with pytest.raises(EvidenceError, match="different blocks"):
        DuplicateVoteEvidence.from_votes(first, first)


def test_block_consistency_rules() -> None:
    block: Block = structures()["block"]
    block.validate_basic()
    header = block.header
    broken = {
        "tx_root": dataclasses.replace(
            block, header=dataclasses.replace(header, tx_root=digest("x"))
        ),
        "tx_count": dataclasses.replace(block, txs=block.txs[:-1]),
        "evidence_hash": dataclasses.replace(block, evidence=()),
        "previous block.s commit": dataclasses.replace(block, last_commit=None),
        "previous height": dataclasses.replace(block, header=dataclasses.replace(header, height=3)),
        "last_commit_hash": dataclasses.replace(
            block, header=dataclasses.replace(header, last_commit_hash=digest("x"))
        ),
    }
    for reason, candidate in broken.items():
        with pytest.raises(ValueError, match=reason):
            candidate.validate_basic()
    with pytest.raises(ValueError, match="more than 2 transactions"):
        block.validate_basic(Limits(max_block_txs=2))
    with pytest.raises(ValueError, match="longer than"):
        block.validate_basic(Limits(max_tx_bytes=200))


def test_block_tx_ids_are_computed_once_and_never_outlive_their_transactions() -> None:
    block: Block = structures()["block"]
    expected = tuple(hashlib.sha256(tx).digest() for tx in block.txs)
    assert block.tx_ids == expected
    assert block.tx_ids is block.tx_ids  # cached
    # A copy with other transactions computes its own ids (the cache is not copied), and the
    # cache takes no part in equality or in the encoding.
    shorter = dataclasses.replace(block, txs=block.txs[:-1])
    assert shorter.tx_ids == expected[:-1]
    fresh = Block.decode(block.encode())
    assert fresh == block and fresh.encode() == block.encode()
    with pytest.raises(ValueError, match="tx_root"):  # the root check uses the copy's own ids
        dataclasses.replace(block, txs=(*block.txs[:-1], block.txs[-1] + b"x")).validate_basic()


def test_a_block_with_known_tx_ids_uses_them_and_equals_the_hashed_one() -> None:
    block: Block = structures()["block"]
    ids = tuple(hashlib.sha256(tx).digest() for tx in block.txs)
    known = Block.with_known_tx_ids(block.header, block.txs, block.last_commit, block.evidence, ids)
    assert known.tx_ids is ids  # no hashing
    assert known == block and known.encode() == block.encode()
    known.validate_basic()
    with pytest.raises(ValueError, match="tx ids for"):
        Block.with_known_tx_ids(block.header, block.txs, block.last_commit, (), ids[:-1])
    # Wrong ids are not detected here; they give a root the header (and every peer) refuses.
    wrong = (*ids[:-1], digest("not this tx"))
    with pytest.raises(ValueError, match="tx_root"):
        Block.with_known_tx_ids(
            block.header, block.txs, block.last_commit, block.evidence, wrong
        ).validate_basic()


def test_validator_set_rules() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ValidatorSet([Validator(key(0).public_key, 1)] * 2).validate_basic()
    with pytest.raises(ValueError, match="power"):
        ValidatorSet([Validator(key(0).public_key, 0)]).validate_basic()
    with pytest.raises(ValueError, match=r"1\.\.2 validators"):
        validator_set([1, 1, 1]).validate_basic(Limits(max_validators=2))
    members = validator_set([5, 1, 1, 1])
    assert members.total_power == 8
    assert members.has_quorum(6) and not members.has_quorum(5)
    assert members.exceeds_one_third(3) and not members.exceeds_one_third(2)
    assert members.hash != validator_set([5, 1, 1, 2]).hash
