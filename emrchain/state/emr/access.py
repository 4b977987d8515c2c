"""Who may read a record, and who may list a patient's or a record's grants and access trail.

One implementation serves both execution (an ACCESS_EVENT is applied only if the reader may
read) and the RPC layer's queries, so a read the node serves is exactly a read the chain would
record. Rules: `docs/spec/access-control.md` §4.
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.schema import GranteeKind, GrantScope, Role
from emrchain.state.codes import ResultCode
from emrchain.state.emr.audit import AccessBasis
from emrchain.state.emr.entities import NO_KEY, Member
from emrchain.state.emr.records import EmrRecord, Grant
from emrchain.state.emr.tables import (
    member_of_key,
    read_grant,
    read_patient_grant_ids,
    read_record,
    read_record_grant_ids,
    read_sessions,
)
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import StateView

VIA_NONE = "none"
VIA_AUDITOR = "auditor"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this key do this now?".

    `reason_code` is "OK" when allowed, else the name of the ResultCode a transaction doing the
    same would be refused with. `via` names the basis: "author", "patient",
    "reenrolled_patient", "grant", "break_glass" for reads; "patient", "auditor",
    "author_organization" for listings; "none" when refused. `grant_id` is the id of the
    authorising transaction: the grant (via "grant") or the break-glass declaration (via
    "break_glass"), else zeros.
    """

    allowed: bool
    reason_code: str
    via: str
    grant_id: bytes = NO_KEY

    @classmethod
    def refused(cls, code: ResultCode) -> Decision:
        return cls(False, code.name, VIA_NONE)

    @classmethod
    def granted(cls, via: str, grant_id: bytes = NO_KEY) -> Decision:
        return cls(True, ResultCode.OK.name, via, grant_id)


def member_status(view: StateView, key: bytes) -> Member | ResultCode:
    """The active member whose current key is `key`, or why there is none."""
    member = member_of_key(view, key)
    if member is None:
        return ResultCode.NOT_A_MEMBER
    if member.current_key != key:
        return ResultCode.KEY_ROTATED
    if not member.is_active:
        return ResultCode.MEMBER_REVOKED
    return member


def grant_covers(grant: Grant, record: EmrRecord) -> bool:
    if grant.scope == GrantScope.RECORD:
        return grant.target == record.record_id
    return grant.target == record.patient_id


def grantee_matches(grant: Grant, reader: Member) -> bool:
    """A member grant names one member; an organisation grant covers its clinicians."""
    if grant.grantee_kind == GranteeKind.MEMBER:
        return grant.grantee_member == reader.member_id
    return reader.role == Role.CLINICIAN and reader.organization_id == grant.grantee_organization


def grant_authorizes(grant: Grant, record: EmrRecord, reader: Member, time_ms: int) -> bool:
    return (
        grant.in_force(time_ms) and grant_covers(grant, record) and grantee_matches(grant, reader)
    )


def _grants_for_record(view: StateView, record: EmrRecord) -> list[Grant]:
    """Record-scope grants of the record, then patient-scope grants of its patient, oldest
    first (the first that authorises is reported, so the answer is deterministic)."""
    grants = []
    for grant_id in read_record_grant_ids(view, record.record_id):
        grants.append(_existing_grant(view, grant_id))
    for grant_id in read_patient_grant_ids(view, record.patient_id):
        grant = _existing_grant(view, grant_id)
        if grant.scope == GrantScope.PATIENT:
            grants.append(grant)
    return grants


def _existing_grant(view: StateView, grant_id: bytes) -> Grant:
    grant = read_grant(view, grant_id)
    if grant is None:
        raise StateCorruptionError("a grant index lists a grant that is not stored")
    return grant


def decide_read(view: StateView, record: EmrRecord, reader: Member, time_ms: int) -> Decision:
    """May `reader` (an active member signing with its current key) read the non-erased
    `record` at block time `time_ms`? Bases are tried in a fixed order.

    Every basis is the patient's own consent (the patient, or a grant only the patient can
    make), the record's author, or an emergency declared and flagged on chain. Membership of
    the author organisation is not one: its admin decides who its clinicians are, so that
    basis would let one admin read every record its organisation holds (access-control.md
    §4)."""
    if record.author == reader.member_id:
        return Decision.granted(AccessBasis.AUTHOR.label)
    if reader.role == Role.PATIENT and reader.patient_id == record.patient_id:
        # A holder registered after the record was anchored holds a re-enrolled patient id
        # (anchoring needs a registered patient id, so a first holder precedes its records).
        if record.height < reader.height:
            return Decision.granted(AccessBasis.REENROLLED_PATIENT.label)
        return Decision.granted(AccessBasis.PATIENT.label)
    for grant in _grants_for_record(view, record):
        if grant_authorizes(grant, record, reader, time_ms):
            return Decision.granted(AccessBasis.GRANT.label, grant.grant_id)
    if reader.role == Role.CLINICIAN:
        for session in read_sessions(view, record.patient_id):
            if (
                session.member_id == reader.member_id
                and session.in_force(time_ms)
                and session.covers(record.record_id)
            ):
                return Decision.granted(AccessBasis.BREAK_GLASS.label, session.event_id)
    return Decision.refused(ResultCode.ACCESS_DENIED)


