"""The domain's vocabulary and the transaction wire format: the single source of truth.

Transaction kinds, roles, record types and the other enums; envelope constants; the payload
field tables. `codec.py` (the normative codec) and the compiled batch checker
(`emrchain/_core/_txcheck.pyx`) both walk these tables, so a payload rule is written exactly
once; `verdicts.py` numbers the stateless verdicts. The byte layout is specified in
`docs/spec/encoding.md`. This package imports nothing else of emrchain: every layer may use it.

A field is a `FieldSpec` tuple; its `type` selects how `arg`, `minimum`, `maximum` and
`allowed` are read (see the FIELD_* constants).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

TX_VERSION = 1
"""The only envelope version this node accepts; it is also the transaction's domain tag byte."""

CHAIN_ID_MAX_BYTES = 50
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
PAYLOAD_MAX_BYTES = 0xFFFF
"""The payload length is a u16; a node's `max_tx_bytes` usually caps it far lower."""

NONCE_BYTES = 8
PAYLOAD_LENGTH_BYTES = 2

# The envelope (`docs/spec/encoding.md` §4): version u8 | chain id (u8 length + bytes) | kind u8 |
# sender 32 | nonce u64 | payload (u16 length + bytes) | signature 64. The chain id is the one
# variable field before the payload, so each offset below is where a field starts in a
# transaction with an empty chain id: add the chain id length (the byte at
# ENVELOPE_CHAIN_ID_LENGTH_OFFSET).
# `emrchain.types.envelope` reads the fields with these; the core's twins use them directly.
ENVELOPE_CHAIN_ID_LENGTH_OFFSET = 1
ENVELOPE_CHAIN_ID_OFFSET = ENVELOPE_CHAIN_ID_LENGTH_OFFSET + 1
ENVELOPE_KIND_OFFSET = ENVELOPE_CHAIN_ID_OFFSET
ENVELOPE_SENDER_OFFSET = ENVELOPE_KIND_OFFSET + 1
ENVELOPE_NONCE_OFFSET = ENVELOPE_SENDER_OFFSET + PUBLIC_KEY_BYTES
ENVELOPE_PAYLOAD_LENGTH_OFFSET = ENVELOPE_NONCE_OFFSET + NONCE_BYTES
ENVELOPE_PAYLOAD_OFFSET = ENVELOPE_PAYLOAD_LENGTH_OFFSET + PAYLOAD_LENGTH_BYTES

ENVELOPE_FIXED_BYTES = ENVELOPE_PAYLOAD_OFFSET + SIGNATURE_BYTES
"""version + chain id length + kind + sender + nonce + payload length + signature (no chain id,
no payload): a transaction is exactly this many bytes plus len(chain_id) plus len(payload)."""

TX_MAX_BYTES_LIMIT = ENVELOPE_FIXED_BYTES + CHAIN_ID_MAX_BYTES + PAYLOAD_MAX_BYTES
"""No transaction can be longer than this; `max_tx_bytes` arguments above it are refused."""


class TxKind(IntEnum):
    """Transaction kinds (the envelope's `kind` byte)."""

    REGISTER_ORGANIZATION = 1
    REGISTER_MEMBER = 2
    REVOKE_MEMBER = 3
    ROTATE_KEY = 4
    ANCHOR_RECORD = 5
    GRANT_ACCESS = 6
    REVOKE_ACCESS = 7
    ACCESS_EVENT = 8
    BREAK_GLASS = 9
    ERASE_RECORD = 10
    VALIDATOR_UPDATE = 11
    REGISTER_NODE = 12
    REMOVE_NODE = 13
    ERASURE_RECEIPT = 14
    AMEND_RECORD = 16
    CLOSE_REVIEW = 17
    # Research studies under differential privacy (`docs/spec/analytics.md`).
    PROPOSE_STUDY = 18
    APPROVE_STUDY = 19
    STUDY_QUERY = 20
    STUDY_RESULT = 21
    CLOSE_STUDY = 22
    RESEARCH_CONSENT = 23


class Role(IntEnum):
    ADMIN = 1
    CLINICIAN = 2
    PATIENT = 3
    AUDITOR = 4


class RecordType(IntEnum):
    CLINICAL_NOTE = 1
    LAB_RESULT = 2
    IMAGING = 3
    PRESCRIPTION = 4
    DISCHARGE_SUMMARY = 5
    REFERRAL = 6
    IMMUNIZATION = 7
    OTHER = 8


class GrantScope(IntEnum):
    RECORD = 1
    PATIENT = 2


class GranteeKind(IntEnum):
    MEMBER = 1
    ORGANIZATION = 2


