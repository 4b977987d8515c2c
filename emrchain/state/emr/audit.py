"""Access events and the trails that hold them in state.

A patient's or a record's trail is an append-only log: a count of events ever appended (u64)
and one entry per event under its sequence number (u64), never overwritten. Old blocks may be
pruned, so the state is the only complete copy of the trail that every node keeps (and that
state-sync snapshots and backups carry); its size is one entry per committed ACCESS_EVENT,
BREAK_GLASS or REENROLMENT, so it grows only with the chain's own transactions.

The auditors' review queue alone is still a ring buffer (`capacity` slots, event n in slot
n mod capacity, the oldest replaced once full): it is a work queue, and every event in it is
also in its patient's trail. Layouts: `docs/spec/state.md` §3.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from emrchain.state import keys
from emrchain.state.emr.entities import Member, read_ident, read_text
from emrchain.state.emr.limits import (
    BREAK_GLASS_REASON_MAX_BYTES,
    REVIEW_QUEUE_CAPACITY,
)
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.codec import DecodeError, Reader, Writer


class EventKind(IntEnum):
    ACCESS = 1
    """A served read or export, submitted by the reader (ACCESS_EVENT transaction)."""
    BREAK_GLASS = 2
    """An emergency access declaration (BREAK_GLASS transaction)."""
    REENROLMENT = 3
    """A patient id passed to a new member after its holder was revoked (REGISTER_MEMBER by an
    admin): the new holder reads the patient's earlier records, so auditors review it."""


class AccessBasis(IntEnum):
    """Why a reader may read a record; `label` is the `Decision.via` string."""

    NONE = 0
    AUTHOR = 1
    AUTHOR_ORGANIZATION = 2
    """A basis for listing only (an admin lists its organisation's records' grants and trails);
    never for reading: an admin controls who its clinicians are (access-control.md §4)."""
    PATIENT = 3
    GRANT = 4
    BREAK_GLASS = 5
    REENROLLED_PATIENT = 6
    """The patient id's current holder reading a record anchored before that holder was
    registered: a re-enrolled patient id, whose identity proofing an admin alone vouched for."""

    @property
    def label(self) -> str:
        return self.name.lower()


_FLAGGED_BASES = frozenset((AccessBasis.BREAK_GLASS, AccessBasis.REENROLLED_PATIENT))


@dataclass(frozen=True, slots=True)
class AccessEvent:
    event_kind: EventKind
    event_id: bytes
    """Id of the transaction that recorded the event."""
    patient_id: bytes
    record_id: bytes
    """NO_KEY for a break-glass declaration over all of the patient's records."""
    actor: bytes
    """Member id of the reader, of the clinician who broke the glass, or of the admin who
    re-enrolled the patient id."""
    actor_organization: str
    action: int
    """AccessAction (1 read, 2 export) for ACCESS, 0 for BREAK_GLASS and REENROLMENT."""
    basis: AccessBasis
    grant_id: bytes
    """The grant (basis GRANT) or break-glass transaction (basis BREAK_GLASS) it relied on; for
    a REENROLMENT, the member id of the new holder."""
    expires_at_ms: int
    """End of the break-glass session (BREAK_GLASS), else 0."""
    reason: str
    """The mandatory break-glass reason (BREAK_GLASS), else empty."""
    height: int
    time_ms: int

    @property
    def flagged_for_review(self) -> bool:
        """Bases that rest on one member's word rather than the patient's consent are flagged:
        break-glass declarations and re-enrolments, and every read made under either."""
        return self.event_kind != EventKind.ACCESS or self.basis in _FLAGGED_BASES

    def encode(self) -> bytes:
        writer = Writer().u8(self.event_kind).fixed(self.event_id, 32)
        writer.fixed(self.patient_id, 32).fixed(self.record_id, 32).fixed(self.actor, 32)
        writer.var_bytes(self.actor_organization.encode("ascii"), 1).u8(self.action)
        writer.u8(self.basis).fixed(self.grant_id, 32).u64(self.expires_at_ms)
        writer.var_bytes(self.reason.encode("utf-8"), 2)
        return writer.u64(self.height).u64(self.time_ms).bytes()

    @classmethod
    def decode(cls, data: bytes) -> AccessEvent:
        reader = Reader(data, "AccessEvent")
        try:
            event_kind = EventKind(reader.u8("event_kind"))
        except ValueError:
            raise DecodeError("AccessEvent.event_kind: unknown kind") from None
        event_id = reader.fixed(32, "event_id")
        patient_id = reader.fixed(32, "patient_id")
        record_id = reader.fixed(32, "record_id")
        actor = reader.fixed(32, "actor")
        actor_organization = read_ident(reader, "actor_organization", 1)
        action = reader.u8("action")
        try:
            basis = AccessBasis(reader.u8("basis"))
        except ValueError:
            raise DecodeError("AccessEvent.basis: unknown basis") from None
        event = cls(
            event_kind=event_kind,
            event_id=event_id,
            patient_id=patient_id,
            record_id=record_id,
            actor=actor,
            actor_organization=actor_organization,
            action=action,
            basis=basis,
            grant_id=reader.fixed(32, "grant_id"),
            expires_at_ms=reader.u64("expires_at_ms"),
            reason=read_text(reader, 2, BREAK_GLASS_REASON_MAX_BYTES, "reason"),
            height=reader.u64("height"),
            time_ms=reader.u64("time_ms"),
        )
        reader.finish()
        return event


