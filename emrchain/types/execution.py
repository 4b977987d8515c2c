"""What executing a block hands to the store, as data: the state writes, the app hash, the
per-transaction results and the validator-set change — with the canonical writes encoding the app
hash is computed over, and the limits on state keys and values.

The app hash is a hash chain over state changes (`docs/spec/state.md` §2):

    writes_digest = SHA-256(encode_writes(writes))
    app_hash      = SHA-256(previous_app_hash ‖ height u64 ‖ writes_digest)

Genesis is "height 0" with 32 zero bytes as the previous app hash.

Why here, below both the application (`emrchain/state/`) and the store (`emrchain/store/`): the
application produces these values and the store persists them and checks that the app hash it
stores describes the writes it stores; neither needs the other to do so.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from emrchain import _core
from emrchain._core import LimitError
from emrchain.types.codec import DecodeError, Reader
from emrchain.types.validator import Validator, ValidatorSet

MAX_STATE_KEY_BYTES = 256
"""Longest application state key (the canonical writes encoding uses a u16 length prefix)."""
MAX_STATE_VALUE_BYTES = 1 << 20
"""Longest application state value (1 MiB; the largest value, the open validator-update
proposals, stays far below it)."""


class StateLimitError(ValueError):
    """A state key, value or overlay exceeded its limit (a bug in the application, never input)."""


class StateCorruptionError(RuntimeError):
    """A required state entry is missing or undecodable: the state was not produced by this
    application (or genesis never ran). Never caused by transaction input."""


def check_key(key: bytes) -> None:
    """Raise StateLimitError unless `key` is 1..MAX_STATE_KEY_BYTES bytes."""
    if not isinstance(key, bytes):
        raise StateLimitError(f"state keys are bytes, not {type(key).__name__}")
    if not 1 <= len(key) <= MAX_STATE_KEY_BYTES:
        raise StateLimitError(f"state key length {len(key)} outside 1..{MAX_STATE_KEY_BYTES}")


def check_value(value: bytes) -> None:
    """Raise StateLimitError unless `value` is bytes of at most MAX_STATE_VALUE_BYTES."""
    if not isinstance(value, bytes):
        raise StateLimitError(f"state values are bytes, not {type(value).__name__}")
    if len(value) > MAX_STATE_VALUE_BYTES:
        raise StateLimitError(f"state value of {len(value)} bytes exceeds {MAX_STATE_VALUE_BYTES}")


GENESIS_PREVIOUS_APP_HASH = bytes(32)
"""The "previous app hash" of the genesis state (height 0)."""
MAX_WRITES = (1 << 32) - 1
"""The writes count is a u32."""
MAX_TX_RESULT_MESSAGE_BYTES = 512
"""Longest result message (UTF-8 bytes); longer messages are cut at a character boundary."""

WRITE_DELETE = 0
WRITE_PUT = 1

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class TxResult(NamedTuple):
    """Outcome of one transaction: code 0 = applied; any other code changed nothing."""

    code: int
    message: str

    @classmethod
    def make(cls, code: int, message: str) -> TxResult:
        """A result with the message cut to MAX_TX_RESULT_MESSAGE_BYTES (stored rows stay small)."""
        raw = message.encode("utf-8")
        if len(raw) > MAX_TX_RESULT_MESSAGE_BYTES:
            message = raw[:MAX_TX_RESULT_MESSAGE_BYTES].decode("utf-8", "ignore")
        return cls(int(code), message)


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """Everything a block (or genesis) changes; the store commits it atomically with the block.

    `writes` maps application keys (without any store prefix) to a new value, or None to delete.
    `validator_updates` are the changes that take effect at height + 2; power 0 removes.
    `validators_after_next` is the set of height + 2 that the application made by applying
    them to the set of height + 1 (None when there are none): the store records it as it is.
    """

    writes: dict[bytes, bytes | None]
    app_hash: bytes
    tx_results: list[TxResult] = field(default_factory=list)
    validator_updates: list[Validator] = field(default_factory=list)
    validators_after_next: ValidatorSet | None = None
    previous_values: Mapping[bytes, bytes | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    """Committed values execution read (None: absent), for any subset of keys: the store's
    undo record takes the values the block overwrites from here before reading the store
    (`emrchain/store/undo.py`). Not part of the result's meaning: never hashed or compared."""