class AccessAction(IntEnum):
    READ = 1
    EXPORT = 2


class ErasureReason(IntEnum):
    PATIENT_REQUEST = 1
    LEGAL_ORDER = 2
    ENTERED_IN_ERROR = 3


class AmendmentReason(IntEnum):
    """Why AMEND_RECORD supersedes an earlier record (`docs/spec/records.md` §11)."""

    CORRECTION = 1
    ENTERED_IN_ERROR = 2
    ADDENDUM = 3


class ReviewOutcome(IntEnum):
    """An auditor's verdict when closing a break-glass or re-enrolment review."""

    JUSTIFIED = 1
    UNJUSTIFIED = 2
    NEEDS_FOLLOW_UP = 3


class QueryType(IntEnum):
    """A study query's statistic (`docs/spec/analytics.md` §2); a study allows a set of them
    (bit v of its `query_types` for QueryType v)."""

    COUNT = 1
    SUM = 2
    MEAN = 3
    HISTOGRAM = 4


class ResearchChoice(IntEnum):
    """A patient's research consent: records are used only while the patient is opted in."""

    OPT_IN = 1
    OPT_OUT = 2


# Field types. The meaning of (arg, minimum, maximum, allowed) per type:
FIELD_FIXED = 1
"""`arg` raw bytes. `minimum` = 1 means the value must not be all zero bytes."""
FIELD_UINT = 2
"""Big-endian unsigned integer of `arg` bytes (1, 2, 4 or 8), `minimum` <= value <= `maximum`."""
FIELD_BYTES = 3
"""Length prefix of `arg` bytes (1 or 2, big-endian), then that many raw bytes;
`minimum` <= length <= `maximum`."""
FIELD_TEXT = 4
"""Like FIELD_BYTES, and the bytes must be strict UTF-8 (RFC 3629)."""
FIELD_IDENT = 5
"""Like FIELD_BYTES with a 1-byte prefix (`arg` = 1); every byte in [a-z0-9._-]."""
FIELD_ENUM = 6
"""One byte whose value v has bit v set in `allowed` (values 0..63)."""

FIELD_TYPE_NAMES = {
    FIELD_FIXED: "fixed",
    FIELD_UINT: "uint",
    FIELD_BYTES: "bytes",
    FIELD_TEXT: "text",
    FIELD_IDENT: "ident",
    FIELD_ENUM: "enum",
}

IDENT_ALPHABET = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789._-")

U64_MAX = (1 << 64) - 1
MAX_VALIDATOR_POWER = 1 << 50
"""Per-validator cap; with at most a few thousand validators the total stays below 2^62."""
MAX_RECORD_BYTES = 1 << 40
NODE_ADDRESS_MAX_BYTES = 128
"""An advertised P2P address `host:port` (a DNS name is at most 253 bytes; 128 is plenty for
the names and IP literals a consortium uses, and bounds the state entries that hold it)."""
BREAK_GLASS_MAX_DURATION_MS = 24 * 60 * 60 * 1000
MAX_CUSTODIANS = 16
"""Most organisations in one record's custody set (`docs/spec/records.md` §9)."""
CUSTODY_ENTRY_MAX_BYTES = 1 + 64 + 32
"""One custody entry: organisation id (u8 length + 1..64 bytes) | SHA-256 of its wrap."""
CUSTODY_MIN_BYTES = 1 + 1 + 1 + 32
CUSTODY_MAX_BYTES = 1 + MAX_CUSTODIANS * CUSTODY_ENTRY_MAX_BYTES
"""ANCHOR_RECORD `custody`: count u8 (1..16), then that many entries, in set order."""
AMENDMENT_NOTE_MAX_BYTES = 256
"""AMEND_RECORD's optional free-text note (UTF-8): a short pointer, not clinical content (the
content is in the new record's ciphertext)."""
REVIEW_NOTE_MAX_BYTES = 512
"""CLOSE_REVIEW's note (UTF-8), the auditor's short justification of the outcome."""
MAX_STUDY_PARTICIPANTS = 16
"""Most organisations taking part in one study (`docs/spec/analytics.md` §1)."""
PARTICIPANT_ENTRY_MAX_BYTES = 1 + 64
PARTICIPANTS_MIN_BYTES = 1 + 1 + 1
PARTICIPANTS_MAX_BYTES = 1 + MAX_STUDY_PARTICIPANTS * PARTICIPANT_ENTRY_MAX_BYTES
"""PROPOSE_STUDY `participants`: count u8 (1..16), then that many organisation ids (u8 length +
1..64 bytes), strictly ascending, no repeats."""
STUDY_PURPOSE_MAX_BYTES = 1024
EPSILON_UNITS_PER_ONE = 1_000_000
"""Privacy budgets are integers: epsilon in millionths (`docs/spec/analytics.md` §3)."""
DELTA_UNITS_PER_ONE = 1_000_000_000_000
"""Delta in units of 10^-12."""
MAX_STUDY_EPSILON = 100 * EPSILON_UNITS_PER_ONE
MAX_STUDY_DELTA = DELTA_UNITS_PER_ONE // 100
"""A study's total delta is below 0.01 (a delta near 1 would be no privacy at all)."""
MEASURE_CODE_MAX_BYTES = 64
"""A query's measure: the FHIR Observation code (e.g. a LOINC code) its values come from."""
VALUE_BOUND_MAX = 1 << 50
"""Clamping bounds are fixed point in thousandths, unsigned (values below zero clamp to 0)."""
MAX_HISTOGRAM_BINS = 64


