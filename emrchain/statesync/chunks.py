"""Snapshot chunks: the committed state's (key, value) entries in key order, cut into chunks.

One entry is `key length u16 | key | value length u32 | value`; a chunk is entries back to
back. A chunk is closed before the entry that would take it over `chunk_size_bytes`, so a chunk
is at most max(chunk_size_bytes, one entry) long. The same state and chunk size make the same
chunks on every node, hence the same manifest digest (docs/spec/statesync.md §1).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator

from emrchain.types.codec import DecodeError
from emrchain.types.execution import MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES

_KEY_LENGTH = struct.Struct(">H")
_VALUE_LENGTH = struct.Struct(">I")
ENTRY_OVERHEAD_BYTES = _KEY_LENGTH.size + _VALUE_LENGTH.size
MAX_ENTRY_BYTES = ENTRY_OVERHEAD_BYTES + MAX_STATE_KEY_BYTES + MAX_STATE_VALUE_BYTES


def chunk_hash(chunk: bytes) -> bytes:
    return hashlib.sha256(chunk).digest()


def max_chunk_bytes(chunk_size_bytes: int) -> int:
    """The longest chunk a snapshot of `chunk_size_bytes` can hold."""
    return max(chunk_size_bytes, MAX_ENTRY_BYTES)


def cut_chunks(
    entries: Iterable[tuple[bytes, bytes]], chunk_size_bytes: int
) -> Iterator[tuple[bytes, int]]:
    """(chunk, entries in it) for `entries` (in key order); at least one chunk, maybe empty."""
    parts: list[bytes] = []
    size = count = 0
    for key, value in entries:
        entry_size = ENTRY_OVERHEAD_BYTES + len(key) + len(value)
        if parts and size + entry_size > chunk_size_bytes:
            yield b"".join(parts), count
            parts, size, count = [], 0, 0
        parts += (_KEY_LENGTH.pack(len(key)), key, _VALUE_LENGTH.pack(len(value)), value)
        size += entry_size
        count += 1
    yield b"".join(parts), count  # the last chunk; the only, empty one of an empty state


def read_chunk(chunk: bytes, after: bytes) -> list[tuple[bytes, bytes]]:
    """The entries of `chunk`; DecodeError unless every key is valid and above the one before
    (the first above `after`, the last key of the previous chunk; b"" before the first).
    One tight loop: restoring a snapshot parses every entry of the state here."""
    entries: list[tuple[bytes, bytes]] = []
    append = entries.append
    key_length_at, value_length_at = _KEY_LENGTH.unpack_from, _VALUE_LENGTH.unpack_from
    position, end, previous = 0, len(chunk), after
    while position < end:
        if position + ENTRY_OVERHEAD_BYTES > end:
            raise DecodeError("chunk: truncated entry")
        (key_length,) = key_length_at(chunk, position)
        key_end = position + 2 + key_length
        if not 1 <= key_length <= MAX_STATE_KEY_BYTES or key_end + 4 > end:
            raise DecodeError("chunk: bad key length")
        key = chunk[position + 2 : key_end]
        (value_length,) = value_length_at(chunk, key_end)
        value_start = key_end + 4
        position = value_start + value_length
        if value_length > MAX_STATE_VALUE_BYTES or position > end:
            raise DecodeError("chunk: bad value length")
        if key <= previous:
            raise DecodeError("chunk: keys are not in strictly increasing order")
        append((key, chunk[value_start:position]))
        previous = key
    return entries
