"""ANCHOR_RECORD's byte layouts, declared once: the stored record it writes (EmrRecord), the
patient entry it counts in, where its payload puts each field, and its result message.

Layouts: `docs/spec/state.md` §3.1 (stored forms) and `docs/spec/encoding.md` §4 (envelope and
payload). Three pieces of code apply the rule and must agree byte for byte: the general rule
(`state/emr/clinical.py`, with the stored forms of `state/emr/records.py` and
`state/emr/entities.py`) and the accept path's two twins (`_core/reference/anchors.py`,
`_core/_anchors.pyx`). The general rule and the reference twin build their layouts from this
module; the compiled twin needs compile-time constants, so it exposes them as `LAYOUT` and
`emrchain._core` refuses to load it unless `LAYOUT == ACCEPT_PATH_LAYOUT` (the constants below,
derived here from the tables).
"""

from __future__ import annotations

from typing import NamedTuple

from emrchain.schema import (
    ENVELOPE_KIND_OFFSET,
    ENVELOPE_NONCE_OFFSET,
    ENVELOPE_PAYLOAD_OFFSET,
    ENVELOPE_SENDER_OFFSET,
    FIELD_BYTES,
    FIELD_ENUM,
    FIELD_FIXED,
    FIELD_UINT,
    NONCE_BYTES,
    PAYLOAD_LENGTH_BYTES,
    PAYLOAD_SCHEMAS,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    FieldSpec,
    TxKind,
)

FIXED = "fixed"
"""Raw bytes of `size`."""
UINT = "uint"
"""A big-endian unsigned integer of `size` bytes (1, 4 or 8)."""
VARIABLE = "variable"
"""A length prefix of `size` bytes (always 1 here), then that many bytes."""


class StoredField(NamedTuple):
    name: str
    kind: str
    size: int


KEY_BYTES = PUBLIC_KEY_BYTES
"""Ids, keys and hashes: record, patient and member ids, the ciphertext hash."""

EMR_RECORD: tuple[StoredField, ...] = (
    StoredField("patient_id", FIXED, KEY_BYTES),
    StoredField("ciphertext_sha256", FIXED, KEY_BYTES),
    StoredField("cid", VARIABLE, 1),
    StoredField("record_type", UINT, 1),
    StoredField("size_bytes", UINT, 8),
    StoredField("author", FIXED, KEY_BYTES),
    StoredField("author_organization", VARIABLE, 1),
    StoredField("height", UINT, 8),
    StoredField("time_ms", UINT, 8),
    StoredField("erasure_reason", UINT, 1),
    StoredField("erased_by", FIXED, KEY_BYTES),
    StoredField("erased_height", UINT, 8),
    StoredField("erased_time_ms", UINT, 8),
)
"""The value under `0x30 ‖ record_id`, in order. A live record's four erasure fields are zero."""

PATIENT_ENTRY: tuple[StoredField, ...] = (
    StoredField("member_id", FIXED, KEY_BYTES),
    StoredField("record_count", UINT, 4),
)
"""The value under `0x25 ‖ patient_id`: the member holding the patient id, and how many records
were anchored for it (ANCHOR_RECORD adds one)."""

NOT_ERASED = 0
"""`erasure_reason` of a live record (the reasons are 1..3)."""

ANCHORED_MESSAGE_PREFIX = "record "
ANCHORED_MESSAGE_SUFFIX = " anchored"
ANCHORED_MESSAGE_ID_BYTES = 8
"""The result message of an applied anchor names the first bytes of the record id, in hex."""


def anchored_message(record_id: bytes) -> str:
    """The result message of an ANCHOR_RECORD that applied."""
    return (
        f"{ANCHORED_MESSAGE_PREFIX}{record_id[:ANCHORED_MESSAGE_ID_BYTES].hex()}"
        f"{ANCHORED_MESSAGE_SUFFIX}"
    )


_STRUCT_CODES = {(UINT, 1): "B", (UINT, 4): "I", (UINT, 8): "Q"}