def declaration(
    kind: EventKind,
    event_id: bytes,
    actor: Member,
    patient_id: bytes,
    record_id: bytes,
    basis: AccessBasis,
    grant_id: bytes,
    at: tuple[int, int],
    *,
    expires_at_ms: int = 0,
    reason: str = "",
) -> AccessEvent:
    """A break-glass or re-enrolment event (no read action) by `actor` at (height, time)."""
    height, time_ms = at
    return AccessEvent(
        event_kind=kind,
        event_id=event_id,
        patient_id=patient_id,
        record_id=record_id,
        actor=actor.member_id,
        actor_organization=actor.organization_id,
        action=0,
        basis=basis,
        grant_id=grant_id,
        expires_at_ms=expires_at_ms,
        reason=reason,
        height=height,
        time_ms=time_ms,
    )


@dataclass(frozen=True, slots=True)
class Trail:
    """Where one trail lives in state: a log (`capacity` None) or a ring buffer."""

    count_key: bytes
    slot_prefix: bytes
    capacity: int | None

    def slot_key(self, sequence: int) -> bytes:
        if self.capacity is None:
            return self.slot_prefix + sequence.to_bytes(8, "big")
        return self.slot_prefix + (sequence % self.capacity).to_bytes(4, "big")

    def kept(self, total: int) -> int:
        """How many of the `total` events ever appended are still in state."""
        return total if self.capacity is None else min(total, self.capacity)


def patient_trail(patient_id: bytes) -> Trail:
    return Trail(
        keys.PATIENT_TRAIL_COUNT_PREFIX + patient_id, keys.PATIENT_TRAIL_PREFIX + patient_id, None
    )


def record_trail(record_id: bytes) -> Trail:
    return Trail(
        keys.RECORD_TRAIL_COUNT_PREFIX + record_id, keys.RECORD_TRAIL_PREFIX + record_id, None
    )


REVIEW_TRAIL = Trail(keys.REVIEW_COUNT, keys.REVIEW_PREFIX, REVIEW_QUEUE_CAPACITY)


@dataclass(frozen=True, slots=True)
class AccessTrail:
    """A page of a trail: `events` newest first; `total` events were ever appended, of which
    `dropped` are no longer in state (only the review queue drops any). `oldest_sequence` is
    the sequence number of the page's last (oldest) event, None for an empty page: the next
    page is the one before it."""

    events: tuple[AccessEvent, ...]
    total: int
    dropped: int
    oldest_sequence: int | None = None


def _count(view: StateView, trail: Trail) -> int:
    raw = view.get(trail.count_key)
    return 0 if raw is None else int.from_bytes(raw, "big")


def append_event(state: OverlayStateView, trail: Trail, event: AccessEvent) -> None:
    """Add `event` as the trail's newest (in a ring, over the oldest slot once full)."""
    sequence = _count(state, trail)
    state.put(trail.slot_key(sequence), event.encode())
    state.put(trail.count_key, (sequence + 1).to_bytes(8, "big"))


def read_trail(view: StateView, trail: Trail, limit: int, before: int | None = None) -> AccessTrail:
    """Up to `limit` events still in state, newest first, starting with the one just before
    sequence number `before` (None: the newest). `before` beyond the trail is a ValueError."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    total = _count(view, trail)
    oldest_kept = total - trail.kept(total)
    start = total if before is None else before
    if not oldest_kept <= start <= total:
        raise ValueError(f"sequence {start} is not within the trail's {oldest_kept}..{total}")
    sequences = range(start - 1, max(oldest_kept, start - limit) - 1, -1)
    events = []
    for sequence in sequences:
        raw = view.get(trail.slot_key(sequence))
        if raw is None:
            raise StateCorruptionError(f"access trail entry {sequence} is missing")
        events.append(AccessEvent.decode(raw))
    oldest = sequences[-1] if events else None
    return AccessTrail(tuple(events), total, oldest_kept, oldest)


FIND_EVENT_WINDOW = 1_024
"""How far back `find_event` looks: the read route asks for the event of the block it just
waited for, so the newest events are enough, and a lookup never scans a whole log."""

_EVENT_ID = slice(1, 33)
"""Where an encoded AccessEvent holds its event id (after the one-byte kind)."""


def find_event(view: StateView, trail: Trail, event_id: bytes) -> AccessEvent | None:
    """The event recorded by transaction `event_id` among the trail's newest
    FIND_EVENT_WINDOW; searched newest first, so an event of the last block is found at once."""
    total = _count(view, trail)
    window = min(trail.kept(total), FIND_EVENT_WINDOW)
    for sequence in range(total - 1, total - 1 - window, -1):
        raw = view.get(trail.slot_key(sequence))
        if raw is None:
            raise StateCorruptionError(f"access trail entry {sequence} is missing")
        if raw[_EVENT_ID] == event_id:
            return AccessEvent.decode(raw)
    return None
