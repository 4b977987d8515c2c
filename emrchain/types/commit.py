"""Commit certificates: >2/3 of voting power precommitted one block, and the check of that.

Encoding: height u64 | round u32 | block_id 32 | count u16 | count × (validator 32 | signature 64),
entries sorted by validator key, no duplicates. Each signature is a precommit for
(height, round, block_id), so every entry signs the same message.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, replace

from emrchain import _core
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.limits import DEFAULT_LIMITS, Limits
from emrchain.types.validator import ValidatorSet
from emrchain.types.vote import NIL_BLOCK_ID, Vote, VoteType


class CommitError(ValueError):
    """The certificate does not prove that the validator set committed the block."""


@dataclass(frozen=True, slots=True)
class CommitSignature:
    validator: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    height: int
    round: int
    block_id: bytes
    signatures: tuple[CommitSignature, ...]

    @classmethod
    def from_precommits(cls, precommits: list[Vote]) -> CommitCertificate:
        """Build a certificate from precommits for one (height, round, block)."""
        if not precommits:
            raise CommitError("no precommits")
        first = precommits[0]
        for vote in precommits:
            if (vote.type, vote.height, vote.round, vote.block_id) != (
                VoteType.PRECOMMIT,
                first.height,
                first.round,
                first.block_id,
            ):
                raise CommitError("precommits disagree on type, height, round or block")
        entries = {
            vote.validator: CommitSignature(vote.validator, vote.signature) for vote in precommits
        }
        ordered = tuple(entries[key] for key in sorted(entries))
        return cls(first.height, first.round, first.block_id, ordered)

    def precommit(self, entry: CommitSignature) -> Vote:
        return Vote(
            VoteType.PRECOMMIT,
            self.height,
            self.round,
            self.block_id,
            entry.validator,
            entry.signature,
        )

    def validate_basic(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.precommit(CommitSignature(bytes(32), bytes(64))).validate_basic()
        if self.block_id == NIL_BLOCK_ID:
            raise ValueError("a commit certificate cannot be for nil")
        if not 1 <= len(self.signatures) <= limits.max_validators:
            raise ValueError(f"a commit has 1..{limits.max_validators} signatures")
        keys = [entry.validator for entry in self.signatures]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise ValueError("commit signatures must be sorted by validator with no duplicates")
        for entry in self.signatures:
            if len(entry.validator) != 32 or len(entry.signature) != 64:
                raise ValueError("commit entry has a malformed key or signature")

    def encode(self) -> bytes:
        writer = (
            Writer()
            .u64(self.height)
            .u32(self.round)
            .fixed(self.block_id, 32)
            .u16(len(self.signatures))
        )
        for entry in self.signatures:
            writer.fixed(entry.validator, 32).fixed(entry.signature, 64)
        return writer.bytes()

    @classmethod
    def read(cls, reader: Reader, limits: Limits = DEFAULT_LIMITS) -> CommitCertificate:
        height = reader.u64("height")
        round_number = reader.u32("round")
        block_id = reader.fixed(32, "block_id")
        count = reader.count(2, limits.max_validators, "count")
        signatures = tuple(
            CommitSignature(reader.fixed(32, "validator"), reader.fixed(64, "signature"))
            for _ in range(count)
        )
        commit = cls(height, round_number, block_id, signatures)
        try:
            commit.validate_basic(limits)
        except ValueError as error:
            raise DecodeError(f"CommitCertificate: {error}") from None
        return commit

    @classmethod
    def decode(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> CommitCertificate:
        reader = Reader(data, "CommitCertificate")
        commit = cls.read(reader, limits)
        reader.finish()
        return commit

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()


def verify_commit(
    commit: CommitCertificate,
    validator_set: ValidatorSet,
    chain_id: bytes,
    *,
    height: int | None = None,
    block_id: bytes | None = None,
) -> None:
    """Check that `commit` proves `validator_set` committed a block; raise CommitError if not.

    Every entry must be a member of the set with a valid signature (a certificate carrying any
    bad entry is refused, even if the good ones alone reach quorum), and the signers' power must
    exceed 2/3 of the set's total. This is all a light client needs besides the set itself.

    The structural check bounds the entries by the set's own size: a certificate of distinct
    members cannot have more (the default `Limits` would refuse a chain's own commits once more
    than its 150 validators sign).
    """
    try:
        commit.validate_basic(replace(DEFAULT_LIMITS, max_validators=len(validator_set)))
    except ValueError as error:
        raise CommitError(str(error)) from None
    if height is not None and commit.height != height:
        raise CommitError(f"commit is for height {commit.height}, expected {height}")
    if block_id is not None and commit.block_id != block_id:
        raise CommitError("commit is for another block")
    signed_power = 0
    for entry in commit.signatures:
        power = validator_set.power_of(entry.validator)
        if power == 0:
            raise CommitError(f"signer {entry.validator.hex()[:16]} is not in the validator set")
        signed_power += power
    if not validator_set.has_quorum(signed_power):
        raise CommitError(
            f"signers hold {signed_power} of {validator_set.total_power} voting power; "
            "more than 2/3 is required"
        )
    message = commit.precommit(commit.signatures[0]).signed_message(chain_id)
    verdicts = _core.verify_batch(
        [entry.validator for entry in commit.signatures],
        [message] * len(commit.signatures),
        [entry.signature for entry in commit.signatures],
    )
    for entry, verdict in zip(commit.signatures, verdicts, strict=True):
        if verdict != 1:
            raise CommitError(f"invalid signature from {entry.validator.hex()[:16]}")
