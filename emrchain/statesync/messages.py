"""State-sync messages, P2P channel 4 (`tag u8 | body`, bounded decoding like the others):

STATESYNC 1 offers request = (empty)                 (send me your snapshots)
          2 offer          = manifest bytes32 | vouches (u16 count | (validator 32 | sig 64)*)
          3 chunk request  = height u64 | index u32
          4 chunk response = height u64 | index u32 | found u8 | chunk bytes32
          5 set changes request = after_height u64
          6 set changes    = count u16 | (header bytes2 | commit bytes4 | validator set bytes4)*
          7 commit request = height u64
          8 commit         = height u64 | found u8 | CommitCertificate (if found)
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.statesync.chunks import max_chunk_bytes
from emrchain.statesync.manifest import (
    MAX_CHUNKS,
    Manifest,
    Vouch,
    encode_vouches,
    read_vouches,
)
from emrchain.types.block import BlockHeader
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.commit import CommitCertificate
from emrchain.types.limits import Limits
from emrchain.types.validator import ValidatorSet

STATESYNC_CHANNEL = 4
MAX_CHUNK_SIZE_SETTING_BYTES = 16 * 1024 * 1024
"""The largest `[statesync] chunk_size_bytes` (a peer's may differ from ours)."""
MAX_MANIFEST_BYTES = 300_000 + 32 * MAX_CHUNKS
MAX_SET_CHANGES = 64
"""Validator-set changes in one answer; a joining node asks again from the last one."""
MAX_PROOF_PART_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class OffersRequest:
    pass


@dataclass(frozen=True, slots=True)
class Offer:
    manifest: Manifest
    vouches: tuple[Vouch, ...]


@dataclass(frozen=True, slots=True)
class ChunkRequest:
    height: int
    index: int


@dataclass(frozen=True, slots=True)
class ChunkResponse:
    height: int
    index: int
    chunk: bytes | None
    """None: the peer does not have it (any more)."""


@dataclass(frozen=True, slots=True)
class SetChangesRequest:
    """The validator-set changes above `after_height`, each with its proof."""

    after_height: int


@dataclass(frozen=True, slots=True)
class SetChange:
    """The set in force from `header.height + 1` on, proven by block `header.height`'s header
    (whose next_validators_hash names it) and the certificate that committed that block."""

    header: BlockHeader
    commit: CommitCertificate
    validators: ValidatorSet


@dataclass(frozen=True, slots=True)
class SetChanges:
    changes: tuple[SetChange, ...]


@dataclass(frozen=True, slots=True)
class CommitRequest:
    height: int


@dataclass(frozen=True, slots=True)
class CommitResponse:
    height: int
    commit: CommitCertificate | None


StateSyncMessage = (
    OffersRequest
    | Offer
    | ChunkRequest
    | ChunkResponse
    | SetChangesRequest
    | SetChanges
    | CommitRequest
    | CommitResponse
)


def encode_statesync(message: StateSyncMessage) -> bytes:
    if isinstance(message, OffersRequest):
        return b"\x01"
    if isinstance(message, Offer):
        writer = Writer().u8(2).var_bytes(message.manifest.encode(), 4)
        return writer.raw(encode_vouches(message.vouches)).bytes()
    if isinstance(message, ChunkRequest):
        return Writer().u8(3).u64(message.height).u32(message.index).bytes()
    if isinstance(message, SetChangesRequest):
        return Writer().u8(5).u64(message.after_height).bytes()
    if isinstance(message, CommitRequest):
        return Writer().u8(7).u64(message.height).bytes()
    if isinstance(message, CommitResponse):
        writer = Writer().u8(8).u64(message.height).u8(0 if message.commit is None else 1)
        return writer.raw(message.commit.encode() if message.commit else b"").bytes()
    if isinstance(message, SetChanges):
        writer = Writer().u8(6).u16(len(message.changes))
        for change in message.changes:
            writer.var_bytes(change.header.encode(), 2).var_bytes(change.commit.encode(), 4)
            writer.var_bytes(change.validators.encode(), 4)
        return writer.bytes()
    writer = Writer().u8(4).u64(message.height).u32(message.index)
    writer.u8(0 if message.chunk is None else 1).var_bytes(message.chunk or b"", 4)
    return writer.bytes()


def decode_statesync(payload: bytes, limits: Limits) -> StateSyncMessage:
    """One channel-4 payload; DecodeError naming the problem for anything malformed."""
    if not payload:
        raise DecodeError("empty payload")
    tag = payload[0]
    reader = Reader(payload[1:], f"statesync tag {tag}")
    message: StateSyncMessage
    if tag == 1:
        message = OffersRequest()
    elif tag == 2:
        manifest = Manifest.decode(reader.var_bytes(4, MAX_MANIFEST_BYTES, "manifest"), limits)
        message = Offer(manifest, read_vouches(reader, limits))
    elif tag == 3:
        message = ChunkRequest(reader.u64("height"), reader.u32("index"))
    elif tag == 4:
        height, index, found = reader.u64("height"), reader.u32("index"), reader.u8("found")
        chunk = reader.var_bytes(4, max_chunk_bytes(MAX_CHUNK_SIZE_SETTING_BYTES), "chunk")
        if found not in (0, 1) or (not found and chunk):
            raise DecodeError("chunk response: bad found flag")
        message = ChunkResponse(height, index, chunk if found else None)
    elif tag == 5:
        message = SetChangesRequest(reader.u64("after_height"))
    elif tag == 6:
        count = reader.count(2, MAX_SET_CHANGES, "count")
        message = SetChanges(tuple(_read_change(reader, limits) for _ in range(count)))
    elif tag == 7:
        message = CommitRequest(reader.u64("height"))
    elif tag == 8:
        height, found = reader.u64("height"), reader.u8("found")
        if found not in (0, 1):
            raise DecodeError("commit response: bad found flag")
        message = CommitResponse(height, CommitCertificate.read(reader, limits) if found else None)
    else:
        raise DecodeError(f"unknown message: channel {STATESYNC_CHANNEL} tag {tag}")
    reader.finish()
    return message


def _read_change(reader: Reader, limits: Limits) -> SetChange:
    header = BlockHeader.decode(reader.var_bytes(2, MAX_PROOF_PART_BYTES, "header"))
    commit = CommitCertificate.decode(reader.var_bytes(4, MAX_PROOF_PART_BYTES, "commit"), limits)
    validators = ValidatorSet.decode(reader.var_bytes(4, MAX_PROOF_PART_BYTES, "set"), limits)
    return SetChange(header, commit, validators)