def decide_access(
    view: StateView, record: EmrRecord, reader: Member, grant_id: bytes, time_ms: int
) -> Decision:
    """The decision an ACCESS_EVENT by `reader` naming `grant_id` (NO_KEY: none) gets at
    `time_ms`: a named grant must authorise this reader for this record
    (GRANT_NOT_APPLICABLE); without one, the bases of `decide_read` (ACCESS_DENIED)."""
    if grant_id == NO_KEY:
        return decide_read(view, record, reader, time_ms)
    grant = read_grant(view, grant_id)
    if grant is None or not grant_authorizes(grant, record, reader, time_ms):
        return Decision.refused(ResultCode.GRANT_NOT_APPLICABLE)
    return Decision.granted(AccessBasis.GRANT.label, grant_id)


def read_decision(
    view: StateView,
    record_id: bytes,
    reader_key: bytes,
    time_ms: int,
    grant_id: bytes = NO_KEY,
) -> Decision:
    """May the holder of `reader_key` read record `record_id` at `time_ms`, relying on
    `grant_id` if it names one? Exactly what an ACCESS_EVENT with these fields would be judged
    at a block of time `time_ms`.

    A missing record is RECORD_NOT_FOUND and an erased one RECORD_ERASED ("gone"), whoever asks.
    """
    record = read_record(view, record_id)
    if record is None:
        return Decision.refused(ResultCode.RECORD_NOT_FOUND)
    if record.is_erased:
        return Decision.refused(ResultCode.RECORD_ERASED)
    reader = member_status(view, reader_key)
    if isinstance(reader, ResultCode):
        return Decision.refused(reader)
    return decide_access(view, record, reader, grant_id, time_ms)


def patient_records_decision(
    view: StateView, requester_key: bytes, patient_id: bytes, time_ms: int
) -> Decision:
    """May the holder of `requester_key` list the records of patient `patient_id` (its record
    index) at `time_ms`, and which of them?

    Auditors all of them (`auditor`); the patient holding the id all of its own (`patient`);
    an admin those its organisation authored (`author_organization`: the caller filters by
    author organisation); a clinician all of them when it may read every record of the
    patient: a patient-scope grant in force for it (`grant`) or an open break-glass session
    over all the patient's records (`break_glass`). A clinician whose reads rest on
    authorship or record grants alone knows those record ids already and lists nothing here
    (`ACCESS_DENIED`); anyone else `NOT_AUTHORIZED`. Listing never lets anyone read a record."""
    requester = member_status(view, requester_key)
    if isinstance(requester, ResultCode):
        return Decision.refused(requester)
    if requester.role == Role.AUDITOR:
        return Decision.granted(VIA_AUDITOR)
    if requester.role == Role.PATIENT:
        if requester.patient_id == patient_id:
            return Decision.granted(AccessBasis.PATIENT.label)
        return Decision.refused(ResultCode.NOT_AUTHORIZED)
    if requester.role == Role.ADMIN:
        return Decision.granted(AccessBasis.AUTHOR_ORGANIZATION.label)
    if requester.role != Role.CLINICIAN:
        return Decision.refused(ResultCode.NOT_AUTHORIZED)
    for grant_id in read_patient_grant_ids(view, patient_id):
        grant = _existing_grant(view, grant_id)
        if (
            grant.scope == GrantScope.PATIENT
            and grant.in_force(time_ms)
            and grantee_matches(grant, requester)
        ):
            return Decision.granted(AccessBasis.GRANT.label, grant.grant_id)
    for session in read_sessions(view, patient_id):
        if (
            session.member_id == requester.member_id
            and session.in_force(time_ms)
            and session.record_id == NO_KEY
        ):
            return Decision.granted(AccessBasis.BREAK_GLASS.label, session.event_id)
    return Decision.refused(ResultCode.ACCESS_DENIED)


def list_decision(
    view: StateView,
    requester_key: bytes,
    *,
    patient_id: bytes | None = None,
    record_id: bytes | None = None,
) -> Decision:
    """May the holder of `requester_key` list the grants and the access trail of one patient
    (`patient_id`) or of one record (`record_id`)? Exactly one of the two must be given.

    Auditors may list any; a patient their own (and those of their records); an admin those of
    the records its organisation authored. Listing never lets anyone read a record."""
    if (patient_id is None) == (record_id is None):
        raise ValueError("give exactly one of patient_id and record_id")
    requester = member_status(view, requester_key)
    if isinstance(requester, ResultCode):
        return Decision.refused(requester)
    if requester.role == Role.AUDITOR:
        return Decision.granted(VIA_AUDITOR)
    if requester.role == Role.CLINICIAN:
        return Decision.refused(ResultCode.ROLE_NOT_PERMITTED)
    if record_id is not None:
        record = read_record(view, record_id)
        if record is None:
            return Decision.refused(ResultCode.RECORD_NOT_FOUND)
        patient_id = record.patient_id
        if requester.role == Role.ADMIN and requester.organization_id == record.author_organization:
            return Decision.granted(AccessBasis.AUTHOR_ORGANIZATION.label)
    if requester.role == Role.PATIENT and requester.patient_id == patient_id:
        return Decision.granted(AccessBasis.PATIENT.label)
    return Decision.refused(ResultCode.NOT_AUTHORIZED)
