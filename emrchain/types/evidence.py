"""Evidence of equivocation: a validator signed two conflicting messages at one position.

Two kinds, told apart by their first byte, so that a block's evidence list needs no separate
tag and evidence of the first kind keeps the bytes (and hashes) it always had:

- `DuplicateVoteEvidence` = vote_a | vote_b (each a fixed-size Vote encoding, which begins with
  the vote type, 1 or 2), two votes of one (type, height, round) for different blocks, with
  vote_a.block_id < vote_b.block_id so that a pair has exactly one encoding;
- `ConflictingProposalEvidence` = 0x03 | proposal_a | proposal_b (fixed-size Proposal
  encodings), two different proposals of one proposer at one (height, round), ordered by
  their signed bodies.

Anyone holding the validator set of that height can verify either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from emrchain.types.codec import DecodeError, Reader
from emrchain.types.validator import ValidatorSet
from emrchain.types.vote import PROPOSAL_BYTES, Proposal, Vote


class EvidenceError(ValueError):
    """The evidence does not prove an equivocation."""


FORGED = "signature does not verify"
"""How every refusal of a forged evidence item ends (a peer that sends one is penalised)."""


class _SignedPairEvidence:
    """What both kinds share: two messages one validator signed, checked the same way."""

    __slots__ = ()

    @property
    def validator(self) -> bytes:
        raise NotImplementedError

    def validate_basic(self) -> None:
        raise NotImplementedError

    def signed_pair(self) -> tuple[Vote, Vote] | tuple[Proposal, Proposal]:
        raise NotImplementedError

    def encode(self) -> bytes:
        raise NotImplementedError

    def verify(self, chain_id: bytes, validator_set: ValidatorSet) -> None:
        """Raise EvidenceError unless both messages are validly signed by a member of the set."""
        try:
            self.validate_basic()
        except ValueError as error:
            raise EvidenceError(str(error)) from None
        if self.validator not in validator_set:
            raise EvidenceError("the accused is not in the validator set of that height")
        first, second = self.signed_pair()
        if not (first.verify(chain_id) and second.verify(chain_id)):
            kind = "vote" if isinstance(first, Vote) else "proposal"
            raise EvidenceError(f"a {kind} {FORGED}")

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence(_SignedPairEvidence):
    vote_a: Vote
    vote_b: Vote

    @classmethod
    def from_votes(cls, first: Vote, second: Vote) -> DuplicateVoteEvidence:
        """Order the two votes canonically and check they conflict."""
        low, high = sorted((first, second), key=lambda vote: vote.block_id)
        evidence = cls(low, high)
        evidence.validate_basic()
        return evidence

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator

    @property
    def height(self) -> int:
        return self.vote_a.height

    def validate_basic(self) -> None:
        self.vote_a.validate_basic()
        self.vote_b.validate_basic()
        a, b = self.vote_a, self.vote_b
        if (a.type, a.height, a.round, a.validator) != (b.type, b.height, b.round, b.validator):
            raise EvidenceError("votes differ in type, height, round or validator")
        if not a.block_id < b.block_id:
            raise EvidenceError("votes must be for different blocks, in block id order")

    def signed_pair(self) -> tuple[Vote, Vote]:
        return self.vote_a, self.vote_b

    def encode(self) -> bytes:
        return self.vote_a.encode() + self.vote_b.encode()

    @classmethod
    def read(cls, reader: Reader) -> DuplicateVoteEvidence:
        evidence = cls(Vote.read(reader), Vote.read(reader))
        try:
            evidence.validate_basic()
        except ValueError as error:
            raise DecodeError(f"DuplicateVoteEvidence: {error}") from None
        return evidence

    @classmethod
    def decode(cls, data: bytes) -> DuplicateVoteEvidence:
        reader = Reader(data, "DuplicateVoteEvidence")
        evidence = cls.read(reader)
        reader.finish()
        return evidence


CONFLICTING_PROPOSALS_TAG = 3
"""First byte of `ConflictingProposalEvidence`; a `DuplicateVoteEvidence` begins with a vote
type (1 or 2)."""


@dataclass(frozen=True, slots=True)
class ConflictingProposalEvidence(_SignedPairEvidence):
    proposal_a: Proposal
    proposal_b: Proposal

    @classmethod
    def from_proposals(cls, first: Proposal, second: Proposal) -> ConflictingProposalEvidence:
        """Order the two proposals canonically and check they conflict."""
        low, high = sorted((first, second), key=lambda proposal: proposal.body())
        evidence = cls(low, high)
        evidence.validate_basic()
        return evidence

    @property
    def validator(self) -> bytes:
        return self.proposal_a.proposer

    @property
    def height(self) -> int:
        return self.proposal_a.height

    @property
    def round(self) -> int:
        return self.proposal_a.round

    def validate_basic(self) -> None:
        self.proposal_a.validate_basic()
        self.proposal_b.validate_basic()
        a, b = self.proposal_a, self.proposal_b
        if (a.height, a.round, a.proposer) != (b.height, b.round, b.proposer):
            raise EvidenceError("proposals differ in height, round or proposer")
        if not a.body() < b.body():
            raise EvidenceError("proposals must differ, in the order of their signed bodies")

    def signed_pair(self) -> tuple[Proposal, Proposal]:
        return self.proposal_a, self.proposal_b

    def encode(self) -> bytes:
        return (
            bytes((CONFLICTING_PROPOSALS_TAG,))
            + self.proposal_a.encode()
            + self.proposal_b.encode()
        )

    @classmethod
    def read(cls, reader: Reader) -> ConflictingProposalEvidence:
        tag = reader.u8("tag")
        if tag != CONFLICTING_PROPOSALS_TAG:
            raise DecodeError(f"ConflictingProposalEvidence.tag: {tag} is not 3")
        try:
            evidence = cls(
                Proposal.decode(reader.fixed(PROPOSAL_BYTES, "proposal_a")),
                Proposal.decode(reader.fixed(PROPOSAL_BYTES, "proposal_b")),
            )
            evidence.validate_basic()
        except ValueError as error:
            raise DecodeError(f"ConflictingProposalEvidence: {error}") from None
        return evidence


Evidence = DuplicateVoteEvidence | ConflictingProposalEvidence


def read_evidence(reader: Reader) -> Evidence:
    """Either kind, by its first byte."""
    if reader.peek_u8("evidence") == CONFLICTING_PROPOSALS_TAG:
        return ConflictingProposalEvidence.read(reader)
    return DuplicateVoteEvidence.read(reader)


def decode_evidence(data: bytes) -> Evidence:
    reader = Reader(data, "Evidence")
    evidence = read_evidence(reader)
    reader.finish()
    return evidence
