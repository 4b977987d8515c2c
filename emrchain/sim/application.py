"""The simulated application: toy blocks, `getValue()` and `valid(v)`.

A block payload is `b"SIMBLOCK" | height u64 | round u32 | proposer 32 | valid u8 | variant u8`
and its block id is SHA-256 of the payload. A correct proposer's block depends only on
(height, round, proposer), so after a crash it rebuilds the very same block and may re-sign the
very same proposal. A byzantine proposer can set `valid = 0` (an invalid block every correct
node rejects) or vary `variant` to equivocate with two different blocks.
"""

from __future__ import annotations

import hashlib
import struct

_MAGIC = b"SIMBLOCK"
_LAYOUT = struct.Struct(">8sQI32sBB")
PAYLOAD_BYTES = _LAYOUT.size


def make_block(
    height: int, round_number: int, proposer: bytes, *, valid: bool = True, variant: int = 0
) -> bytes:
    """The payload a proposer builds for (height, round)."""
    return _LAYOUT.pack(_MAGIC, height, round_number, proposer, int(valid), variant)


def block_id_of(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


def is_valid_block(payload: bytes, height: int) -> bool:
    """`valid(v)` of the paper: deterministic, so every correct node gives the same answer."""
    if len(payload) != PAYLOAD_BYTES:
        return False
    fields: tuple[bytes, int, int, bytes, int, int] = _LAYOUT.unpack(payload)
    magic, block_height, _round, _proposer, valid, _variant = fields
    return magic == _MAGIC and block_height == height and valid == 1


def block_height(payload: bytes) -> int:
    return _LAYOUT.unpack(payload)[1] if len(payload) == PAYLOAD_BYTES else -1
