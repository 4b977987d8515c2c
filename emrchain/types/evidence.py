"""Evidence of equivocation: two votes by one validator for different blocks in one step.

Encoding: vote_a | vote_b (each a fixed-size Vote encoding), with vote_a.block_id <
vote_b.block_id so that a pair has exactly one encoding. Anyone holding the validator set of that
height can verify it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from emrchain.types.codec import DecodeError, Reader
from emrchain.types.validator import ValidatorSet
from emrchain.types.vote import Vote


class EvidenceError(ValueError):
    """The evidence does not prove an equivocation."""


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence:
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

    def verify(self, chain_id: bytes, validator_set: ValidatorSet) -> None:
        """Raise EvidenceError unless both votes are validly signed by a member of the set."""
        try:
            self.validate_basic()
        except ValueError as error:
            raise EvidenceError(str(error)) from None
        if self.validator not in validator_set:
            raise EvidenceError("the accused is not in the validator set of that height")
        if not (self.vote_a.verify(chain_id) and self.vote_b.verify(chain_id)):
            raise EvidenceError("a vote signature does not verify")

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

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()
