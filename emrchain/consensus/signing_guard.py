"""Double-sign guard: pure logic over the persisted record of the last thing we signed.

The runtime calls `authorize` before EVERY signature of a proposal or vote, persists the
returned `SigningState` (atomically: write a temporary file then rename, or one LevelDB put),
and only then signs, broadcasts and feeds the signed message back to the core
(docs/spec/consensus.md §4). Because the record is on disk before any signature leaves the
node, a crash at any point can never lead to two conflicting signatures:

- a request for a later (height, round, step) than the record is allowed and becomes the record;
- the identical request (same height, round, step and signed bytes) is allowed again, so a node
  that crashed after persisting but before broadcasting can re-sign and send it after restart
  (Ed25519 is deterministic: it is the very same signature);
- anything else at the same or an earlier (height, round, step) is refused.

Steps are ordered proposal < prevote < precommit inside a round, as a proposer signs them.

The record also carries the lock. Algorithm 1 sets lockedValue/lockedRound exactly when it
precommits a value (lines 38-40), so the lock is the last non-nil precommit signed at the
record's height. A restarted node resumes the core with it (`StartHeight(..., locked_round=,
locked_block_id=)`); without it a crash would silently unlock the node, which breaks agreement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.vote import NIL_BLOCK_ID, Proposal, Vote, VoteType

SIGNING_STATE_VERSION = 1
_MAGIC = b"EMRSIGN"
SIGNING_STATE_BYTES = len(_MAGIC) + 1 + 8 + 4 + 1 + 32 + 32 + 4 + 32 + 4


class SignedStep(IntEnum):
    NOTHING = 0
    PROPOSAL = 1
    PREVOTE = 2
    PRECOMMIT = 3


class DoubleSignError(Exception):
    """Signing this message could conflict with something we already signed."""


@dataclass(frozen=True, slots=True)
class SigningState:
    """The last (height, round, step) we signed, its block id, the digest of its bytes, and
    the lock at that height (locked_round -1: not locked).

    Encoding: magic "EMRSIGN" | version u8 | height u64 | round u32 | step u8 | block_id 32 |
    message_digest 32 (SHA-256 of the signed message) | locked_round i32 | locked_block_id 32 |
    checksum 4 (SHA-256 of all before). The checksum turns a torn or corrupted write into a
    DecodeError instead of a wrong state.
    """

    height: int = 0
    round: int = 0
    step: SignedStep = SignedStep.NOTHING
    block_id: bytes = bytes(32)
    message_digest: bytes = bytes(32)
    locked_round: int = -1
    locked_block_id: bytes = bytes(32)

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.height, self.round, int(self.step))

    def encode(self) -> bytes:
        body = (
            Writer()
            .raw(_MAGIC)
            .u8(SIGNING_STATE_VERSION)
            .u64(self.height)
            .u32(self.round)
            .u8(int(self.step))
            .fixed(self.block_id, 32)
            .fixed(self.message_digest, 32)
            .i32(self.locked_round)
            .fixed(self.locked_block_id, 32)
            .bytes()
        )
        return body + hashlib.sha256(body).digest()[:4]

    @classmethod
    def decode(cls, data: bytes) -> SigningState:
        """Parse a persisted record; raise DecodeError if it is not exactly one valid record."""
        if len(data) != SIGNING_STATE_BYTES:
            raise DecodeError(f"SigningState: expected {SIGNING_STATE_BYTES} bytes")
        if hashlib.sha256(data[:-4]).digest()[:4] != data[-4:]:
            raise DecodeError("SigningState: checksum mismatch (torn or corrupted write)")
        reader = Reader(data[:-4], "SigningState")
        reader.magic_and_version(_MAGIC, SIGNING_STATE_VERSION, "SigningState")
        height = reader.u64("height")
        round_number = reader.u32("round")
        raw_step = reader.u8("step")
        if raw_step not in SignedStep._value2member_map_:
            raise DecodeError(f"SigningState: unknown step {raw_step}")
        block_id = reader.fixed(32, "block_id")
        digest = reader.fixed(32, "message_digest")
        locked_round = reader.i32("locked_round")
        locked_block_id = reader.fixed(32, "locked_block_id")
        reader.finish()
        if locked_round < -1 or (locked_round >= 0 and locked_round > round_number):
            raise DecodeError("SigningState: locked_round must be -1 or within 0..round")
        return cls(
            height,
            round_number,
            SignedStep(raw_step),
            block_id,
            digest,
            locked_round,
            locked_block_id,
        )

    def lock_at(self, height: int) -> tuple[int, bytes | None]:
        """(locked_round, locked_block_id) to resume `height` with; (-1, None) if unlocked."""
        if height != self.height or self.locked_round < 0:
            return -1, None
        return self.locked_round, self.locked_block_id


def request_for_vote(vote: Vote, chain_id: bytes) -> SigningState:
    """The record that signing `vote` on `chain_id` would leave behind."""
    step = SignedStep.PREVOTE if vote.type == VoteType.PREVOTE else SignedStep.PRECOMMIT
    digest = hashlib.sha256(vote.signed_message(chain_id)).digest()
    return SigningState(vote.height, vote.round, step, vote.block_id, digest)


def request_for_proposal(proposal: Proposal, chain_id: bytes) -> SigningState:
    """The record that signing `proposal` on `chain_id` would leave behind."""
    digest = hashlib.sha256(proposal.signed_message(chain_id)).digest()
    return SigningState(
        proposal.height, proposal.round, SignedStep.PROPOSAL, proposal.block_id, digest
    )


def authorize(last: SigningState, request: SigningState) -> SigningState:
    """Return the state to persist before signing `request`; raise DoubleSignError if not.

    The returned state equals `last` for an identical re-sign (nothing new to persist).
    """
    if request.step == SignedStep.NOTHING:
        raise ValueError("a signing request names a step")
    if request.position > last.position:
        if request.height == last.height:
            locked_round, locked_block_id = last.locked_round, last.locked_block_id
        else:
            locked_round, locked_block_id = -1, bytes(32)
        if request.step == SignedStep.PRECOMMIT and request.block_id != NIL_BLOCK_ID:
            locked_round, locked_block_id = request.round, request.block_id
        return SigningState(
            request.height,
            request.round,
            request.step,
            request.block_id,
            request.message_digest,
            locked_round,
            locked_block_id,
        )
    if request.position == last.position:
        if request.message_digest == last.message_digest and request.block_id == last.block_id:
            return last
        raise DoubleSignError(
            f"already signed different bytes at height {request.height} round {request.round} "
            f"step {request.step.name}"
        )
    raise DoubleSignError(
        f"height {request.height} round {request.round} step {request.step.name} is before the "
        f"last signed height {last.height} round {last.round} step {last.step.name}"
    )
