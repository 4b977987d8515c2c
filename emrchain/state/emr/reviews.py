"""The auditors' review queue with an open and a closed state (`docs/spec/access-control.md`
§3.14).

The queue itself is the REVIEW_TRAIL ring of `audit.py` (0x64/0x65, unchanged): every
break-glass declaration and re-enrolment is appended there. Beside it, each review still in the
ring has a ReviewState (0x68 | review id): its position in the ring, and once an auditor closed
it, the outcome. A review that the ring overwrites (65,536 newer ones) loses its state with it,
so the states are bounded by the ring; the open ones are counted (0x69) for the nodes' metric.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

from emrchain.schema import REVIEW_NOTE_MAX_BYTES, ReviewOutcome, Role
from emrchain.schema.codec import DecodedTransaction
from emrchain.state import keys
from emrchain.state.application import BlockContext, writes_only_when_accepted
from emrchain.state.codes import ResultCode
from emrchain.state.emr.audit import REVIEW_TRAIL, AccessEvent, append_event
from emrchain.state.emr.context import emr_handler, require_role, require_sender, short
from emrchain.state.emr.entities import NO_KEY, read_ident, read_text
from emrchain.state.emr.tables import TransactionRefusedError
from emrchain.state.result import TxResult
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.codec import DecodeError, Reader, Writer

_EVENT_ID = slice(1, 33)
"""Where an encoded AccessEvent holds its event id (after the one-byte kind)."""


class ReviewStatus(IntEnum):
    OPEN = 1
    CLOSED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class ReviewState:
    """One review's state beside its event in the ring. Open: no outcome, no closer."""

    review_id: bytes
    """The event id: the BREAK_GLASS (or re-enrolling REGISTER_MEMBER) transaction's id."""
    sequence: int
    """The event's position in the review ring (0 = the first review the chain ever had)."""
    status: ReviewStatus = ReviewStatus.OPEN
    outcome: int = 0
    """A ReviewOutcome once closed, else 0."""
    closed_by: bytes = NO_KEY
    closed_by_organization: str = ""
    note: str = ""
    closed_height: int = 0
    closed_time_ms: int = 0

    def validate_basic(self) -> None:
        """An open review has no closing fields; a closed one names its outcome and auditor."""
        closing = (self.outcome, self.closed_by, self.closed_by_organization, self.note)
        if self.status == ReviewStatus.OPEN:
            if closing != (0, NO_KEY, "", "") or self.closed_height or self.closed_time_ms:
                raise DecodeError("ReviewState: an open review has closing fields")
        elif self.outcome not in ReviewOutcome._value2member_map_ or self.closed_by == NO_KEY:
            raise DecodeError("ReviewState: a closed review without outcome or auditor")

    def closed(
        self, outcome: ReviewOutcome, auditor: bytes, organization: str, note: str, at: BlockContext
    ) -> ReviewState:
        return replace(
            self,
            status=ReviewStatus.CLOSED,
            outcome=int(outcome),
            closed_by=auditor,
            closed_by_organization=organization,
            note=note,
            closed_height=at.height,
            closed_time_ms=at.time_ms,
        )

    def encode(self) -> bytes:
        self.validate_basic()
        writer = Writer().u64(self.sequence).u8(self.status).u8(self.outcome)
        writer.fixed(self.closed_by, 32)
        writer.var_bytes(self.closed_by_organization.encode("ascii"), 1)
        writer.var_bytes(self.note.encode("utf-8"), 2)
        return writer.u64(self.closed_height).u64(self.closed_time_ms).bytes()

    @classmethod
    def decode(cls, review_id: bytes, data: bytes) -> ReviewState:
        reader = Reader(data, "ReviewState")
        sequence = reader.u64("sequence")
        try:
            status = ReviewStatus(reader.u8("status"))
        except ValueError:
            raise DecodeError("ReviewState.status: unknown status") from None
        state = cls(
            review_id=review_id,
            sequence=sequence,
            status=status,
            outcome=reader.u8("outcome"),
            closed_by=reader.fixed(32, "closed_by"),
            closed_by_organization=read_ident(reader, "closed_by_organization", 0),
            note=read_text(reader, 2, REVIEW_NOTE_MAX_BYTES, "note"),
            closed_height=reader.u64("closed_height"),
            closed_time_ms=reader.u64("closed_time_ms"),
        )
        reader.finish()
        state.validate_basic()
        return state


def read_review_state(view: StateView, review_id: bytes) -> ReviewState | None:
    raw = view.get(keys.review_state_key(review_id))
    if raw is None:
        return None
    try:
        return ReviewState.decode(review_id, raw)
    except DecodeError as error:
        raise StateCorruptionError(f"review state {review_id.hex()}: {error}") from None


def _u64(view: StateView, key: bytes) -> int:
    raw = view.get(key)
    return 0 if raw is None else int.from_bytes(raw, "big")