class FieldSpec(NamedTuple):
    name: str
    type: int
    arg: int
    minimum: int = 0
    maximum: int = 0
    allowed: int = 0


def _mask(values: type[IntEnum]) -> int:
    mask = 0
    for member in values:
        mask |= 1 << int(member)
    return mask


def _key(name: str) -> FieldSpec:
    """A 32-byte key or hash that must not be all zeros."""
    return FieldSpec(name, FIELD_FIXED, 32, 1)


def _optional_key(name: str) -> FieldSpec:
    """A 32-byte key or hash where all zeros means "none"."""
    return FieldSpec(name, FIELD_FIXED, 32, 0)


def _ident(name: str, minimum: int = 1, maximum: int = 64) -> FieldSpec:
    return FieldSpec(name, FIELD_IDENT, 1, minimum, maximum)


PAYLOAD_SCHEMAS_ANCHOR: tuple[FieldSpec, ...] = (
    _key("record_id"),
    _key("patient_id"),
    _key("ciphertext_sha256"),
    FieldSpec("cid", FIELD_BYTES, 1, 2, 64),
    FieldSpec("record_type", FIELD_ENUM, 1, allowed=_mask(RecordType)),
    FieldSpec("size_bytes", FIELD_UINT, 8, 1, MAX_RECORD_BYTES),
    _key("patient_wrap_sha256"),
    FieldSpec("custody", FIELD_BYTES, 2, CUSTODY_MIN_BYTES, CUSTODY_MAX_BYTES),
)
"""The fields of a new record: ANCHOR_RECORD's payload, and the head of AMEND_RECORD's."""

