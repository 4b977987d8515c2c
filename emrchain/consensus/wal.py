"""The consensus write-ahead log's byte format: one canonical encoding for node and simulator.

A WAL segment holds the signed consensus messages of one height that the runtime accepted, in
the order it accepted them: proposals (with their block) and votes received after their
signature verified, and our own signed messages (docs/spec/consensus.md §4.3):

    segment = header | record*
    header  = magic "EMRWAL" | version u8 (1) | height u64
    record  = length u32 | checksum 4 | entry      (checksum: the first 4 bytes of SHA-256(entry))
    entry   = kind u8 (1) | Proposal (its 144-byte encoding) | block (the rest of the entry)
            | kind u8 (2) | Vote (its 141-byte encoding)

The block bytes are the application's own encoding (a node's `Block.encode()`, a simulated
payload); the log does not interpret them. A record cut short by a crash, or one whose
checksum does not match, ends the segment: `read_segment` returns the entries before it and
the length of the intact prefix, so the writer can truncate the torn tail before appending.
Pure: encoding and parsing only; the host stores the bytes (a file per height on a node, a
byte string per height in the simulator).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.vote import PROPOSAL_BYTES, VOTE_BYTES, Proposal, Vote

WAL_VERSION = 1
MAGIC = b"EMRWAL"
HEADER_BYTES = len(MAGIC) + 1 + 8
RECORD_PREFIX_BYTES = 4 + 4
PROPOSAL_ENTRY = 1
VOTE_ENTRY = 2

_RECORD_PREFIX = struct.Struct(">I4s")


@dataclass(frozen=True, slots=True)
class ProposalEntry:
    """A signed proposal with the encoding of the block it proposes."""

    proposal: Proposal
    block: bytes


@dataclass(frozen=True, slots=True)
class VoteEntry:
    vote: Vote


WalEntry = ProposalEntry | VoteEntry


@dataclass(frozen=True, slots=True)
class Segment:
    """A parsed segment: its height, its intact entries, and how many bytes they span."""

    height: int
    entries: tuple[WalEntry, ...]
    intact_bytes: int
    torn: bool
    """True if bytes after `intact_bytes` were dropped (a torn or corrupted record)."""


def segment_header(height: int) -> bytes:
    """The first bytes of the segment of `height`."""
    return Writer().raw(MAGIC).u8(WAL_VERSION).u64(height).bytes()


def _record(entry: bytes) -> bytes:
    return _RECORD_PREFIX.pack(len(entry), hashlib.sha256(entry).digest()[:4]) + entry


def proposal_record(proposal: Proposal, block: bytes) -> bytes:
    """The record of a signed proposal and its block's encoding."""
    return _record(bytes((PROPOSAL_ENTRY,)) + proposal.encode() + block)


def vote_record(vote: Vote, encoded: bytes | None = None) -> bytes:
    """The record of a signed vote; `encoded`, if given, is `vote.encode()` (a host that
    received the vote's bytes saves encoding it again)."""
    return _record(bytes((VOTE_ENTRY,)) + (encoded if encoded is not None else vote.encode()))


def decode_entry(data: bytes) -> WalEntry:
    """One entry (without its record prefix); DecodeError if it is not exactly one."""
    if not data:
        raise DecodeError("WAL entry: empty")
    kind, body = data[0], data[1:]
    if kind == VOTE_ENTRY:
        if len(body) != VOTE_BYTES:
            raise DecodeError("WAL vote entry: wrong length")
        return VoteEntry(Vote.decode(body))
    if kind == PROPOSAL_ENTRY:
        if len(body) < PROPOSAL_BYTES:
            raise DecodeError("WAL proposal entry: too short")
        return ProposalEntry(Proposal.decode(body[:PROPOSAL_BYTES]), body[PROPOSAL_BYTES:])
    raise DecodeError(f"WAL entry: unknown kind {kind}")


def read_segment(data: bytes, max_entry_bytes: int, max_entries: int) -> Segment:
    """Parse a segment; DecodeError only if its header is not a valid header.

    Records are read while they are intact: the first one that is cut short, longer than
    `max_entry_bytes`, fails its checksum or does not decode ends the segment (`torn`). At
    most `max_entries` are read; more also count as torn (the writer never writes more).
    """
    if len(data) < HEADER_BYTES:
        raise DecodeError("WAL segment: shorter than its header")
    header = Reader(data[:HEADER_BYTES], "WAL segment header")
    header.magic_and_version(MAGIC, WAL_VERSION, "WAL segment")
    height = header.u64("height")
    entries: list[WalEntry] = []
    offset = HEADER_BYTES
    while offset < len(data) and len(entries) < max_entries:
        entry = _entry_at(data, offset, max_entry_bytes)
        if entry is None:
            break
        decoded, end = entry
        entries.append(decoded)
        offset = end
    return Segment(height, tuple(entries), offset, offset != len(data))


def _entry_at(data: bytes, offset: int, max_entry_bytes: int) -> tuple[WalEntry, int] | None:
    """The intact entry at `offset` and the offset after it, or None."""
    start = offset + RECORD_PREFIX_BYTES
    if start > len(data):
        return None
    length, checksum = _RECORD_PREFIX.unpack_from(data, offset)
    end = start + length
    if length > max_entry_bytes or end > len(data):
        return None
    body = data[start:end]
    if hashlib.sha256(body).digest()[:4] != checksum:
        return None
    try:
        return decode_entry(body), end
    except DecodeError:
        return None
