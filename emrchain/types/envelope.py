"""The transaction envelope's bytes: its fields read without decoding, and the unsigned
envelope written (`Transaction` and the transaction id both build it here). Outside the codec
(`schema/codec.py`) and the core's twins, this is the one place that knows where the fields are.

Layout (`docs/spec/encoding.md` §4): version u8 | chain id (u8 length + bytes) | kind u8 |
sender 32 | nonce u64 | payload (u16 length + bytes) | signature 64. The offsets are declared in
`emrchain.schema` (`ENVELOPE_*_OFFSET`: where a field starts when the chain id is empty; add
the chain id length). These readers do not validate: they are for transactions whose envelope
is complete, such as those the core's batch check accepted and those of a block. A loop too hot
for a call per transaction reads with the offsets below directly, as
``raw[SENDER_OFFSET + raw[CHAIN_ID_LENGTH_OFFSET] : ...]``.
"""

from __future__ import annotations

from emrchain import schema
from emrchain.types.codec import Writer

CHAIN_ID_LENGTH_OFFSET = schema.ENVELOPE_CHAIN_ID_LENGTH_OFFSET
CHAIN_ID_OFFSET = schema.ENVELOPE_CHAIN_ID_OFFSET
KIND_OFFSET = schema.ENVELOPE_KIND_OFFSET
SENDER_OFFSET = schema.ENVELOPE_SENDER_OFFSET
SENDER_END = SENDER_OFFSET + schema.PUBLIC_KEY_BYTES
NONCE_OFFSET = schema.ENVELOPE_NONCE_OFFSET
NONCE_END = NONCE_OFFSET + schema.NONCE_BYTES
PAYLOAD_OFFSET = schema.ENVELOPE_PAYLOAD_OFFSET
SIGNATURE_BYTES = schema.SIGNATURE_BYTES


def encode_unsigned(chain_id: bytes, kind: int, sender: bytes, nonce: int, payload: bytes) -> bytes:
    """The envelope without its signature: what the sender signs. EncodeError for a field that
    does not fit (a sender of another length, a chain id or payload too long for its prefix)."""
    return (
        Writer()
        .u8(schema.TX_VERSION)
        .var_bytes(chain_id, 1)
        .u8(int(kind))
        .fixed(sender, schema.PUBLIC_KEY_BYTES)
        .u64(nonce)
        .var_bytes(payload, schema.PAYLOAD_LENGTH_BYTES)
        .bytes()
    )


def chain_id(raw: bytes) -> bytes:
    length = raw[CHAIN_ID_LENGTH_OFFSET]
    return raw[CHAIN_ID_OFFSET : CHAIN_ID_OFFSET + length]


def kind(raw: bytes) -> int:
    """The kind byte (a `schema.TxKind` value)."""
    return raw[KIND_OFFSET + raw[CHAIN_ID_LENGTH_OFFSET]]


def sender(raw: bytes) -> bytes:
    """The sender's 32-byte public key."""
    chain_id_length = raw[CHAIN_ID_LENGTH_OFFSET]
    return raw[SENDER_OFFSET + chain_id_length : SENDER_END + chain_id_length]


def nonce(raw: bytes) -> int:
    chain_id_length = raw[CHAIN_ID_LENGTH_OFFSET]
    return int.from_bytes(raw[NONCE_OFFSET + chain_id_length : NONCE_END + chain_id_length], "big")


def payload_offset(raw: bytes) -> int:
    """Where the payload starts (its fields are at fixed offsets from here up to the first
    variable-length one: `schema.PAYLOAD_SCHEMAS`)."""
    return PAYLOAD_OFFSET + raw[CHAIN_ID_LENGTH_OFFSET]


def payload(raw: bytes) -> bytes:
    return raw[PAYLOAD_OFFSET + raw[CHAIN_ID_LENGTH_OFFSET] : -SIGNATURE_BYTES]


def signed_bytes(raw: bytes) -> bytes:
    """What the signature covers: every byte before it."""
    return raw[:-SIGNATURE_BYTES]


def signature(raw: bytes) -> bytes:
    return raw[-SIGNATURE_BYTES:]
