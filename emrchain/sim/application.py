"""The simulated application: toy blocks, `getValue()` and `valid(v)`.

A block payload is `b"SIMBLOCK" | height u64 | round u32 | proposer 32 | valid u8 | variant u8 |
time_ms u64` and its block id is SHA-256 of the payload. A correct proposer dates its block
max(virtual now, previous block time + 1), BFT time as a node does (docs/spec/consensus.md §4.8);
`valid(v)` then also asks previous time < time_ms <= virtual now + MAX_CLOCK_DRIFT_MS. A
byzantine proposer can set `valid = 0` (an invalid block every correct node rejects), vary
`variant` to equivocate with two different blocks, or date its block far in the future.
"""

from __future__ import annotations

import hashlib
import struct

_MAGIC = b"SIMBLOCK"
_LAYOUT = struct.Struct(">8sQI32sBBQ")
PAYLOAD_BYTES = _LAYOUT.size
MAX_CLOCK_DRIFT_MS = 1_000
"""The simulated `[consensus] max_clock_drift_ms` (every node reads the same virtual clock)."""


def make_block(
    height: int,
    round_number: int,
    proposer: bytes,
    *,
    valid: bool = True,
    variant: int = 0,
    time_ms: int = 0,
) -> bytes:
    """The payload a proposer builds for (height, round)."""
    return _LAYOUT.pack(_MAGIC, height, round_number, proposer, int(valid), variant, time_ms)


def block_id_of(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


def is_valid_block(
    payload: bytes,
    height: int,
    *,
    previous_time_ms: int | None = None,
    now_ms: int | None = None,
) -> bool:
    """`valid(v)` of the paper: deterministic for a given (previous block, clock reading).
    Without `now_ms` (a decided block, checked again) the upper time bound is not applied."""
    if len(payload) != PAYLOAD_BYTES:
        return False
    fields: tuple[bytes, int, int, bytes, int, int, int] = _LAYOUT.unpack(payload)
    magic, block_height, _round, _proposer, valid, _variant, time_ms = fields
    if magic != _MAGIC or block_height != height or valid != 1:
        return False
    if previous_time_ms is not None and time_ms <= previous_time_ms:
        return False
    return now_ms is None or time_ms <= now_ms + MAX_CLOCK_DRIFT_MS


def block_height(payload: bytes) -> int:
    return _LAYOUT.unpack(payload)[1] if len(payload) == PAYLOAD_BYTES else -1


def block_time(payload: bytes) -> int:
    """The payload's time_ms (0 for a payload that is not a block)."""
    return _LAYOUT.unpack(payload)[6] if len(payload) == PAYLOAD_BYTES else 0
