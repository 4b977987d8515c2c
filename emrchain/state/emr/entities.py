"""Stored forms of organisations, members, key history and patient entries.

Each value has one canonical encoding (Writer/Reader, big-endian, bounded, no trailing bytes)
so every node writes identical bytes and the app hash agrees. The state key already names the
entity (organisation id, member id, ...), so the key is never repeated inside the value.
Layouts: `docs/spec/state.md` §3.1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from enum import IntEnum

from emrchain.schema import Role
from emrchain.state.emr.limits import (
    ORGANIZATION_ID_MAX_BYTES,
    ORGANIZATION_NAME_MAX_BYTES,
    REVOKE_REASON_MAX_BYTES,
)
from emrchain.types.codec import U32_MAX, DecodeError, EncodeError, Reader, Writer

NO_KEY = bytes(32)
"""32 zero bytes: "none" in an optional key, member id or hash field."""

_PATIENT_ENTRY = struct.Struct(">32sI")


class MemberStatus(IntEnum):
    ACTIVE = 1
    REVOKED = 2


def read_ident(reader: Reader, field: str, minimum: int) -> str:
    raw = reader.var_bytes(1, ORGANIZATION_ID_MAX_BYTES, field)
    if len(raw) < minimum:
        raise DecodeError(f"{field}: shorter than {minimum} bytes")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(f"{field}: not ASCII") from None


def read_text(reader: Reader, prefix_bytes: int, maximum: int, field: str) -> str:
    try:
        return reader.var_bytes(prefix_bytes, maximum, field).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{field}: not UTF-8") from None


@dataclass(frozen=True, slots=True)
class Organization:
    """A registered organisation. `sponsor_organization` is empty for genesis organisations;
    for later ones it is the organisation whose admin registered it (that organisation's admins
    may register the first admin while `admin_count` is 0)."""

    organization_id: str
    name: str
    encryption_key: bytes
    sponsor_organization: str
    admin_count: int
    member_count: int
    height: int
    time_ms: int

    def encode(self) -> bytes:
        writer = Writer()
        writer.var_bytes(self.name.encode("utf-8"), 1).fixed(self.encryption_key, 32)
        writer.var_bytes(self.sponsor_organization.encode("ascii"), 1)
        writer.u32(self.admin_count).u32(self.member_count)
        return writer.u64(self.height).u64(self.time_ms).bytes()

    @classmethod
    def decode(cls, organization_id: str, data: bytes) -> Organization:
        reader = Reader(data, "Organization")
        organization = cls(
            organization_id=organization_id,
            name=read_text(reader, 1, ORGANIZATION_NAME_MAX_BYTES, "name"),
            encryption_key=reader.fixed(32, "encryption_key"),
            sponsor_organization=read_ident(reader, "sponsor_organization", 0),
            admin_count=reader.u32("admin_count"),
            member_count=reader.u32("member_count"),
            height=reader.u64("height"),
            time_ms=reader.u64("time_ms"),
        )
        reader.finish()
        return organization

    def with_counts(self, admin_delta: int, member_delta: int) -> Organization:
        return replace(
            self,
            admin_count=self.admin_count + admin_delta,
            member_count=self.member_count + member_delta,
        )


@dataclass(frozen=True, slots=True)
class Member:
    """A member of one organisation. `member_id` is the key it was registered with and never
    changes; `current_key` is the only key that may sign for it (after a rotation the older keys
    are refused, `docs/spec/access-control.md` §3.4)."""

    member_id: bytes
    organization_id: str
    role: Role
    patient_id: bytes
    """The patient pseudonym for role PATIENT, NO_KEY for every other role."""
    current_key: bytes
    encryption_key: bytes
    """X25519 key clients wrap record keys to."""
    status: MemberStatus
    key_count: int
    registered_by: bytes
    """Member id of the admin who registered it; NO_KEY for genesis admins."""
    height: int
    revoked_by: bytes = NO_KEY
    revoked_height: int = 0
    revoke_reason: str = ""

    @property
    def is_active(self) -> bool:
        return self.status == MemberStatus.ACTIVE

    def encode(self) -> bytes:
        writer = Writer().var_bytes(self.organization_id.encode("ascii"), 1)
        writer.u8(self.role).fixed(self.patient_id, 32).fixed(self.current_key, 32)
        writer.fixed(self.encryption_key, 32).u8(self.status).u16(self.key_count)
        writer.fixed(self.registered_by, 32).u64(self.height)
        writer.fixed(self.revoked_by, 32).u64(self.revoked_height)
        return writer.var_bytes(self.revoke_reason.encode("utf-8"), 1).bytes()

    @classmethod
    def decode(cls, member_id: bytes, data: bytes) -> Member:
        reader = Reader(data, "Member")
        organization_id = read_ident(reader, "organization_id", 1)
        try:
            role = Role(reader.u8("role"))
        except ValueError:
            raise DecodeError("Member.role: unknown role") from None
        patient_id = reader.fixed(32, "patient_id")
        current_key = reader.fixed(32, "current_key")
        encryption_key = reader.fixed(32, "encryption_key")
        try:
            status = MemberStatus(reader.u8("status"))
        except ValueError:
            raise DecodeError("Member.status: unknown status") from None
        member = cls(
            member_id=member_id,
            organization_id=organization_id,
            role=role,
            patient_id=patient_id,
            current_key=current_key,
            encryption_key=encryption_key,
            status=status,
            key_count=reader.u16("key_count"),
            registered_by=reader.fixed(32, "registered_by"),
            height=reader.u64("height"),
            revoked_by=reader.fixed(32, "revoked_by"),
            revoked_height=reader.u64("revoked_height"),
            revoke_reason=read_text(reader, 1, REVOKE_REASON_MAX_BYTES, "revoke_reason"),
        )
        reader.finish()
        return member


@dataclass(frozen=True, slots=True)
class KeyHistoryEntry:
    """The member's key from `height` (the block that registered or rotated it to) until the
    `height` of the next entry, if any. Signatures stay verifiable at their heights: blocks keep
    every transaction with its sender key."""

    key: bytes
    height: int
    time_ms: int

    def encode(self) -> bytes:
        return Writer().fixed(self.key, 32).u64(self.height).u64(self.time_ms).bytes()

    @classmethod
    def decode(cls, data: bytes) -> KeyHistoryEntry:
        reader = Reader(data, "KeyHistoryEntry")
        entry = cls(reader.fixed(32, "key"), reader.u64("height"), reader.u64("time_ms"))
        reader.finish()
        return entry


@dataclass(frozen=True, slots=True)
class PatientEntry:
    """Which member holds a patient id, and how many records were anchored for it."""

    member_id: bytes
    record_count: int

    # Fixed layout (36 bytes), read and rewritten by every ANCHOR_RECORD: struct instead of
    # Writer/Reader, with the same checks and the same bytes; `pack`/`unpack` spare the hot
    # path the objects.
    def encode(self) -> bytes:
        return self.pack(self.member_id, self.record_count)

    @classmethod
    def decode(cls, data: bytes) -> PatientEntry:
        return cls(*cls.unpack(data))

    @staticmethod
    def pack(member_id: bytes, record_count: int) -> bytes:
        """The encoding of PatientEntry(member_id, record_count); EncodeError if it has none."""
        if not isinstance(member_id, bytes) or len(member_id) != 32:
            raise EncodeError("expected exactly 32 bytes")
        if (
            not isinstance(record_count, int)
            or isinstance(record_count, bool)
            or not 0 <= record_count <= U32_MAX
        ):
            raise EncodeError(f"{record_count!r} does not fit u32")
        return _PATIENT_ENTRY.pack(member_id, record_count)

    @staticmethod
    def unpack(data: bytes) -> tuple[bytes, int]:
        """(member_id, record_count) of an encoding; DecodeError if it is not one."""
        if type(data) is bytes and len(data) == _PATIENT_ENTRY.size:
            member_id, record_count = _PATIENT_ENTRY.unpack(data)
            return member_id, record_count
        # Anything else is malformed: the generic reader says exactly how.
        reader = Reader(data, "PatientEntry")
        fields = reader.fixed(32, "member_id"), reader.u32("record_count")
        reader.finish()
        return fields