PAYLOAD_SCHEMAS: dict[TxKind, tuple[FieldSpec, ...]] = {
    TxKind.REGISTER_ORGANIZATION: (
        _ident("organization_id"),
        FieldSpec("name", FIELD_TEXT, 1, 1, 128),
        _key("encryption_key"),
    ),
    TxKind.REGISTER_MEMBER: (
        _ident("organization_id"),
        _key("member_key"),
        _key("encryption_key"),
        FieldSpec("role", FIELD_ENUM, 1, allowed=_mask(Role)),
        _optional_key("patient_id"),
    ),
    TxKind.REVOKE_MEMBER: (
        _key("member_key"),
        FieldSpec("reason", FIELD_TEXT, 1, 0, 128),
    ),
    TxKind.ROTATE_KEY: (
        _key("new_member_key"),
        _key("new_encryption_key"),
        FieldSpec("proof", FIELD_FIXED, 64, 1),
    ),
    TxKind.ANCHOR_RECORD: PAYLOAD_SCHEMAS_ANCHOR,
    TxKind.GRANT_ACCESS: (
        FieldSpec("scope", FIELD_ENUM, 1, allowed=_mask(GrantScope)),
        _key("target"),
        FieldSpec("grantee_kind", FIELD_ENUM, 1, allowed=_mask(GranteeKind)),
        _optional_key("grantee_member"),
        _ident("grantee_organization", 0, 64),
        FieldSpec("expires_at_ms", FIELD_UINT, 8, 0, U64_MAX),
        _optional_key("wrapped_key_sha256"),
    ),
    TxKind.REVOKE_ACCESS: (_key("grant_id"),),
    TxKind.ACCESS_EVENT: (
        _key("record_id"),
        FieldSpec("action", FIELD_ENUM, 1, allowed=_mask(AccessAction)),
        _optional_key("grant_id"),
    ),
    TxKind.BREAK_GLASS: (
        _key("patient_id"),
        _optional_key("record_id"),
        FieldSpec("reason", FIELD_TEXT, 2, 8, 512),
        FieldSpec("duration_ms", FIELD_UINT, 4, 1, BREAK_GLASS_MAX_DURATION_MS),
    ),
    TxKind.ERASE_RECORD: (
        _key("record_id"),
        FieldSpec("reason", FIELD_ENUM, 1, allowed=_mask(ErasureReason)),
    ),
    TxKind.VALIDATOR_UPDATE: (
        _key("validator_key"),
        FieldSpec("power", FIELD_UINT, 8, 0, MAX_VALIDATOR_POWER),
        FieldSpec("epoch", FIELD_UINT, 8, 1, U64_MAX),
        # The validator's P2P node key and advertised address (`docs/spec/state.md` §4.2):
        # all zeros and empty for a removal (power 0).
        _optional_key("node_key"),
        FieldSpec("address", FIELD_TEXT, 1, 0, NODE_ADDRESS_MAX_BYTES),
    ),
    TxKind.REGISTER_NODE: (
        _key("node_key"),
        FieldSpec("address", FIELD_TEXT, 1, 0, NODE_ADDRESS_MAX_BYTES),
        # The node key's signature over chain, organisation, key and address
        # (`docs/spec/encoding.md` §2.3): proof that the registering admin holds the node.
        FieldSpec("proof", FIELD_FIXED, 64, 1),
    ),
    TxKind.REMOVE_NODE: (_key("node_key"),),
    TxKind.ERASURE_RECEIPT: (_key("record_id"),),
    # A new record exactly as ANCHOR_RECORD anchors it, then the link to the record it
    # supersedes (`docs/spec/records.md` §11).
    TxKind.AMEND_RECORD: (
        *PAYLOAD_SCHEMAS_ANCHOR,
        _key("supersedes"),
        FieldSpec("reason", FIELD_ENUM, 1, allowed=_mask(AmendmentReason)),
        FieldSpec("note", FIELD_TEXT, 1, 0, AMENDMENT_NOTE_MAX_BYTES),
    ),
    # `review_id` is the id of the transaction that opened the review (a BREAK_GLASS, or the
    # REGISTER_MEMBER of a re-enrolment).
    TxKind.CLOSE_REVIEW: (
        _key("review_id"),
        FieldSpec("outcome", FIELD_ENUM, 1, allowed=_mask(ReviewOutcome)),
        FieldSpec("note", FIELD_TEXT, 2, 0, REVIEW_NOTE_MAX_BYTES),
    ),
    # Studies (`docs/spec/analytics.md`). `query_types` is a bit set over QueryType values;
    # epsilon in millionths, delta in 10^-12 units (integers: execution has no floats).
    TxKind.PROPOSE_STUDY: (
        _key("study_id"),
        FieldSpec("purpose", FIELD_TEXT, 2, 1, STUDY_PURPOSE_MAX_BYTES),
        FieldSpec("query_types", FIELD_UINT, 1, 1 << 1, _mask(QueryType)),
        FieldSpec("epsilon_total", FIELD_UINT, 8, 1, MAX_STUDY_EPSILON),
        FieldSpec("delta_total", FIELD_UINT, 8, 0, MAX_STUDY_DELTA),
        FieldSpec("participants", FIELD_BYTES, 2, PARTICIPANTS_MIN_BYTES, PARTICIPANTS_MAX_BYTES),
        FieldSpec("expires_at_ms", FIELD_UINT, 8, 1, U64_MAX),
    ),
    TxKind.APPROVE_STUDY: (_key("study_id"),),
    TxKind.STUDY_QUERY: (
        _key("study_id"),
        _key("query_id"),
        FieldSpec("query_type", FIELD_ENUM, 1, allowed=_mask(QueryType)),
        FieldSpec("measure", FIELD_TEXT, 1, 1, MEASURE_CODE_MAX_BYTES),
        FieldSpec("lower_milli", FIELD_UINT, 8, 0, VALUE_BOUND_MAX),
        FieldSpec("upper_milli", FIELD_UINT, 8, 0, VALUE_BOUND_MAX),
        FieldSpec("bins", FIELD_UINT, 1, 0, MAX_HISTOGRAM_BINS),
        FieldSpec("epsilon", FIELD_UINT, 8, 1, MAX_STUDY_EPSILON),
        FieldSpec("delta", FIELD_UINT, 8, 0, MAX_STUDY_DELTA),
    ),
    TxKind.STUDY_RESULT: (_key("study_id"), _key("query_id"), _key("result_sha256")),
    TxKind.CLOSE_STUDY: (_key("study_id"),),
    TxKind.RESEARCH_CONSENT: (
        FieldSpec("choice", FIELD_ENUM, 1, allowed=_mask(ResearchChoice)),
    ),
}

MAX_KIND = max(PAYLOAD_SCHEMAS)
