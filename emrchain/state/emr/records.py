"""Stored forms of anchored records, grants and break-glass sessions.

Layouts: `docs/spec/state.md` §3.1. An erased record keeps its anchor (ciphertext hash, type,
size, author, heights) and loses its CID: nothing left in state locates the ciphertext through
the chain, and the erasure fields say who erased it, when and why.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from emrchain.schema import ErasureReason, GranteeKind, GrantScope, RecordType
from emrchain.schema.anchor import EMR_RECORD, FIXED, NOT_ERASED, UINT, struct_sections
from emrchain.state.emr.entities import NO_KEY, read_ident
from emrchain.state.emr.limits import CID_MAX_BYTES
from emrchain.types.codec import DecodeError, EncodeError, Reader, Writer

# EmrRecord = _HASHES | cid | _TYPE_SIZE_AUTHOR | author_organization | _TAIL, where the
# one-byte length prefixes of cid and author_organization end the struct before them; the
# layout is `schema.anchor.EMR_RECORD`, shared with the compiled accept path.
_HASHES, _TYPE_SIZE_AUTHOR, _TAIL = (struct.Struct(form) for form in struct_sections(EMR_RECORD))


def encode_record(
    patient_id: bytes,
    ciphertext_sha256: bytes,
    cid: bytes,
    record_type: int,
    size_bytes: int,
    author: bytes,
    author_organization: str,
    height: int,
    time_ms: int,
    erasure_reason: int = NOT_ERASED,
    erased_by: bytes = NO_KEY,
    erased_height: int = 0,
    erased_time_ms: int = 0,
) -> bytes:
    """The EmrRecord encoding (`docs/spec/state.md` §3.1) from its fields.

    Every ANCHOR_RECORD writes one, so it is packed with three precompiled structs rather than
    a Writer and without building the EmrRecord first; `EmrRecord.encode` is this function.
    Refuses what the Writer refused (EncodeError): fixed fields that are not exactly 32 bytes,
    a cid or organisation id over 255 bytes, integers that are bools or do not fit."""
    if not (
        isinstance(patient_id, bytes)
        and isinstance(ciphertext_sha256, bytes)
        and isinstance(author, bytes)
        and isinstance(erased_by, bytes)
        and len(patient_id) == len(ciphertext_sha256) == len(author) == len(erased_by) == 32
    ):
        raise EncodeError("expected exactly 32 bytes")
    if not isinstance(cid, bytes):
        raise EncodeError("expected bytes")
    organization = author_organization.encode("ascii")
    if bool in (
        type(record_type),
        type(size_bytes),
        type(height),
        type(time_ms),
        type(erasure_reason),
        type(erased_height),
        type(erased_time_ms),
    ):
        raise EncodeError("booleans are not integers here")
    try:
        head = _HASHES.pack(patient_id, ciphertext_sha256, len(cid))
        middle = _TYPE_SIZE_AUTHOR.pack(record_type, size_bytes, author, len(organization))
        tail = _TAIL.pack(height, time_ms, erasure_reason, erased_by, erased_height, erased_time_ms)
    except struct.error as error:  # an integer that does not fit its field, or not an integer
        raise EncodeError(str(error)) from None
    return b"".join((head, cid, middle, organization, tail))


def _record_type(reader: Reader) -> RecordType:
    try:
        return RecordType(reader.u8("record_type"))
    except ValueError:
        raise DecodeError("EmrRecord.record_type: unknown type") from None


_RECORD_FIELD_READERS: dict[str, Callable[[Reader], Any]] = {
    "cid": lambda reader: reader.var_bytes(1, CID_MAX_BYTES, "cid"),
    "record_type": _record_type,
    "author_organization": lambda reader: read_ident(reader, "author_organization", 1),
}
"""EmrRecord fields read with more than their width's check: bounds, enum, alphabet."""
_UINT_READERS: dict[int, Callable[[Reader, str], int]] = {
    1: Reader.u8,
    4: Reader.u32,
    8: Reader.u64,
}
if any(
    field.kind != UINT and field.kind != FIXED and field.name not in _RECORD_FIELD_READERS
    for field in EMR_RECORD
):
    raise RuntimeError("EmrRecord: a variable-length field has no reader with its bounds")


