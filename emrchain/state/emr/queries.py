"""Pure queries for the RPC layer: they read a StateView and never write.

Authorisation of a query is the caller's to check with `read_decision` (before serving a record)
and `list_decision` (before serving grants or an access trail); these functions only read.
Pass the last committed block's time as `time_ms` to answer as the chain would.
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.state.emr.access import (
    Decision,
    list_decision,
    patient_records_decision,
    read_decision,
)
from emrchain.state.emr.amendments import (
    AmendmentRef,
    RecordAmendments,
    RecordHistory,
    record_amendments,
    record_history,
)
from emrchain.state.emr.audit import (
    REVIEW_TRAIL,
    AccessEvent,
    AccessTrail,
    find_event,
    patient_trail,
    read_trail,
    record_trail,
)
from emrchain.state.emr.entities import KeyHistoryEntry, Member, Organization
from emrchain.state.emr.history import (
    ConsentEntry,
    IndexedRecord,
    Page,
    consent_history,
    patient_records,
)
from emrchain.state.emr.records import EmrRecord, Grant
from emrchain.state.emr.reviews import (
    REVIEW_SCAN_MAX,
    ReviewPage,
    ReviewState,
    ReviewStatus,
    list_reviews,
    open_review_count,
    read_review_state,
    review_event,
)
from emrchain.state.emr.tables import (
    member_of_key,
    read_grant,
    read_key_history,
    read_organization,
    read_patient_grant_ids,
    read_record,
    read_record_grant_ids,
)
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import StateView

DEFAULT_TRAIL_LIMIT = 100
MAX_TRAIL_LIMIT = 4_096


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member as found by one of its keys; `is_current_key` is False for a rotated key."""

    member: Member
    is_current_key: bool


def record(view: StateView, record_id: bytes) -> EmrRecord | None:
    """The anchored record (erased ones too: check `is_erased`), or None if never anchored."""
    return read_record(view, record_id)


def is_erased(view: StateView, record_id: bytes) -> bool:
    """True iff the record was anchored and then erased (reads of it are "gone")."""
    found = read_record(view, record_id)
    return found is not None and found.is_erased


def member(view: StateView, key: bytes) -> MemberView | None:
    """The member that has or had `key`, or None if no member ever had it."""
    found = member_of_key(view, key)
    if found is None:
        return None
    return MemberView(found, found.current_key == key)


def key_history(view: StateView, key: bytes) -> list[KeyHistoryEntry]:
    """Every key of the member that has or had `key`, oldest first; key i was in force from
    its height until the height of key i + 1 (the last one is current)."""
    found = member_of_key(view, key)
    return [] if found is None else read_key_history(view, found)


def organisation(view: StateView, organization_id: str) -> Organization | None:
    return read_organization(view, organization_id)


def _check_one_of(patient_id: bytes | None, record_id: bytes | None) -> None:
    if patient_id is not None and record_id is not None:
        raise ValueError("give exactly one of patient_id and record_id, not both")


def grants_for(
    view: StateView,
    patient_id: bytes | None = None,
    record_id: bytes | None = None,
    time_ms: int | None = None,
) -> list[Grant]:
    """The grants naming a patient (both scopes) or one record (record scope), oldest first.

    With `time_ms`, only those in force then; without, also expired ones not yet pruned."""
    _check_one_of(patient_id, record_id)
    if patient_id is not None:
        ids = read_patient_grant_ids(view, patient_id)
    elif record_id is not None:
        ids = read_record_grant_ids(view, record_id)
    else:
        raise ValueError("give exactly one of patient_id and record_id")
    grants = []
    for grant_id in ids:
        grant = read_grant(view, grant_id)
        if grant is None:
            raise StateCorruptionError("a grant index lists a grant that is not stored")
        if time_ms is None or grant.in_force(time_ms):
            grants.append(grant)
    return grants


def access_events_for(
    view: StateView,
    patient_id: bytes | None = None,
    record_id: bytes | None = None,
    limit: int = DEFAULT_TRAIL_LIMIT,
    before: int | None = None,
) -> AccessTrail:
    """Up to `limit` (at most MAX_TRAIL_LIMIT) events of a patient's or a record's access
    trail, newest first, from the one just before sequence `before` (None: the newest), with
    how many were ever recorded. The whole trail is in state: walking back with
    `before=page.oldest_sequence` reaches the first event ever (ValueError past the trail)."""
    _check_one_of(patient_id, record_id)
    if not 0 <= limit <= MAX_TRAIL_LIMIT:
        raise ValueError(f"limit must be within 0..{MAX_TRAIL_LIMIT}")
    if patient_id is not None:
        return read_trail(view, patient_trail(patient_id), limit, before)
    if record_id is not None:
        return read_trail(view, record_trail(record_id), limit, before)
    raise ValueError("give exactly one of patient_id and record_id")


def consents_of(
    view: StateView, patient_id: bytes, after: int | None = None, limit: int = DEFAULT_TRAIL_LIMIT
) -> Page[ConsentEntry]:
    """The patient's consent history, oldest first: every grant ever made naming the patient
    (both scopes), in force or ended (revoked, expired and pruned, record erased), after
    sequence `after` (None: from the first; ValueError past the history)."""
    if not 0 <= limit <= MAX_TRAIL_LIMIT:
        raise ValueError(f"limit must be within 0..{MAX_TRAIL_LIMIT}")
    return consent_history(view, patient_id, after, limit)


def records_of(
    view: StateView, patient_id: bytes, after: int | None = None, limit: int = DEFAULT_TRAIL_LIMIT
) -> Page[IndexedRecord]:
    """The patient's records in anchoring order (erased ones as tombstones), after sequence
    `after` (None: from the first; ValueError past the index)."""
    if not 0 <= limit <= MAX_TRAIL_LIMIT:
        raise ValueError(f"limit must be within 0..{MAX_TRAIL_LIMIT}")
    return patient_records(view, patient_id, after, limit)


def recorded_access(view: StateView, record_id: bytes, event_id: bytes) -> AccessEvent | None:
    """The access event transaction `event_id` recorded on `record_id`, if it is among the
    record trail's newest FIND_EVENT_WINDOW events."""
    return find_event(view, record_trail(record_id), event_id)


def break_glass_reviews(view: StateView, limit: int = DEFAULT_TRAIL_LIMIT) -> AccessTrail:
    """The newest break-glass declarations, for auditors' review, newest first."""
    if not 0 <= limit <= MAX_TRAIL_LIMIT:
        raise ValueError(f"limit must be within 0..{MAX_TRAIL_LIMIT}")
    return read_trail(view, REVIEW_TRAIL, limit)


__all__ = [
    "DEFAULT_TRAIL_LIMIT",
    "MAX_TRAIL_LIMIT",
    "REVIEW_SCAN_MAX",
    "AmendmentRef",
    "ConsentEntry",
    "Decision",
    "IndexedRecord",
    "MemberView",
    "Page",
    "RecordAmendments",
    "RecordHistory",
    "ReviewPage",
    "ReviewState",
    "ReviewStatus",
    "access_events_for",
    "break_glass_reviews",
    "consents_of",
    "grants_for",
    "is_erased",
    "key_history",
    "list_decision",
    "list_reviews",
    "member",
    "open_review_count",
    "organisation",
    "patient_records_decision",
    "read_decision",
    "read_review_state",
    "record",
    "record_amendments",
    "record_history",
    "recorded_access",
    "records_of",
    "review_event",
]
