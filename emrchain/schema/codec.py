"""The transaction codec: the normative statement of the stateless rules.

`decode_transaction` applies the checks of `docs/spec/encoding.md` §5 in spec order and raises
`TxDecodeError` with the first failing verdict. `encode_payload` / `decode_payload` convert
between payload bytes and a field dict, walking `schema.PAYLOAD_SCHEMAS`. The core's batch
checker (`emrchain._core.check_transactions`, compiled or its reference twin) is held to give
the same verdicts (`tests/core`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from emrchain import schema
from emrchain.schema.verdicts import LimitError, TxDecodeError, Verdict

_ZERO_ID = bytes(32)


class DecodedTransaction(NamedTuple):
    """A transaction that passed every stateless check."""

    version: int
    chain_id: bytes
    kind: schema.TxKind
    sender: bytes
    nonce: int
    payload: bytes
    signature: bytes
    fields: dict[str, Any]


def check_arguments(chain_id: bytes, max_tx_bytes: int) -> None:
    """Validate the batch-level arguments; both twins call the same rules."""
    if not isinstance(chain_id, bytes):
        raise TypeError("chain_id must be bytes")
    if not isinstance(max_tx_bytes, int) or isinstance(max_tx_bytes, bool):
        raise TypeError("max_tx_bytes must be an int")
    if not 1 <= len(chain_id) <= schema.CHAIN_ID_MAX_BYTES or any(
        byte not in schema.IDENT_ALPHABET for byte in chain_id
    ):
        raise LimitError("chain_id must be 1..50 bytes of [a-z0-9._-]")
    if not schema.ENVELOPE_FIXED_BYTES <= max_tx_bytes <= schema.TX_MAX_BYTES_LIMIT:
        raise LimitError(
            f"max_tx_bytes must be within "
            f"{schema.ENVELOPE_FIXED_BYTES}..{schema.TX_MAX_BYTES_LIMIT}"
        )


def _read_field(spec: schema.FieldSpec, payload: bytes, position: int) -> tuple[Any, int]:
    """Decode one field at `position`; return (value, next position)."""
    end = len(payload)
    if spec.type in (schema.FIELD_FIXED, schema.FIELD_UINT, schema.FIELD_ENUM):
        width = spec.arg
        if position + width > end:
            raise TxDecodeError(Verdict.PAYLOAD_LENGTH, f"{spec.name}: payload too short")
        raw = payload[position : position + width]
        position += width
        if spec.type == schema.FIELD_FIXED:
            if spec.minimum and raw == bytes(width):
                raise TxDecodeError(Verdict.FIELD_ZERO, spec.name)
            return raw, position
        value = int.from_bytes(raw, "big")
        if spec.type == schema.FIELD_ENUM:
            if value > 63 or not (spec.allowed >> value) & 1:
                raise TxDecodeError(Verdict.BAD_ENUM, f"{spec.name}={value}")
            return value, position
        if not spec.minimum <= value <= spec.maximum:
            raise TxDecodeError(Verdict.FIELD_RANGE, f"{spec.name}={value}")
        return value, position
    # Variable length: prefix, range check, availability, content.
    prefix = spec.arg
    if position + prefix > end:
        raise TxDecodeError(Verdict.PAYLOAD_LENGTH, f"{spec.name}: payload too short")
    length = int.from_bytes(payload[position : position + prefix], "big")
    position += prefix
    if not spec.minimum <= length <= spec.maximum:
        raise TxDecodeError(Verdict.FIELD_LENGTH, f"{spec.name}: length {length}")
    if position + length > end:
        raise TxDecodeError(Verdict.PAYLOAD_LENGTH, f"{spec.name}: payload too short")
    raw = payload[position : position + length]
    position += length
    if spec.type == schema.FIELD_TEXT:
        try:
            return raw.decode("utf-8", "strict"), position
        except UnicodeDecodeError:
            raise TxDecodeError(Verdict.BAD_TEXT, spec.name) from None
    if spec.type == schema.FIELD_IDENT:
        if any(byte not in schema.IDENT_ALPHABET for byte in raw):
            raise TxDecodeError(Verdict.BAD_IDENT, spec.name)
        return raw.decode("ascii"), position
    return raw, position


def decode_payload(kind: int, payload: bytes) -> dict[str, Any]:
    """Decode and validate a payload of `kind`; raise TxDecodeError on the first violation."""
    try:
        fields = schema.PAYLOAD_SCHEMAS[schema.TxKind(kind)]
    except ValueError:
        raise TxDecodeError(Verdict.UNKNOWN_KIND, f"kind={kind}") from None
    values: dict[str, Any] = {}
    position = 0
    for spec in fields:
        values[spec.name], position = _read_field(spec, payload, position)
    if position != len(payload):
        raise TxDecodeError(
            Verdict.PAYLOAD_LENGTH, f"{len(payload) - position} bytes after the last field"
        )
    return values


def decode_transaction(raw: bytes, chain_id: bytes, max_tx_bytes: int) -> DecodedTransaction:
    """Decode one transaction and apply every stateless check (not the signature)."""
    if not isinstance(raw, bytes):
        raise TypeError("each transaction must be bytes")
    size = len(raw)
    if size > max_tx_bytes:
        raise TxDecodeError(Verdict.TOO_LARGE, f"{size} > {max_tx_bytes}")
    if size < 1:
        raise TxDecodeError(Verdict.TRUNCATED, "empty")
    if raw[0] != schema.TX_VERSION:
        raise TxDecodeError(Verdict.BAD_VERSION, f"version={raw[0]}")
    if size < 2 or size < 2 + raw[1]:
        raise TxDecodeError(Verdict.TRUNCATED, "inside chain id")
    chain_end = 2 + raw[1]
    if raw[2:chain_end] != chain_id:
        raise TxDecodeError(Verdict.WRONG_CHAIN)
    if size < chain_end + 1:
        raise TxDecodeError(Verdict.TRUNCATED, "before kind")
    kind = raw[chain_end]
    if kind not in schema.PAYLOAD_SCHEMAS:
        raise TxDecodeError(Verdict.UNKNOWN_KIND, f"kind={kind}")
    sender_start = chain_end + 1
    payload_start = sender_start + 32 + 8 + 2
    if size < payload_start:
        raise TxDecodeError(Verdict.TRUNCATED, "inside sender, nonce or payload length")
    sender = raw[sender_start : sender_start + 32]
    if sender == _ZERO_ID:
        raise TxDecodeError(Verdict.ZERO_SENDER)
    nonce = int.from_bytes(raw[sender_start + 32 : sender_start + 40], "big")
    payload_length = int.from_bytes(raw[sender_start + 40 : payload_start], "big")
    expected = payload_start + payload_length + schema.SIGNATURE_BYTES
    if size < expected:
        raise TxDecodeError(Verdict.TRUNCATED, f"{size} < {expected}")
    if size > expected:
        raise TxDecodeError(Verdict.TRAILING_BYTES, f"{size - expected} extra bytes")
    payload = raw[payload_start : payload_start + payload_length]
    fields = decode_payload(kind, payload)
    return DecodedTransaction(
        version=raw[0],
        chain_id=chain_id,
        kind=schema.TxKind(kind),
        sender=sender,
        nonce=nonce,
        payload=payload,
        signature=raw[expected - schema.SIGNATURE_BYTES :],
        fields=fields,
    )


def _encode_field(spec: schema.FieldSpec, value: Any) -> bytes:
    if spec.type == schema.FIELD_FIXED:
        if not isinstance(value, bytes) or len(value) != spec.arg:
            raise TypeError(f"{spec.name}: expected {spec.arg} bytes")
        return value
    if spec.type in (schema.FIELD_UINT, schema.FIELD_ENUM):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{spec.name}: expected an int")
        if not 0 <= value < 1 << (8 * spec.arg):
            raise TxDecodeError(Verdict.FIELD_RANGE, f"{spec.name}={value}")
        return int(value).to_bytes(spec.arg, "big")
    if spec.type in (schema.FIELD_TEXT, schema.FIELD_IDENT):
        if not isinstance(value, str):
            raise TypeError(f"{spec.name}: expected str")
        raw = value.encode("utf-8", "surrogatepass")
    else:
        if not isinstance(value, bytes):
            raise TypeError(f"{spec.name}: expected bytes")
        raw = value
    if len(raw) >= 1 << (8 * spec.arg):
        raise TxDecodeError(Verdict.FIELD_LENGTH, f"{spec.name}: length {len(raw)}")
    return len(raw).to_bytes(spec.arg, "big") + raw


def encode_payload(kind: int, values: Mapping[str, Any]) -> bytes:
    """Encode `values` for `kind` and check the result decodes under every rule.

    Raises TypeError for wrong Python types or missing/unknown fields, TxDecodeError for values
    that the schema forbids (so an invalid payload can never be produced by this function).
    """
    fields = schema.PAYLOAD_SCHEMAS[schema.TxKind(kind)]
    names = {spec.name for spec in fields}
    if set(values) != names:
        raise TypeError(
            f"{schema.TxKind(kind).name}: fields {sorted(names)} required, got {sorted(values)}"
        )
    payload = b"".join(_encode_field(spec, values[spec.name]) for spec in fields)
    if len(payload) > schema.PAYLOAD_MAX_BYTES:
        raise TxDecodeError(Verdict.PAYLOAD_LENGTH, f"{len(payload)} bytes")
    decode_payload(kind, payload)
    return payload