@dataclass(frozen=True, slots=True)
class EmrRecord:
    record_id: bytes
    patient_id: bytes
    ciphertext_sha256: bytes
    cid: bytes
    """The binary CID; empty once the record is erased."""
    record_type: RecordType
    size_bytes: int
    author: bytes
    """Member id of the clinician or admin who anchored it."""
    author_organization: str
    height: int
    time_ms: int
    erasure_reason: int = NOT_ERASED
    erased_by: bytes = NO_KEY
    erased_height: int = 0
    erased_time_ms: int = 0

    @property
    def is_erased(self) -> bool:
        return self.erasure_reason != NOT_ERASED

    def erased(self, reason: ErasureReason, by: bytes, height: int, time_ms: int) -> EmrRecord:
        """The tombstone: same anchor, no CID, and who erased it when and why."""
        return replace(
            self,
            cid=b"",
            erasure_reason=int(reason),
            erased_by=by,
            erased_height=height,
            erased_time_ms=time_ms,
        )

    def encode(self) -> bytes:
        return encode_record(
            self.patient_id,
            self.ciphertext_sha256,
            self.cid,
            self.record_type,
            self.size_bytes,
            self.author,
            self.author_organization,
            self.height,
            self.time_ms,
            self.erasure_reason,
            self.erased_by,
            self.erased_height,
            self.erased_time_ms,
        )

    @classmethod
    def decode(cls, record_id: bytes, data: bytes) -> EmrRecord:
        """The fields of `schema.anchor.EMR_RECORD`, in its order, each checked as it is read."""
        reader = Reader(data, "EmrRecord")
        values: dict[str, Any] = {}
        for field in EMR_RECORD:
            special = _RECORD_FIELD_READERS.get(field.name)
            if special is not None:
                values[field.name] = special(reader)
            elif field.kind == FIXED:
                values[field.name] = reader.fixed(field.size, field.name)
            else:
                values[field.name] = _UINT_READERS[field.size](reader, field.name)
        record = cls(record_id, **values)
        reader.finish()
        if record.erasure_reason not in (NOT_ERASED, *ErasureReason):
            raise DecodeError("EmrRecord.erasure_reason: unknown reason")
        return record


@dataclass(frozen=True, slots=True)
class Grant:
    """Consent for a grantee (one member, or the clinicians of one organisation) to read one
    record or every record of one patient, until `expires_at_ms` (0 = no expiry)."""

    grant_id: bytes
    """The id of the GRANT_ACCESS transaction that created it."""
    scope: GrantScope
    target: bytes
    """The record id (scope RECORD) or the patient id (scope PATIENT)."""
    patient_id: bytes
    grantee_kind: GranteeKind
    grantee_member: bytes
    """Member id of the grantee (kind MEMBER), else NO_KEY."""
    grantee_organization: str
    """Organisation id of the grantee (kind ORGANIZATION), else empty."""
    grantor: bytes
    expires_at_ms: int
    wrapped_key_sha256: bytes
    """SHA-256 of the grantee's wrap of the data key (record scope; zeros for patient scope).
    The wrap itself is kept off chain by the record's custodians."""
    height: int
    time_ms: int

    def in_force(self, time_ms: int) -> bool:
        """Expiry is compared with block time: a grant is over at time >= expires_at_ms."""
        return self.expires_at_ms == 0 or time_ms < self.expires_at_ms

    def encode(self) -> bytes:
        writer = Writer().u8(self.scope).fixed(self.target, 32).fixed(self.patient_id, 32)
        writer.u8(self.grantee_kind).fixed(self.grantee_member, 32)
        writer.var_bytes(self.grantee_organization.encode("ascii"), 1)
        writer.fixed(self.grantor, 32).u64(self.expires_at_ms).fixed(self.wrapped_key_sha256, 32)
        return writer.u64(self.height).u64(self.time_ms).bytes()

    @classmethod
    def decode(cls, grant_id: bytes, data: bytes) -> Grant:
        reader = Reader(data, "Grant")
        try:
            scope = GrantScope(reader.u8("scope"))
            target = reader.fixed(32, "target")
            patient_id = reader.fixed(32, "patient_id")
            grantee_kind = GranteeKind(reader.u8("grantee_kind"))
        except ValueError as error:
            raise DecodeError(f"Grant: {error}") from None
        grant = cls(
            grant_id=grant_id,
            scope=scope,
            target=target,
            patient_id=patient_id,
            grantee_kind=grantee_kind,
            grantee_member=reader.fixed(32, "grantee_member"),
            grantee_organization=read_ident(reader, "grantee_organization", 0),
            grantor=reader.fixed(32, "grantor"),
            expires_at_ms=reader.u64("expires_at_ms"),
            wrapped_key_sha256=reader.fixed(32, "wrapped_key_sha256"),
            height=reader.u64("height"),
            time_ms=reader.u64("time_ms"),
        )
        reader.finish()
        return grant