def review_count(view: StateView) -> int:
    """Reviews ever appended to the queue."""
    return _u64(view, keys.REVIEW_COUNT)


def open_review_count(view: StateView) -> int:
    """Reviews in the queue (the ring's window) not yet closed."""
    return _u64(view, keys.OPEN_REVIEW_COUNT)


def _add_open(state: OverlayStateView, delta: int) -> None:
    count = open_review_count(state) + delta
    if count < 0:
        raise StateCorruptionError("the open review count went below zero")
    state.put(keys.OPEN_REVIEW_COUNT, count.to_bytes(8, "big"))


def _queue_capacity() -> int:
    """The review queue is the one trail still kept as a ring (the access trails are logs)."""
    capacity = REVIEW_TRAIL.capacity
    assert capacity is not None, "the review queue is a ring buffer"
    return capacity


def open_review(state: OverlayStateView, event: AccessEvent) -> None:
    """Append `event` (a break-glass declaration or a re-enrolment) to the review queue, open.
    When the ring is full, the review it overwrites leaves the queue with its state."""
    sequence = review_count(state)
    if sequence >= _queue_capacity():
        overwritten = state.get(REVIEW_TRAIL.slot_key(sequence))
        if overwritten is None:
            raise StateCorruptionError(f"review queue slot {sequence} is missing")
        dropped = read_review_state(state, overwritten[_EVENT_ID])
        if dropped is not None:
            state.delete(keys.review_state_key(dropped.review_id))
            if dropped.status == ReviewStatus.OPEN:
                _add_open(state, -1)
    append_event(state, REVIEW_TRAIL, event)
    state.put(keys.review_state_key(event.event_id), ReviewState(event.event_id, sequence).encode())
    _add_open(state, 1)


def review_event(view: StateView, review: ReviewState) -> AccessEvent:
    """The queued event of a review that has a state (so is still in the ring)."""
    raw = view.get(REVIEW_TRAIL.slot_key(review.sequence))
    if raw is None or raw[_EVENT_ID] != review.review_id:
        raise StateCorruptionError(f"review {review.review_id.hex()} is not in its ring slot")
    return AccessEvent.decode(raw)


@writes_only_when_accepted  # every refusal comes before the two writes
@emr_handler
def close_review(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    """An auditor (of any organisation: auditors review the whole consortium, §4) closes an
    open review with an outcome and a note."""
    auditor = require_sender(state, tx)
    require_role(auditor, {Role.AUDITOR}, "close reviews")
    review_id = tx.fields["review_id"]
    review = read_review_state(state, review_id)
    if review is None:
        raise TransactionRefusedError(
            ResultCode.REVIEW_NOT_FOUND, f"no review {short(review_id)} in the queue"
        )
    if review.status == ReviewStatus.CLOSED:
        raise TransactionRefusedError(
            ResultCode.REVIEW_ALREADY_CLOSED,
            f"review {short(review_id)} was closed at height {review.closed_height}",
        )
    outcome = ReviewOutcome(tx.fields["outcome"])
    closed = review.closed(
        outcome, auditor.member_id, auditor.organization_id, tx.fields["note"], context
    )
    state.put(keys.review_state_key(review_id), closed.encode())
    _add_open(state, -1)
    return TxResult.make(
        ResultCode.OK, f"review {short(review_id)} closed ({outcome.name.lower()})"
    )


@dataclass(frozen=True, slots=True)
class ReviewPage:
    """Reviews in queue order (oldest first) with sequence > `after`; `next_after` resumes
    the listing (None: the scan reached the newest review)."""

    reviews: tuple[tuple[ReviewState, AccessEvent], ...]
    next_after: int | None
    total: int
    open: int


REVIEW_SCAN_MAX = 4_096
"""Queue positions one listing reads at most (a filtered page may be shorter; `next_after`)."""


def list_reviews(
    view: StateView, status: ReviewStatus | None, after: int | None, limit: int
) -> ReviewPage:
    """Up to `limit` reviews (of `status`, or any) after queue position `after`, oldest first,
    reading at most REVIEW_SCAN_MAX positions."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    total = review_count(view)
    start = max(0 if after is None else after + 1, total - _queue_capacity(), 0)
    stop = min(total, start + REVIEW_SCAN_MAX)
    found: list[tuple[ReviewState, AccessEvent]] = []
    sequence = start - 1
    for sequence in range(start, stop):
        raw = view.get(REVIEW_TRAIL.slot_key(sequence))
        if raw is None:
            raise StateCorruptionError(f"review queue slot {sequence} is missing")
        review = read_review_state(view, raw[_EVENT_ID])
        if review is None or review.sequence != sequence:
            raise StateCorruptionError(f"review queue slot {sequence} has no state")
        if status is None or review.status == status:
            found.append((review, AccessEvent.decode(raw)))
            if len(found) == limit:
                break
    next_after = sequence if sequence + 1 < total else None
    return ReviewPage(tuple(found), next_after, total, open_review_count(view))