def struct_sections(fields: tuple[StoredField, ...]) -> tuple[str, ...]:
    """The `struct` formats of a stored form's fixed runs, split after each variable field's
    length prefix (its content stands between two sections): an EmrRecord is
    section 0 | cid | section 1 | author organisation | section 2."""
    sections: list[str] = []
    codes: list[str] = []
    for field in fields:
        if field.kind == FIXED:
            codes.append(f"{field.size}s")
        else:
            codes.append(_STRUCT_CODES[UINT, field.size])
        if field.kind == VARIABLE:
            sections.append(">" + "".join(codes))
            codes = []
    sections.append(">" + "".join(codes))
    return tuple(sections)


def _width(fields: tuple[StoredField, ...]) -> int:
    """Bytes of `fields`, counting a variable field's length prefix only."""
    return sum(field.size for field in fields)


def _names(fields: tuple[StoredField, ...]) -> list[str]:
    return [field.name for field in fields]


def _stored(spec: FieldSpec) -> StoredField:
    """A payload field as the stored forms declare it."""
    kinds = {FIELD_FIXED: FIXED, FIELD_UINT: UINT, FIELD_ENUM: UINT, FIELD_BYTES: VARIABLE}
    return StoredField(spec.name, kinds[spec.type], spec.arg)


ANCHOR_CUSTODY_FIELDS = ("patient_wrap_sha256", "custody")
"""The payload's tail: the custody set and the wrap digests (`docs/spec/records.md` §9), kept
under their own state key, not in the EmrRecord."""

ANCHOR_PAYLOAD: tuple[StoredField, ...] = tuple(
    _stored(spec)
    for spec in PAYLOAD_SCHEMAS[TxKind.ANCHOR_RECORD]
    if spec.name not in ANCHOR_CUSTODY_FIELDS
)
"""The payload's head: record id, then the record's first fields as `EMR_RECORD` stores them.
The custody tail follows it (`ANCHOR_CUSTODY_FIELDS`)."""
_TAIL = PAYLOAD_SCHEMAS[TxKind.ANCHOR_RECORD][-2:]
if tuple(spec.name for spec in _TAIL) != ANCHOR_CUSTODY_FIELDS or (
    _TAIL[0].type != FIELD_FIXED or _TAIL[1].type != FIELD_BYTES
):
    raise RuntimeError("ANCHOR_RECORD's payload must end with the patient wrap, then custody")

PAYLOAD_WRAP_BYTES = _TAIL[0].arg
"""`patient_wrap_sha256`, right after the payload's head."""
PAYLOAD_CUSTODY_LENGTH_BYTES = _TAIL[1].arg
"""The length prefix of `custody`, which ends the payload."""
CUSTODY_WRAP_BYTES = 32
"""The wrap digest ending each custody entry (count u8 | (u8 length | organisation id | digest)*,
`docs/spec/records.md` §9). The accept path takes only a custody list of one entry naming the
author's organisation: the policy's whole set when k = 1."""

_COPIED = len(ANCHOR_PAYLOAD) - 1
if ANCHOR_PAYLOAD[0].name != "record_id" or ANCHOR_PAYLOAD[1:] != EMR_RECORD[:_COPIED]:
    # The accept path copies the payload after the record id into the record unchanged.
    raise RuntimeError("ANCHOR_RECORD's payload after the record id is not the record's head")

_CID = _names(ANCHOR_PAYLOAD).index("cid")
_AUTHOR = _names(EMR_RECORD).index("author")
_HEIGHT = _names(EMR_RECORD).index("height")
_ERASURE = _names(EMR_RECORD).index("erasure_reason")