def encode_writes(writes: Mapping[bytes, bytes | None]) -> bytes:
    """The canonical encoding of a set of writes: count u32, then per write in ascending key
    order `key bytes16 | flag u8 (0 delete, 1 put) | value bytes32 (put only)`."""
    if len(writes) > MAX_WRITES:
        raise StateLimitError(f"more than {MAX_WRITES} writes")
    for key in writes:
        # Before sorting: a non-bytes key must not reach the comparison. A block has a few
        # thousand writes, so the common case is checked inline, the rest by check_key.
        if type(key) is not bytes or not 0 < len(key) <= MAX_STATE_KEY_BYTES:
            check_key(key)
    parts = [_U32.pack(len(writes))]
    append = parts.append
    u16, u32 = _U16.pack, _U32.pack
    for key in sorted(writes):
        value = writes[key]
        append(u16(len(key)))
        append(key)
        if value is None:
            append(b"\x00")
        else:
            if type(value) is not bytes or len(value) > MAX_STATE_VALUE_BYTES:
                check_value(value)
            append(b"\x01")
            append(u32(len(value)))
            append(value)
    return b"".join(parts)


def decode_writes(data: bytes, max_writes: int = 10_000_000) -> dict[bytes, bytes | None]:
    """Parse the canonical writes encoding; refuse anything that is not exactly canonical
    (unsorted or duplicate keys, bad flag, lengths over the limits, trailing bytes)."""
    reader = Reader(data, "Writes")
    count = reader.count(4, max_writes, "count")
    writes: dict[bytes, bytes | None] = {}
    previous: bytes | None = None
    for _ in range(count):
        key = reader.var_bytes(2, MAX_STATE_KEY_BYTES, "key")
        if not key:
            raise DecodeError("Writes.key: empty key")
        if previous is not None and key <= previous:
            raise DecodeError("Writes.key: keys must be strictly ascending")
        flag = reader.u8("flag")
        if flag == WRITE_PUT:
            writes[key] = reader.var_bytes(4, MAX_STATE_VALUE_BYTES, "value")
        elif flag == WRITE_DELETE:
            writes[key] = None
        else:
            raise DecodeError(f"Writes.flag: {flag} is neither 0 (delete) nor 1 (put)")
        previous = key
    reader.finish()
    return writes


def writes_digest(writes: Mapping[bytes, bytes | None]) -> bytes:
    """SHA-256(encode_writes(writes)), through the compiled core (`_core.writes_digest` hashes
    the same bytes without building them). What the core refuses (a bytes subclass, a limit
    exceeded) goes through `encode_writes`, which accepts the former and raises the precise
    StateLimitError for the latter."""
    try:
        return _core.writes_digest(writes, MAX_WRITES, MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES)
    except (LimitError, TypeError):
        return hashlib.sha256(encode_writes(writes)).digest()


def compute_app_hash(
    previous_app_hash: bytes, height: int, writes: Mapping[bytes, bytes | None]
) -> bytes:
    """SHA-256(previous_app_hash ‖ height u64 ‖ SHA-256(encode_writes(writes)))."""
    if not isinstance(previous_app_hash, bytes) or len(previous_app_hash) != 32:
        raise ValueError("previous_app_hash must be 32 bytes")
    if not isinstance(height, int) or not 0 <= height < 1 << 64:
        raise ValueError("height must fit u64")
    return hashlib.sha256(previous_app_hash + _U64.pack(height) + writes_digest(writes)).digest()
