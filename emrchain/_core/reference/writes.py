"""Pure-Python twin of `_writes.pyx`: the SHA-256 of a block's canonical state writes.

The encoding is the one `docs/spec/state.md` §2 defines (`emrchain.state.result.encode_writes`
is its reference implementation, with the state layer's own error types): count u32, then per
write in ascending key order `key_length u16 | key | flag u8 (0 delete, 1 put) | value_length
u32 | value` (put only), all big-endian. The twins hash the same bytes without building them
twice and raise the same exceptions, checked in the same order:

1. more than `max_writes` writes: LimitError;
2. each key, in the mapping's iteration order: not exactly `bytes` → TypeError, length outside
   1..max_key_bytes → LimitError;
3. each value, in ascending key order: neither None nor exactly `bytes` → TypeError, longer than
   `max_value_bytes` → LimitError.

Exact `bytes` only: a caller that accepts bytes subclasses (the state layer does) falls back
to its reference encoding when these refuse them.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

from emrchain.schema.verdicts import LimitError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
MAX_WRITES_LIMIT = (1 << 32) - 1
MAX_KEY_BYTES_LIMIT = (1 << 16) - 1
MAX_VALUE_BYTES_LIMIT = (1 << 32) - 1


def check_limits(max_writes: int, max_key_bytes: int, max_value_bytes: int) -> None:
    """LimitError unless each limit fits its length field (u32 count, u16 key, u32 value)."""
    for name, value, top in (
        ("max_writes", max_writes, MAX_WRITES_LIMIT),
        ("max_key_bytes", max_key_bytes, MAX_KEY_BYTES_LIMIT),
        ("max_value_bytes", max_value_bytes, MAX_VALUE_BYTES_LIMIT),
    ):
        if type(value) is not int or not 0 <= value <= top:
            raise LimitError(f"{name} must be an int within 0..{top}, got {value!r}")


def writes_digest(
    writes: Mapping[bytes, bytes | None], max_writes: int, max_key_bytes: int, max_value_bytes: int
) -> bytes:
    """SHA-256 of the canonical encoding of `writes` (key -> value, None = delete)."""
    check_limits(max_writes, max_key_bytes, max_value_bytes)
    if len(writes) > max_writes:
        raise LimitError(f"more than {max_writes} writes")
    for key in writes:
        if type(key) is not bytes:
            raise TypeError(f"state keys are bytes, not {type(key).__name__}")
        if not 0 < len(key) <= max_key_bytes:
            raise LimitError(f"state key length {len(key)} outside 1..{max_key_bytes}")
    digest = hashlib.sha256(_U32.pack(len(writes)))
    update = digest.update
    for key in sorted(writes):
        value = writes[key]
        update(_U16.pack(len(key)))
        update(key)
        if value is None:
            update(b"\x00")
            continue
        if type(value) is not bytes:
            raise TypeError(f"state values are bytes, not {type(value).__name__}")
        if len(value) > max_value_bytes:
            raise LimitError(f"state value of {len(value)} bytes exceeds {max_value_bytes}")
        update(b"\x01")
        update(_U32.pack(len(value)))
        update(value)
    return digest.digest()
