"""The patient's consent history and record index: append-only logs in state.

Consent history: every GRANT_ACCESS that applied appends its grant id to its patient's history
(0x43, keyed by sequence); a grant that leaves force (revoked, expired and pruned, or its
record erased) moves from 0x40 to 0x44 with how, when and by whom it ended, so the history
names every grant ever made and each one's end. Record index: every ANCHOR_RECORD writes the
record id under its patient and the patient's record count before it (0x33).

Both grow by one entry per transaction that applied, and old blocks may be pruned: these are
the complete copies every node keeps. Layouts: `docs/spec/state.md` §3.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from emrchain.state import keys
from emrchain.state.emr.records import EmrRecord, EndedGrant, Grant, GrantEnd
from emrchain.state.emr.tables import read_grant, read_patient, read_record
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.codec import DecodeError

T = TypeVar("T")


def consent_history_length(view: StateView, patient_id: bytes) -> int:
    raw = view.get(keys.consent_history_key(patient_id, keys.CONSENT_HISTORY_LENGTH_SEQUENCE))
    if raw is None:
        return 0
    if len(raw) != 8:
        raise StateCorruptionError("a consent history length is not 8 bytes")
    return int.from_bytes(raw, "big")


def append_consent(state: OverlayStateView, patient_id: bytes, grant_id: bytes) -> None:
    """Add a new grant to its patient's consent history."""
    sequence = consent_history_length(state, patient_id)
    state.put(keys.consent_history_key(patient_id, sequence), grant_id)
    state.put(
        keys.consent_history_key(patient_id, keys.CONSENT_HISTORY_LENGTH_SEQUENCE),
        (sequence + 1).to_bytes(8, "big"),
    )


def end_grant(
    state: OverlayStateView, grant: Grant, end: GrantEnd, ended_by: bytes, at: tuple[int, int]
) -> None:
    """Keep `grant`, which leaves force at block (height, time_ms) `at`, for the history."""
    height, time_ms = at
    ended = EndedGrant(grant, end, ended_by, height, time_ms)
    state.put(keys.ended_grant_key(grant.grant_id), ended.encode())


def read_ended_grant(view: StateView, grant_id: bytes) -> EndedGrant | None:
    raw = view.get(keys.ended_grant_key(grant_id))
    if raw is None:
        return None
    try:
        return EndedGrant.decode(grant_id, raw)
    except (DecodeError, ValueError) as error:
        raise StateCorruptionError(f"an ended grant is undecodable: {error}") from None


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    """One grant of a consent history: in force (`ended` None) or ended."""

    sequence: int
    grant: Grant
    ended: EndedGrant | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Items of a log, oldest first, and the log's length: a page ends the log when its last
    item's sequence is `total - 1` (or it is empty)."""

    items: tuple[T, ...]
    total: int


def _sequences(total: int, after: int | None, limit: int) -> range:
    """The sequence numbers of the page after sequence `after` (None: from the first)."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    start = 0 if after is None else after + 1
    if not 0 <= start <= total:
        raise ValueError(f"sequence {after} is not within the log's 0..{total - 1}")
    return range(start, min(total, start + limit))


def consent_history(
    view: StateView, patient_id: bytes, after: int | None, limit: int
) -> Page[ConsentEntry]:
    """Up to `limit` grants of the patient's consent history after sequence `after`."""
    total = consent_history_length(view, patient_id)
    entries = []
    for sequence in _sequences(total, after, limit):
        grant_id = view.get(keys.consent_history_key(patient_id, sequence))
        if grant_id is None or len(grant_id) != 32:
            raise StateCorruptionError(f"consent history entry {sequence} is missing")
        in_force = read_grant(view, grant_id)
        ended = None if in_force is not None else read_ended_grant(view, grant_id)
        if ended is not None:
            entries.append(ConsentEntry(sequence, ended.grant, ended))
        elif in_force is not None:
            entries.append(ConsentEntry(sequence, in_force, None))
        else:
            raise StateCorruptionError("a consent history names a grant stored nowhere")
    return Page(tuple(entries), total)


@dataclass(frozen=True, slots=True)
class IndexedRecord:
    sequence: int
    record: EmrRecord


def patient_records(
    view: StateView, patient_id: bytes, after: int | None, limit: int
) -> Page[IndexedRecord]:
    """Up to `limit` of the patient's records in anchoring order, after sequence `after`
    (erased ones too: their tombstones)."""
    entry = read_patient(view, patient_id)
    total = 0 if entry is None else entry.record_count
    records = []
    for sequence in _sequences(total, after, limit):
        record_id = view.get(keys.patient_record_key(patient_id, sequence))
        record = None if record_id is None else read_record(view, record_id)
        if record is None:
            raise StateCorruptionError(f"patient record index entry {sequence} is missing")
        records.append(IndexedRecord(sequence, record))
    return Page(tuple(records), total)
