"""Votes and proposals: the signed messages of the consensus protocol.

Vote:     type u8 | height u64 | round u32 | block_id 32 (all zeros = nil) | validator 32 | sig 64
Proposal: height u64 | round u32 | pol_round i32 (-1 = none) | block_id 32 | proposer 32 | sig 64
Each signs `signed_message(domain, chain_id, body)` where body is the encoding up to (excluding)
the validator/proposer key and the signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from emrchain.crypto.keys import Signer, verify_signature
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.limits import MAX_ROUND
from emrchain.types.signing import Domain, signed_message

NIL_BLOCK_ID = bytes(32)
VOTE_BYTES = 1 + 8 + 4 + 32 + 32 + 64
PROPOSAL_BYTES = 8 + 4 + 4 + 32 + 32 + 64


class VoteType(IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


def _check_height_round(height: int, round_number: int) -> None:
    if not 1 <= height < 1 << 63:
        raise ValueError("height must be within 1..2^63-1")
    if not 0 <= round_number <= MAX_ROUND:
        raise ValueError(f"round must be within 0..{MAX_ROUND}")


def _check_key_and_signature(key: bytes, signature: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != 32:
        raise ValueError("public key must be 32 bytes")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise ValueError("signature must be 64 bytes")


@dataclass(frozen=True, slots=True)
class Vote:
    type: VoteType
    height: int
    round: int
    block_id: bytes
    validator: bytes
    signature: bytes = bytes(64)

    @property
    def is_nil(self) -> bool:
        return self.block_id == NIL_BLOCK_ID

    def validate_basic(self) -> None:
        if self.type not in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            raise ValueError(f"unknown vote type {self.type}")
        _check_height_round(self.height, self.round)
        if not isinstance(self.block_id, bytes) or len(self.block_id) != 32:
            raise ValueError("block id must be 32 bytes")
        _check_key_and_signature(self.validator, self.signature)

    def body(self) -> bytes:
        return (
            Writer().u8(self.type).u64(self.height).u32(self.round).fixed(self.block_id, 32).bytes()
        )

    def signed_message(self, chain_id: bytes) -> bytes:
        return signed_message(Domain.VOTE, chain_id, self.body())

    @classmethod
    def create(
        cls,
        signer: Signer,
        chain_id: bytes,
        vote_type: VoteType,
        height: int,
        round_number: int,
        block_id: bytes,
    ) -> Vote:
        unsigned = cls(VoteType(vote_type), height, round_number, block_id, signer.public_key)
        unsigned.validate_basic()
        signature = signer.sign(unsigned.signed_message(chain_id))
        return cls(unsigned.type, height, round_number, block_id, signer.public_key, signature)

    def verify(self, chain_id: bytes) -> bool:
        return verify_signature(self.validator, self.signed_message(chain_id), self.signature)

    def encode(self) -> bytes:
        return self.body() + self.validator + self.signature

    @classmethod
    def read(cls, reader: Reader) -> Vote:
        raw_type = reader.u8("type")
        if raw_type not in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            raise DecodeError(f"Vote.type: unknown vote type {raw_type}")
        vote = cls(
            VoteType(raw_type),
            reader.u64("height"),
            reader.u32("round"),
            reader.fixed(32, "block_id"),
            reader.fixed(32, "validator"),
            reader.fixed(64, "signature"),
        )
        try:
            vote.validate_basic()
        except ValueError as error:
            raise DecodeError(f"Vote: {error}") from None
        return vote

    @classmethod
    def decode(cls, data: bytes) -> Vote:
        reader = Reader(data, "Vote")
        vote = cls.read(reader)
        reader.finish()
        return vote


@dataclass(frozen=True, slots=True)
class Proposal:
    height: int
    round: int
    pol_round: int
    block_id: bytes
    proposer: bytes
    signature: bytes = bytes(64)

    def validate_basic(self) -> None:
        _check_height_round(self.height, self.round)
        if not -1 <= self.pol_round < self.round:
            raise ValueError("pol_round must be -1 or within 0..round-1")
        if not isinstance(self.block_id, bytes) or len(self.block_id) != 32:
            raise ValueError("block id must be 32 bytes")
        if self.block_id == NIL_BLOCK_ID:
            raise ValueError("a proposal cannot propose nil")
        _check_key_and_signature(self.proposer, self.signature)

    def body(self) -> bytes:
        return (
            Writer()
            .u64(self.height)
            .u32(self.round)
            .i32(self.pol_round)
            .fixed(self.block_id, 32)
            .bytes()
        )

    def signed_message(self, chain_id: bytes) -> bytes:
        return signed_message(Domain.PROPOSAL, chain_id, self.body())

    @classmethod
    def create(
        cls,
        signer: Signer,
        chain_id: bytes,
        height: int,
        round_number: int,
        pol_round: int,
        block_id: bytes,
    ) -> Proposal:
        unsigned = cls(height, round_number, pol_round, block_id, signer.public_key)
        unsigned.validate_basic()
        signature = signer.sign(unsigned.signed_message(chain_id))
        return cls(height, round_number, pol_round, block_id, signer.public_key, signature)

    def verify(self, chain_id: bytes) -> bool:
        return verify_signature(self.proposer, self.signed_message(chain_id), self.signature)

    def encode(self) -> bytes:
        return self.body() + self.proposer + self.signature

    @classmethod
    def decode(cls, data: bytes) -> Proposal:
        reader = Reader(data, "Proposal")
        proposal = cls(
            reader.u64("height"),
            reader.u32("round"),
            reader.i32("pol_round"),
            reader.fixed(32, "block_id"),
            reader.fixed(32, "proposer"),
            reader.fixed(64, "signature"),
        )
        reader.finish()
        try:
            proposal.validate_basic()
        except ValueError as error:
            raise DecodeError(f"Proposal: {error}") from None
        return proposal