class GrantEnd(IntEnum):
    """How a grant stopped being in force."""

    REVOKED = 1
    """REVOKE_ACCESS by its grantor or its patient."""
    EXPIRED = 2
    """Over at block time, and pruned when the patient's grant list was next written."""
    RECORD_ERASED = 3
    """A record-scope grant whose record was erased."""


_GRANT_END_BYTES = 1 + 32 + 8 + 8


@dataclass(frozen=True, slots=True)
class EndedGrant:
    """A grant kept after it left force, for the patient's consent history: how it ended, the
    member who ended it (zeros for an expiry) and the block it ended in."""

    grant: Grant
    end: GrantEnd
    ended_by: bytes
    height: int
    time_ms: int

    def encode(self) -> bytes:
        writer = Writer().u8(self.end).fixed(self.ended_by, 32)
        head = writer.u64(self.height).u64(self.time_ms).bytes()
        return head + self.grant.encode()

    @classmethod
    def decode(cls, grant_id: bytes, data: bytes) -> EndedGrant:
        reader = Reader(data[:_GRANT_END_BYTES], "EndedGrant")
        try:
            end = GrantEnd(reader.u8("end"))
        except ValueError:
            raise DecodeError("EndedGrant.end: unknown end") from None
        ended = cls(
            grant=Grant.decode(grant_id, data[_GRANT_END_BYTES:]),
            end=end,
            ended_by=reader.fixed(32, "ended_by"),
            height=reader.u64("height"),
            time_ms=reader.u64("time_ms"),
        )
        reader.finish()
        return ended


@dataclass(frozen=True, slots=True)
class BreakGlassSession:
    """Temporary emergency read of one patient's records (or one record) by one clinician."""

    member_id: bytes
    record_id: bytes
    """NO_KEY = every record of the patient."""
    expires_at_ms: int
    event_id: bytes
    """The id of the BREAK_GLASS transaction (also the access-trail event id)."""

    def in_force(self, time_ms: int) -> bool:
        return time_ms < self.expires_at_ms

    def covers(self, record_id: bytes) -> bool:
        return self.record_id in (NO_KEY, record_id)


def encode_ids(ids: Iterable[bytes]) -> bytes:
    """list16 of 32-byte ids, in the order given (insertion order: oldest first)."""
    items = list(ids)
    writer = Writer().u16(len(items))
    for item in items:
        writer.fixed(item, 32)
    return writer.bytes()


def decode_ids(data: bytes, maximum: int) -> list[bytes]:
    reader = Reader(data, "IdList")
    count = reader.count(2, maximum, "count")
    ids = [reader.fixed(32, "id") for _ in range(count)]
    reader.finish()
    return ids


def encode_sessions(sessions: Iterable[BreakGlassSession]) -> bytes:
    items = list(sessions)
    writer = Writer().u16(len(items))
    for session in items:
        writer.fixed(session.member_id, 32).fixed(session.record_id, 32)
        writer.u64(session.expires_at_ms).fixed(session.event_id, 32)
    return writer.bytes()


def decode_sessions(data: bytes, maximum: int) -> list[BreakGlassSession]:
    reader = Reader(data, "BreakGlassSessions")
    count = reader.count(2, maximum, "count")
    sessions = [
        BreakGlassSession(
            reader.fixed(32, "member_id"),
            reader.fixed(32, "record_id"),
            reader.u64("expires_at_ms"),
            reader.fixed(32, "event_id"),
        )
        for _ in range(count)
    ]
    reader.finish()
    return sessions
