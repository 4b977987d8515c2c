"""Stored form of a block's transaction results: count u32 | per tx: code u16 | message bytes16.

Messages are UTF-8 and at most `MAX_TX_RESULT_MESSAGE_BYTES` long (the application cuts them).
"""

from __future__ import annotations

from collections.abc import Sequence

from emrchain.state.result import MAX_TX_RESULT_MESSAGE_BYTES, TxResult
from emrchain.types.codec import DecodeError, Reader, Writer


def encode_tx_results(results: Sequence[TxResult]) -> bytes:
    writer = Writer().u32(len(results))
    for code, message in results:
        raw = message.encode("utf-8")
        if len(raw) > MAX_TX_RESULT_MESSAGE_BYTES:
            raise ValueError(f"a result message exceeds {MAX_TX_RESULT_MESSAGE_BYTES} bytes")
        writer.u16(code).var_bytes(raw, 2)
    return writer.bytes()


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
