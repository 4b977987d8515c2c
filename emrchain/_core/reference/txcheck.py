"""Reference twin of `_txcheck.pyx`: the batch checks, ids and fast decode of accepted bytes.

Written on top of the normative codec (`emrchain.schema.codec`), so what this twin accepts is
by construction what the spec says; the compiled module is held to the same verdicts, ids and
decoded values (`tests/core`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from emrchain import schema
from emrchain.schema.codec import DecodedTransaction, check_arguments, decode_transaction
from emrchain.schema.verdicts import TxDecodeError, Verdict

_ZERO_ID = bytes(32)

_KINDS = {int(kind): kind for kind in schema.TxKind}
_PLANS: dict[int, tuple[tuple[str, int, int], ...]] = {
    int(kind): tuple((spec.name, spec.type, spec.arg) for spec in specs)
    for kind, specs in schema.PAYLOAD_SCHEMAS.items()
}
_NUMBER_FIELDS = (schema.FIELD_UINT, schema.FIELD_ENUM)


def decode_accepted(raw: bytes) -> DecodedTransaction:
    """Decode a transaction that `check_transactions` accepted (verdict OK): the same result
    as `decode_transaction`, without repeating its checks.

    Block execution decodes every transaction of a block the node already checked in one
    compiled batch call; repeating each check in Python cost ~4 us per transaction. Only
    valid for accepted bytes: anything else may decode to garbage or raise IndexError.
    The compiled twin (`_txcheck.decode_accepted`, selected as `emrchain._core.decode_accepted`)
    returns equal results, field by field and type by type, for every accepted transaction.
    """
    chain_end = 2 + raw[1]
    kind = raw[chain_end]
    sender_start = chain_end + 1
    payload_start = sender_start + 42
    payload_end = payload_start + int.from_bytes(raw[sender_start + 40 : payload_start], "big")
    payload = raw[payload_start:payload_end]
    values: dict[str, Any] = {}
    position = 0
    for name, field_type, arg in _PLANS[kind]:
        end = position + arg
        if field_type == schema.FIELD_FIXED:
            values[name] = payload[position:end]
        elif field_type in _NUMBER_FIELDS:
            values[name] = int.from_bytes(payload[position:end], "big")
        else:
            start = end
            end = start + int.from_bytes(payload[position:start], "big")
            value = payload[start:end]
            if field_type == schema.FIELD_TEXT:
                values[name] = value.decode("utf-8")
            elif field_type == schema.FIELD_IDENT:
                values[name] = value.decode("ascii")
            else:
                values[name] = value
        position = end
    return DecodedTransaction(
        version=raw[0],
        chain_id=raw[2:chain_end],
        kind=_KINDS[kind],
        sender=raw[sender_start : sender_start + 32],
        nonce=int.from_bytes(raw[sender_start + 32 : sender_start + 40], "big"),
        payload=payload,
        signature=raw[payload_end:],
        fields=values,
    )


def check_transactions(
    txs: Sequence[bytes], chain_id: bytes, max_tx_bytes: int
) -> tuple[bytes, list[bytes]]:
    """Stateless checks on a batch: (one Verdict byte per tx, one 32-byte id per tx).

    The id is SHA-256 of the whole transaction; it is 32 zero bytes for TOO_LARGE items, which
    are never hashed.
    """
    check_arguments(chain_id, max_tx_bytes)
    verdicts = bytearray(len(txs))
    ids: list[bytes] = []
    for index, raw in enumerate(txs):
        try:
            decode_transaction(raw, chain_id, max_tx_bytes)
        except TxDecodeError as error:
            verdicts[index] = error.verdict
        ids.append(
            _ZERO_ID if verdicts[index] == Verdict.TOO_LARGE else hashlib.sha256(raw).digest()
        )
    return bytes(verdicts), ids


def tx_ids(txs: Sequence[bytes]) -> list[bytes]:
    """The id of each transaction: SHA-256 of all its bytes. TypeError if an item is not
    bytes (a bytearray or memoryview is refused too, as in the compiled twin) or `txs` is not
    sized (a generator)."""
    len(txs)
    ids: list[bytes] = []
    for raw in txs:
        if not isinstance(raw, bytes):
            raise TypeError("each transaction must be bytes")
        ids.append(hashlib.sha256(raw).digest())
    return ids
