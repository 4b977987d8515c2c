"""State-sync messages, P2P channel 4 (`tag u8 | body`, bounded decoding like the others):

STATESYNC 1 offers request = (empty)                 (send me your snapshots)
          2 offer          = manifest bytes32 | vouches (u16 count | (validator 32 | sig 64)*)
          3 chunk request  = height u64 | index u32
          4 chunk response = height u64 | index u32 | found u8 | chunk bytes32
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
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.limits import Limits

STATESYNC_CHANNEL = 4
MAX_CHUNK_SIZE_SETTING_BYTES = 16 * 1024 * 1024
"""The largest `[statesync] chunk_size_bytes` (a peer's may differ from ours)."""
MAX_MANIFEST_BYTES = 300_000 + 32 * MAX_CHUNKS


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


StateSyncMessage = OffersRequest | Offer | ChunkRequest | ChunkResponse


def encode_statesync(message: StateSyncMessage) -> bytes:
    if isinstance(message, OffersRequest):
        return b"\x01"
    if isinstance(message, Offer):
        writer = Writer().u8(2).var_bytes(message.manifest.encode(), 4)
        return writer.raw(encode_vouches(message.vouches)).bytes()
    if isinstance(message, ChunkRequest):
        return Writer().u8(3).u64(message.height).u32(message.index).bytes()
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
    else:
        raise DecodeError(f"unknown message: channel {STATESYNC_CHANNEL} tag {tag}")
    reader.finish()
    return message
