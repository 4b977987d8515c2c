"""Build signed transactions for tests and benchmarks, straight from `schema.PAYLOAD_SCHEMAS`.

This encoder is deliberately independent of `schema/codec.py` (the code under test): it walks
the schema itself and enforces nothing beyond the byte layout, so tests can also encode values
that break a rule (out-of-range integers, unknown enum values, raw non-UTF-8 text bytes).

Envelope (big-endian): version u8 | chain_id_len u8 | chain_id | kind u8 | sender 32 |
nonce u64 | payload_len u16 | payload | signature 64 (Ed25519 over every byte before it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from hypothesis import strategies as st
from nacl.signing import SigningKey

from emrchain import schema

CHAIN_ID = b"emrchain-test"
IDENT_CHARS = bytes(sorted(schema.IDENT_ALPHABET)).decode("ascii")
VAR_TYPES = (schema.FIELD_BYTES, schema.FIELD_TEXT, schema.FIELD_IDENT)
ALL_KINDS = tuple(sorted(schema.PAYLOAD_SCHEMAS))


@cache
def signing_key(seed: int = 1) -> SigningKey:
    """A deterministic key (signing keys are cached: tests draw from a handful of seeds)."""
    return SigningKey(hashlib.sha256(b"emrchain-test-key-%d" % seed).digest())


def encode_field(spec: schema.FieldSpec, value: Any) -> bytes:
    """Encode one field value (no rule checks beyond what the byte layout needs)."""
    if spec.type == schema.FIELD_FIXED:
        assert len(value) == spec.arg, spec
        return bytes(value)
    if spec.type in (schema.FIELD_UINT, schema.FIELD_ENUM):
        return int(value).to_bytes(spec.arg, "big")
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return len(raw).to_bytes(spec.arg, "big") + raw


def encode_payload(kind: int, values: Mapping[str, Any]) -> bytes:
    fields = schema.PAYLOAD_SCHEMAS[schema.TxKind(kind)]
    assert set(values) == {spec.name for spec in fields}, (kind, sorted(values))
    return b"".join(encode_field(spec, values[spec.name]) for spec in fields)


def envelope(
    kind: int,
    payload: bytes,
    *,
    chain_id: bytes = CHAIN_ID,
    seed: int = 1,
    nonce: int = 0,
    version: int = schema.TX_VERSION,
    sender: bytes | None = None,
    payload_len: int | None = None,
) -> bytes:
    """Wrap `payload` in a signed envelope; `sender`/`payload_len` override the real values."""
    key = signing_key(seed)
    sender = bytes(key.verify_key) if sender is None else sender
    length = len(payload) if payload_len is None else payload_len
    unsigned = (
        bytes([version, len(chain_id)])
        + chain_id
        + bytes([kind])
        + sender
        + nonce.to_bytes(8, "big")
        + length.to_bytes(2, "big")
        + payload
    )
    return unsigned + key.sign(unsigned).signature


def build_tx(kind: int, values: Mapping[str, Any] | None = None, **envelope_args: Any) -> bytes:
    """A signed transaction of `kind`; fields default to `default_values(kind)`."""
    merged = dict(default_values(kind))
    merged.update(values or {})
    return envelope(kind, encode_payload(kind, merged), **envelope_args)


def default_value(spec: schema.FieldSpec) -> Any:
    """The simplest value that satisfies `spec`."""
    if spec.type == schema.FIELD_FIXED:
        return bytes([0x11]) * spec.arg
    if spec.type == schema.FIELD_UINT:
        return max(spec.minimum, 1) if spec.maximum >= 1 else 0
    if spec.type == schema.FIELD_ENUM:
        return min(v for v in range(64) if spec.allowed >> v & 1)
    if spec.type == schema.FIELD_BYTES:
        return b"\x5a" * max(spec.minimum, 1)
    if spec.type == schema.FIELD_TEXT:
        return "t" * max(spec.minimum, 1)
    return "a" * max(spec.minimum, 1)


def default_values(kind: int) -> dict[str, Any]:
    return {spec.name: default_value(spec) for spec in schema.PAYLOAD_SCHEMAS[schema.TxKind(kind)]}


def payload_offset(tx: bytes) -> int:
    """Where the payload starts in a well-formed envelope."""
    return 2 + tx[1] + 1 + schema.PUBLIC_KEY_BYTES + 8 + 2


def field_offsets(kind: int, payload: bytes) -> list[tuple[schema.FieldSpec, int]]:
    """(spec, offset in the payload) of each field of a well-formed payload."""
    offsets = []
    position = 0
    for spec in schema.PAYLOAD_SCHEMAS[schema.TxKind(kind)]:
        offsets.append((spec, position))
        if spec.type in VAR_TYPES:
            length = int.from_bytes(payload[position : position + spec.arg], "big")
            position += spec.arg + length
        else:
            position += spec.arg
    return offsets


def make_anchor_tx(
    nonce: int = 0, *, chain_id: bytes = CHAIN_ID, seed: int = 1, size: int = 250
) -> bytes:
    """A valid ANCHOR_RECORD transaction of `size` bytes (the cid length absorbs the rest)."""
    custody = b"\x01\x0ahospital-0" + hashlib.sha256(b"wrap").digest()
    fixed = schema.ENVELOPE_FIXED_BYTES + len(chain_id) + 4 * 32 + 1 + 1 + 8 + 2 + len(custody)
    cid_len = min(max(size - fixed, 2), 64)
    digest = hashlib.sha256(nonce.to_bytes(8, "big")).digest()
    values = {
        "record_id": digest,
        "patient_id": hashlib.sha256(digest).digest(),
        "ciphertext_sha256": hashlib.sha256(digest + b"ct").digest(),
        "cid": (b"bafy" + digest.hex().encode())[:cid_len],
        "record_type": int(schema.RecordType.LAB_RESULT),
        "size_bytes": 4096 + nonce,
        "patient_wrap_sha256": hashlib.sha256(digest + b"patient-wrap").digest(),
        "custody": custody,
    }
    return build_tx(schema.TxKind.ANCHOR_RECORD, values, chain_id=chain_id, seed=seed, nonce=nonce)


# --- Hypothesis strategies ----------------------------------------------------------------


@st.composite
def utf8_text(draw: st.DrawFn, min_bytes: int, max_bytes: int) -> str:
    """Any Unicode text (no surrogates) whose UTF-8 form is min_bytes..max_bytes long."""
    chars = draw(st.lists(st.characters(codec="utf-8"), max_size=max_bytes))
    text, size = "", 0
    for char in chars:
        width = len(char.encode("utf-8"))
        if size + width > max_bytes:
            break
        text, size = text + char, size + width
    return text + "a" * max(min_bytes - size, 0)


def field_value(spec: schema.FieldSpec) -> st.SearchStrategy[Any]:
    """Values of `spec` anywhere inside the schema bounds."""
    if spec.type == schema.FIELD_FIXED:
        raw = st.binary(min_size=spec.arg, max_size=spec.arg)
        return raw.filter(any) if spec.minimum else raw
    if spec.type == schema.FIELD_UINT:
        return st.integers(spec.minimum, spec.maximum)
    if spec.type == schema.FIELD_ENUM:
        return st.sampled_from([v for v in range(64) if spec.allowed >> v & 1])
    if spec.type == schema.FIELD_BYTES:
        return st.binary(min_size=spec.minimum, max_size=spec.maximum)
    if spec.type == schema.FIELD_TEXT:
        return utf8_text(spec.minimum, spec.maximum)
    return st.text(IDENT_CHARS, min_size=spec.minimum, max_size=spec.maximum)


def field_values(kind: int) -> st.SearchStrategy[dict[str, Any]]:
    fields = schema.PAYLOAD_SCHEMAS[schema.TxKind(kind)]
    return st.fixed_dictionaries({spec.name: field_value(spec) for spec in fields})


@st.composite
def valid_transactions(
    draw: st.DrawFn, kinds: Sequence[int] = ALL_KINDS, chain_id: bytes = CHAIN_ID
) -> bytes:
    """A valid, signed transaction of any kind with random fields inside the schema bounds."""
    kind = draw(st.sampled_from(kinds))
    return build_tx(
        kind,
        draw(field_values(kind)),
        chain_id=chain_id,
        seed=draw(st.integers(1, 4)),
        nonce=draw(st.integers(0, schema.U64_MAX)),
    )
