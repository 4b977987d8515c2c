"""Stored form of a block's transaction results: count u32 | per tx: code u16 | message bytes16.

Messages are UTF-8 and at most `MAX_TX_RESULT_MESSAGE_BYTES` long (the application cuts them).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from emrchain.types.codec import DecodeError, EncodeError, Reader, Writer
from emrchain.types.execution import MAX_TX_RESULT_MESSAGE_BYTES, TxResult

_CODE_AND_LENGTH = struct.Struct(">HH")


def encode_tx_results(results: Sequence[TxResult]) -> bytes:
    """The stored form of `results` (the module docstring). One struct pack per result rather
    than a `Writer` per field: every block's commit encodes one result per transaction, on the
    event loop. EncodeError for a code that is not an int within u16 (as `Writer.u16`),
    ValueError for a message over the limit."""
    parts = [Writer().u32(len(results)).bytes()]
    append = parts.append
    pack = _CODE_AND_LENGTH.pack
    for code, message in results:
        raw = message.encode("utf-8")
        if len(raw) > MAX_TX_RESULT_MESSAGE_BYTES:
            raise ValueError(f"a result message exceeds {MAX_TX_RESULT_MESSAGE_BYTES} bytes")
        if (
            type(code) is not int and (isinstance(code, bool) or not isinstance(code, int))
        ) or not 0 <= code <= 0xFFFF:
            raise EncodeError(f"{code!r} does not fit u16")
        append(pack(code, len(raw)))
        append(raw)
    return b"".join(parts)


def decode_tx_results(data: bytes, max_results: int) -> list[TxResult]:
    reader = Reader(data, "TxResults")
    count = reader.count(4, max_results, "count")
    results = []
    for _ in range(count):
        code = reader.u16("code")
        raw = reader.var_bytes(2, MAX_TX_RESULT_MESSAGE_BYTES, "message")
        try:
            results.append(TxResult(code, raw.decode("utf-8")))
        except UnicodeDecodeError:
            raise DecodeError("TxResults.message: not UTF-8") from None
    reader.finish()
    return results
