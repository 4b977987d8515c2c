"""Undo records: what `emrchain rollback` needs to take the state back one height.

The state is stored in place (`S` prefix) and the app hash chains each block's writes, so the
state before block h cannot be recomputed from the state after it: the values h overwrote are
gone. So the commit of h also stores, in the same batch, the previous value of every state key
h writes (absent keys included): `U | h -> count u32 | per key: key bytes16 | present u8 |
(value bytes32 if present)`. Only the last `[storage] undo_heights` heights keep theirs: the
commit of h deletes the record of h - undo_heights, and pruning deletes those below the base.

Most previous values come with the execution result (`ExecutionResult.previous_values`): the
keys execution read a moment before (nonces, member, patient and record entries), and the keys
the application proves were absent without a read (a new record's custody entry). The store
reads the rest from the database on its writer thread, before the block's batch is written.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from emrchain.types.codec import DecodeError, Reader
from emrchain.types.execution import MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES, MAX_WRITES

_COUNT = struct.Struct(">I")
_KEY_LENGTH = struct.Struct(">H")
_PRESENT_VALUE_LENGTH = struct.Struct(">BI")
_ABSENT = b"\x00"
_MISSING: Any = object()

UndoEntries = list[tuple[bytes, bytes | None]]
"""(state key, its value before the block; None = absent), in the block's write order."""


def encode_undo(
    keys: Iterable[bytes],
    known: Mapping[bytes, bytes | None],
    previous: Callable[[bytes], bytes | None],
) -> bytes:
    """The undo record of a block writing `keys`: each key with its committed value, from
    `known` (what execution read) or else `previous(key)` (a committed-state read)."""
    parts = [b""]
    count = 0
    append = parts.append
    key_length = _KEY_LENGTH.pack
    present = _PRESENT_VALUE_LENGTH.pack
    missing = _MISSING
    for key in keys:
        value = known.get(key, missing)
        if value is missing:
            value = previous(key)
        append(key_length(len(key)))
        append(key)
        if value is None:
            append(_ABSENT)
        else:
            append(present(1, len(value)))
            append(value)
        count += 1
    parts[0] = _COUNT.pack(count)
    return b"".join(parts)


def decode_undo(data: bytes) -> UndoEntries:
    """The entries of an undo record; DecodeError if it is malformed."""
    reader = Reader(data, "UndoRecord")
    count = reader.count(4, MAX_WRITES, "count")
    entries: UndoEntries = []
    for _ in range(count):
        key = reader.var_bytes(2, MAX_STATE_KEY_BYTES, "key")
        if not key:
            raise DecodeError("UndoRecord.key: empty")
        flag = reader.u8("present")
        if flag == 0:
            entries.append((key, None))
        elif flag == 1:
            entries.append((key, reader.var_bytes(4, MAX_STATE_VALUE_BYTES, "value")))
        else:
            raise DecodeError(f"UndoRecord.present: {flag} is neither 0 nor 1")
    reader.finish()
    return entries
