"""Typed reads and writes of the EMR state entries, and the refusal that handlers raise.

Reads return None for an absent entry. An entry that is present but does not decode was not
written by this application: that is StateCorruptionError, never a transaction's fault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from emrchain.state import keys
from emrchain.state.codes import ResultCode
from emrchain.state.emr.entities import KeyHistoryEntry, Member, Organization, PatientEntry
from emrchain.state.emr.limits import (
    MAX_BREAK_GLASS_SESSIONS_PER_PATIENT,
    MAX_GRANTS_PER_PATIENT,
    MAX_GRANTS_PER_RECORD,
)
from emrchain.state.emr.memo import DecodedMemo
from emrchain.state.emr.records import (
    BreakGlassSession,
    EmrRecord,
    Grant,
    decode_ids,
    decode_sessions,
    encode_ids,
    encode_sessions,
)
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.codec import DecodeError

T = TypeVar("T")

MEMBER_MEMO_ENTRIES = 8_192
"""Decoded members kept by their stored bytes (~1 KB each with their fields): more than the
members that sign in a block, so a sender's entry is decoded once, not once per transaction."""
_MEMBERS: DecodedMemo[Member] = DecodedMemo(MEMBER_MEMO_ENTRIES)


class TransactionRefusedError(Exception):
    """A transaction is refused with `code`; its handler's writes are discarded."""

    def __init__(self, code: ResultCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _decoded(view: StateView, key: bytes, decode: Callable[[bytes], T]) -> T | None:
    raw = view.get(key)
    if raw is None:
        return None
    return _decode_entry(key, raw, decode)


def _decode_entry(key: bytes, raw: bytes, decode: Callable[[bytes], T]) -> T:
    try:
        return decode(raw)
    except (DecodeError, ValueError) as error:
        raise StateCorruptionError(
            f"state entry {key[:1].hex()}… is undecodable: {error}"
        ) from None


def read_organization(view: StateView, organization_id: str) -> Organization | None:
    try:
        key = keys.organization_key(organization_id)
    except (ValueError, UnicodeEncodeError):
        return None  # not a well-formed organisation id, so never registered
    return _decoded(view, key, lambda raw: Organization.decode(organization_id, raw))


def write_organization(state: OverlayStateView, organization: Organization) -> None:
    state.put(keys.organization_key(organization.organization_id), organization.encode())


def read_organization_count(view: StateView) -> int:
    raw = view.get(keys.ORGANIZATION_COUNT)
    return 0 if raw is None else int.from_bytes(raw, "big")


def write_organization_count(state: OverlayStateView, count: int) -> None:
    state.put(keys.ORGANIZATION_COUNT, count.to_bytes(4, "big"))


def read_member(view: StateView, member_id: bytes) -> Member | None:
    key = keys.member_key(member_id)
    raw = view.get(key)
    if raw is None:
        return None
    # Hot: every transaction's sender. The memo is keyed by the stored bytes, so it is never
    # stale; the id check covers two members whose entries happen to be byte-identical.
    member = _MEMBERS.get(raw)
    if member is None or member.member_id != member_id:
        member = _decode_entry(key, raw, lambda data: Member.decode(member_id, data))
        _MEMBERS.put(raw, member)
    return member


def write_member(state: OverlayStateView, member: Member) -> None:
    state.put(keys.member_key(member.member_id), member.encode())


def member_id_of_key(view: StateView, key: bytes) -> bytes | None:
    """The member a key belongs or belonged to (rotated-away keys included)."""
    raw = view.get(keys.member_key_index_key(key))
    if raw is not None and len(raw) != 32:
        raise StateCorruptionError("a member key index entry is not 32 bytes")
    return raw


def member_of_key(view: StateView, key: bytes) -> Member | None:
    member_id = member_id_of_key(view, key)
    if member_id is None:
        return None
    member = read_member(view, member_id)
    if member is None:
        raise StateCorruptionError("a member key index entry names no member")
    return member


def write_key_history(
    state: OverlayStateView, member_id: bytes, index: int, entry: KeyHistoryEntry
) -> None:
    state.put(keys.member_key_index_key(entry.key), member_id)
    state.put(keys.key_history_key(member_id, index), entry.encode())


def read_key_history(view: StateView, member: Member) -> list[KeyHistoryEntry]:
    entries = []
    for index in range(member.key_count):
        entry = _decoded(
            view, keys.key_history_key(member.member_id, index), KeyHistoryEntry.decode
        )
        if entry is None:
            raise StateCorruptionError(f"key history entry {index} of a member is missing")
        entries.append(entry)
    return entries


def read_patient(view: StateView, patient_id: bytes) -> PatientEntry | None:
    return _decoded(view, keys.patient_key(patient_id), PatientEntry.decode)


def write_patient(state: OverlayStateView, patient_id: bytes, entry: PatientEntry) -> None:
    state.put(keys.patient_key(patient_id), entry.encode())


def read_patient_fields(view: StateView, patient_id: bytes) -> tuple[bytes, int] | None:
    """(member id, record count) of the patient entry: `read_patient` without the object, for
    the one caller per ANCHOR_RECORD."""
    return _decoded(view, keys.patient_key(patient_id), PatientEntry.unpack)


def write_patient_fields(
    state: OverlayStateView, patient_id: bytes, member_id: bytes, record_count: int
) -> None:
    state.put(keys.patient_key(patient_id), PatientEntry.pack(member_id, record_count))


def patient_member(view: StateView, patient_id: bytes) -> Member | None:
    """The member currently holding `patient_id`, if the patient id was ever registered."""
    entry = read_patient(view, patient_id)
    if entry is None:
        return None
    member = read_member(view, entry.member_id)
    if member is None:
        raise StateCorruptionError("a patient entry names no member")
    return member


def read_record(view: StateView, record_id: bytes) -> EmrRecord | None:
    key = keys.emr_record_key(record_id)
    raw = view.get(key)
    if raw is None:  # every new anchor: no decoder closure for the common miss
        return None
    return _decode_entry(key, raw, lambda data: EmrRecord.decode(record_id, data))


def write_record(state: OverlayStateView, record: EmrRecord) -> None:
    state.put(keys.emr_record_key(record.record_id), record.encode())


def read_grant(view: StateView, grant_id: bytes) -> Grant | None:
    return _decoded(view, keys.grant_key(grant_id), lambda raw: Grant.decode(grant_id, raw))


def read_patient_grant_ids(view: StateView, patient_id: bytes) -> list[bytes]:
    ids = _decoded(
        view,
        keys.patient_grants_key(patient_id),
        lambda raw: decode_ids(raw, MAX_GRANTS_PER_PATIENT),
    )
    return ids or []


def read_record_grant_ids(view: StateView, record_id: bytes) -> list[bytes]:
    ids = _decoded(
        view, keys.record_grants_key(record_id), lambda raw: decode_ids(raw, MAX_GRANTS_PER_RECORD)
    )
    return ids or []


def write_ids(state: OverlayStateView, key: bytes, ids: list[bytes]) -> None:
    """Store an id list; an empty list is deleted so that state does not keep dead keys."""
    if ids:
        state.put(key, encode_ids(ids))
    elif state.get(key) is not None:
        state.delete(key)


def read_sessions(view: StateView, patient_id: bytes) -> list[BreakGlassSession]:
    sessions = _decoded(
        view,
        keys.break_glass_key(patient_id),
        lambda raw: decode_sessions(raw, MAX_BREAK_GLASS_SESSIONS_PER_PATIENT),
    )
    return sessions or []


def write_sessions(
    state: OverlayStateView, patient_id: bytes, sessions: list[BreakGlassSession]
) -> None:
    key = keys.break_glass_key(patient_id)
    if sessions:
        state.put(key, encode_sessions(sessions))
    elif state.get(key) is not None:
        state.delete(key)