PAYLOAD_FIXED_BYTES = _width(ANCHOR_PAYLOAD)
"""An ANCHOR_RECORD payload is exactly this many bytes plus the cid's length."""
PAYLOAD_CID_LENGTH_OFFSET = _width(ANCHOR_PAYLOAD[:_CID])
PAYLOAD_RECORD_OFFSET = _width(ANCHOR_PAYLOAD[:1])
"""Where the record's head (patient id to size) starts in the payload."""
RECORD_HEIGHT_BYTES = EMR_RECORD[_HEIGHT].size
RECORD_TIME_BYTES = EMR_RECORD[_HEIGHT + 1].size
"""The record's anchoring height and time follow the author organisation."""
RECORD_ERASURE_BYTES = _width(EMR_RECORD[_ERASURE:])
"""The four erasure fields ending the record: zero bytes in a live record."""
PATIENT_ENTRY_BYTES = _width(PATIENT_ENTRY)
PATIENT_COUNT_OFFSET = _width(PATIENT_ENTRY[:1])
PATIENT_COUNT_BYTES = PATIENT_ENTRY[1].size

if (
    _names(EMR_RECORD)[_COPIED:_ERASURE]
    != ["author", "author_organization", "height", "time_ms"]
    or EMR_RECORD[_AUTHOR].size != KEY_BYTES
    or PATIENT_ENTRY[0].size != KEY_BYTES
):
    # The accept path writes the author's member id, its organisation, height and time.
    raise RuntimeError("EmrRecord: author, organisation, height and time are out of place")

ACCEPT_PATH_LAYOUT: dict[str, int | bytes] = {
    "KEY": KEY_BYTES,
    "ENTRY": PATIENT_ENTRY_BYTES,
    "COUNT_AT": PATIENT_COUNT_OFFSET,
    "COUNT": PATIENT_COUNT_BYTES,
    "FIXED": PAYLOAD_FIXED_BYTES,
    "RECORD_AT": PAYLOAD_RECORD_OFFSET,
    "CID_LENGTH_AT": PAYLOAD_CID_LENGTH_OFFSET,
    "SENDER_AFTER_KIND": ENVELOPE_SENDER_OFFSET - ENVELOPE_KIND_OFFSET,
    "NONCE_AFTER_KIND": ENVELOPE_NONCE_OFFSET - ENVELOPE_KIND_OFFSET,
    "NONCE": NONCE_BYTES,
    "PAYLOAD_LENGTH": PAYLOAD_LENGTH_BYTES,
    "PAYLOAD_AFTER_KIND": ENVELOPE_PAYLOAD_OFFSET - ENVELOPE_KIND_OFFSET,
    "SIGNATURE": SIGNATURE_BYTES,
    "HEIGHT": RECORD_HEIGHT_BYTES,
    "TIME": RECORD_TIME_BYTES,
    "ERASURE": RECORD_ERASURE_BYTES,
    "MESSAGE_PREFIX": ANCHORED_MESSAGE_PREFIX.encode("ascii"),
    "MESSAGE_SUFFIX": ANCHORED_MESSAGE_SUFFIX.encode("ascii"),
    "MESSAGE_ID": ANCHORED_MESSAGE_ID_BYTES,
    "WRAP": PAYLOAD_WRAP_BYTES,
    "CUSTODY_LENGTH": PAYLOAD_CUSTODY_LENGTH_BYTES,
    "CUSTODY_WRAP": CUSTODY_WRAP_BYTES,
}
"""Every constant the accept path's twins build on, by the name each twin exposes it under
(`LAYOUT`); `emrchain._core` checks both against this at import."""


def check_layout(module: str, layout: dict[str, int | bytes]) -> None:
    """Raise ImportError unless a twin's `LAYOUT` (the constants it was built with) is the
    declared one, `ACCEPT_PATH_LAYOUT`: a compiled module built before the layout changed, or
    with one constant edited, is refused rather than run (each twin's package calls this)."""
    declared = ACCEPT_PATH_LAYOUT
    differing = sorted(
        name for name in declared.keys() | layout.keys() if layout.get(name) != declared.get(name)
    )
    if differing:
        shown = ", ".join(
            f"{name}: built {layout.get(name)!r}, declared {declared.get(name)!r}"
            for name in differing
        )
        raise ImportError(f"{module} was built for another layout ({shown}); rebuild it")
