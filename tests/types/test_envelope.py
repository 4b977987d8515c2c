"""`emrchain.types.envelope` reads each field where the codec decodes it, for every chain id
length and every kind, and its offsets are those of `docs/spec/encoding.md` §4."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain import schema
from emrchain.crypto.keys import Ed25519Signer
from emrchain.schema import codec
from emrchain.types import envelope
from emrchain.types.transaction import Transaction, TxKind

SIGNER = Ed25519Signer(hashlib.sha256(b"envelope-test").digest())
FIELDS = {
    TxKind.REVOKE_ACCESS: {"grant_id": b"\x11" * 32},
    TxKind.ERASE_RECORD: {"record_id": b"\x22" * 32, "reason": 1},
    TxKind.ANCHOR_RECORD: {
        "record_id": b"\x33" * 32,
        "patient_id": b"\x44" * 32,
        "ciphertext_sha256": b"\x55" * 32,
        "cid": b"\x01\x70" + b"c" * 34,
        "record_type": 2,
        "size_bytes": 4096,
        "patient_wrap_sha256": b"\x66" * 32,
        "custody": b"\x01\x01a" + b"\x77" * 32,
    },
}


def test_the_offsets_are_the_specified_ones() -> None:
    """§4: version u8 | chain id (u8 length + bytes) | kind u8 | sender 32 | nonce u64 |
    payload (u16 length + bytes) | signature 64; offsets with an empty chain id."""
    assert (
        envelope.CHAIN_ID_LENGTH_OFFSET,
        envelope.CHAIN_ID_OFFSET,
        envelope.KIND_OFFSET,
        envelope.SENDER_OFFSET,
        envelope.NONCE_OFFSET,
        schema.ENVELOPE_PAYLOAD_LENGTH_OFFSET,
        envelope.PAYLOAD_OFFSET,
    ) == (1, 2, 2, 3, 35, 43, 45)
    assert schema.ENVELOPE_FIXED_BYTES == 109


@settings(max_examples=60, deadline=None)
@given(
    chain_id=st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=50),
    kind=st.sampled_from(sorted(FIELDS)),
    nonce=st.integers(0, schema.U64_MAX),
)
def test_each_reader_returns_the_decoded_field(chain_id: str, kind: TxKind, nonce: int) -> None:
    raw = Transaction.create(SIGNER, chain_id.encode(), kind, nonce, FIELDS[kind]).encode()
    decoded = codec.decode_transaction(raw, chain_id.encode(), schema.TX_MAX_BYTES_LIMIT)
    assert envelope.chain_id(raw) == decoded.chain_id
    assert envelope.kind(raw) == decoded.kind
    assert envelope.sender(raw) == decoded.sender == SIGNER.public_key
    assert envelope.nonce(raw) == decoded.nonce
    assert envelope.payload(raw) == decoded.payload
    assert raw[envelope.payload_offset(raw) :][: len(decoded.payload)] == decoded.payload
    assert envelope.signature(raw) == decoded.signature
    assert envelope.signed_bytes(raw) + envelope.signature(raw) == raw


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_the_inlined_offsets_read_what_the_readers_read(kind: TxKind) -> None:
    """Hot loops read with the offsets directly (`raw[SENDER_OFFSET + raw[1] : ...]`)."""
    raw = Transaction.create(SIGNER, b"emrchain-test", kind, 7, FIELDS[kind]).encode()
    length = raw[envelope.CHAIN_ID_LENGTH_OFFSET]
    assert raw[envelope.KIND_OFFSET + length] == envelope.kind(raw)
    sender = raw[envelope.SENDER_OFFSET + length : envelope.SENDER_END + length]
    assert sender == envelope.sender(raw)
    nonce = raw[envelope.NONCE_OFFSET + length : envelope.NONCE_END + length]
    assert int.from_bytes(nonce, "big") == envelope.nonce(raw) == 7
