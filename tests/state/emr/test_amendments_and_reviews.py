"""Amendments (AMEND_RECORD) and the review queue's open/closed state (CLOSE_REVIEW)."""

from __future__ import annotations

from typing import Any

import pytest

from emrchain.schema import AmendmentReason, ReviewOutcome, Role, TxKind
from emrchain.state import ResultCode, keys
from emrchain.state.emr import queries
from emrchain.state.emr import reviews as reviews_module
from emrchain.state.emr.amendments import MAX_AMENDMENTS_PER_RECORD, read_amendment_link
from emrchain.state.emr.audit import REVIEW_TRAIL, Trail
from emrchain.state.emr.reviews import ReviewStatus, list_reviews, read_review_state
from tests.state.emr.world import (
    A_ADMIN,
    A_AUDITOR,
    A_CLINICIAN,
    A_COLLEAGUE,
    B_AUDITOR,
    B_CLINICIAN,
    HOSPITAL_A,
    OTHER_PATIENT_ID,
    OTHER_RECORD,
    PATIENT,
    PATIENT_ID,
    RECORD,
    STRANGER,
    World,
    actor,
    break_glass_fields,
    digest,
    erase_fields,
    member_fields,
)


def amend_fields(
    world: World,
    new_id: bytes,
    supersedes: bytes = RECORD,
    reason: AmendmentReason = AmendmentReason.CORRECTION,
    patient_id: bytes = PATIENT_ID,
    note: str = "dose was 5 mg, not 50 mg",
) -> dict[str, Any]:
    fields = world.anchor_fields(new_id, patient_id)
    fields.update(supersedes=supersedes, reason=reason, note=note)
    return fields


def test_correction_links_both_records_and_supersedes_the_old_one() -> None:
    world = World()
    new = digest("record/1-corrected")
    world.send_ok(A_COLLEAGUE, TxKind.AMEND_RECORD, amend_fields(world, new))
    height = world.chain.height
    old_history = queries.record_amendments(world.state, RECORD)
    assert old_history.status == "superseded"
    assert old_history.supersedes == ()
    assert old_history.superseded_by == ((new, "correction"),)
    new_history = queries.record_history(world.state, new)
    assert new_history.status == "current"
    assert [(i.record_id, i.reason, i.note, i.height) for i in new_history.supersedes] == [
        (RECORD, "correction", "dose was 5 mg, not 50 mg", height)
    ]
    # Both records keep their data; the new one is a record like any anchored one.
    old, fresh = queries.record(world.state, RECORD), queries.record(world.state, new)
    assert old is not None and not old.is_erased and old.cid
    assert fresh is not None and fresh.patient_id == PATIENT_ID
    assert fresh.author == A_COLLEAGUE.public_key and fresh.author_organization == HOSPITAL_A


def test_addenda_stack_and_leave_the_record_current_then_a_chain_of_corrections() -> None:
    world = World()
    first, second = digest("addendum/1"), digest("addendum/2")
    for new in (first, second):
        world.send_ok(
            A_CLINICIAN,
            TxKind.AMEND_RECORD,
            amend_fields(world, new, reason=AmendmentReason.ADDENDUM, note=""),
        )
    history = queries.record_amendments(world.state, RECORD)
    assert history.status == "current"
    assert history.superseded_by == ((first, "addendum"), (second, "addendum"))
    corrected, recorrected = digest("corr/1"), digest("corr/2")
    world.send_ok(A_ADMIN, TxKind.AMEND_RECORD, amend_fields(world, corrected))
    world.send_ok(
        A_CLINICIAN,
        TxKind.AMEND_RECORD,
        amend_fields(world, recorrected, corrected, AmendmentReason.ENTERED_IN_ERROR),
    )
    assert queries.record_amendments(world.state, corrected).status == "entered-in-error"
    assert queries.record_amendments(world.state, recorrected).supersedes == (
        (corrected, "entered_in_error"),
        (RECORD, "correction"),
    )
    link = read_amendment_link(world.state, recorrected)
    assert link is not None and link.supersedes == corrected


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        (PATIENT, ResultCode.ROLE_NOT_PERMITTED),  # the patient cannot amend
        (A_AUDITOR, ResultCode.ROLE_NOT_PERMITTED),
        (B_CLINICIAN, ResultCode.NOT_AUTHOR_ORGANIZATION),  # another organisation
        (STRANGER, ResultCode.NOT_A_MEMBER),
    ],
)
def test_who_may_not_amend(sender, expected) -> None:
    world = World()
    result = world.send(sender, TxKind.AMEND_RECORD, amend_fields(world, digest("r/x")))
    assert result.code == expected, result
    assert queries.record(world.state, digest("r/x")) is None
    assert queries.record_amendments(world.state, RECORD).superseded_by == ()


def test_amendment_refusals_change_nothing() -> None:
    world = World()
    unknown = amend_fields(world, digest("r/1"), supersedes=digest("never anchored"))
    assert world.send(A_CLINICIAN, TxKind.AMEND_RECORD, unknown).code == (
        ResultCode.RECORD_NOT_FOUND
    )
    wrong_patient = amend_fields(world, digest("r/2"), patient_id=OTHER_PATIENT_ID)
    assert world.send(A_CLINICIAN, TxKind.AMEND_RECORD, wrong_patient).code == (
        ResultCode.RECORD_PATIENT_MISMATCH
    )
    duplicate = amend_fields(world, OTHER_RECORD)  # the new record id is taken
    duplicate["patient_id"] = PATIENT_ID
    assert world.send(A_CLINICIAN, TxKind.AMEND_RECORD, duplicate).code == (
        ResultCode.DUPLICATE_RECORD
    )
    bad_custody = amend_fields(world, digest("r/3"))
    bad_custody["custody"] = world.anchor_fields(digest("r/3"), PATIENT_ID, "hospital-b")["custody"]
    assert world.send(A_CLINICIAN, TxKind.AMEND_RECORD, bad_custody).code == (
        ResultCode.CUSTODY_SET_MISMATCH
    )
    for record_id in (digest("r/1"), digest("r/2"), digest("r/3")):
        assert queries.record(world.state, record_id) is None
        assert world.state.get(keys.amendment_link_key(record_id)) is None
    assert world.state.get(keys.amendment_state_key(RECORD)) is None


def test_a_superseded_or_erased_record_is_not_amended_again() -> None:
    world = World()
    world.send_ok(A_CLINICIAN, TxKind.AMEND_RECORD, amend_fields(world, digest("c/1")))
    for reason in AmendmentReason:
        again = amend_fields(world, digest(f"c/2/{reason}"), reason=reason)
        assert world.send(A_CLINICIAN, TxKind.AMEND_RECORD, again).code == (
            ResultCode.RECORD_ALREADY_SUPERSEDED
        )
    world.send_ok(PATIENT, TxKind.ERASE_RECORD, erase_fields(digest("c/1")))
    erased = amend_fields(world, digest("c/3"), supersedes=digest("c/1"))
    assert world.send(A_CLINICIAN, TxKind.AMEND_RECORD, erased).code == ResultCode.RECORD_ERASED
    # The erased correction keeps its link: the history says what happened.
    assert queries.record_amendments(world.state, digest("c/1")).supersedes == (
        (RECORD, "correction"),
    )


def test_amendments_per_record_are_bounded(monkeypatch) -> None:
    from emrchain.state.emr import amendments

    monkeypatch.setattr(amendments, "MAX_AMENDMENTS_PER_RECORD", 2)
    world = World()
    for index in range(2):
        fields = amend_fields(world, digest(f"a/{index}"), reason=AmendmentReason.ADDENDUM)
        world.send_ok(A_CLINICIAN, TxKind.AMEND_RECORD, fields)
    third = amend_fields(world, digest("a/2"), reason=AmendmentReason.ADDENDUM)
    assert world.send(A_CLINICIAN, TxKind.AMEND_RECORD, third).code == (
        ResultCode.TOO_MANY_AMENDMENTS
    )
    assert MAX_AMENDMENTS_PER_RECORD == 64


# ----------------------------------------------------------------------------- reviews


def close_fields(review_id: bytes, outcome: ReviewOutcome = ReviewOutcome.JUSTIFIED) -> dict:
    return {"review_id": review_id, "outcome": outcome, "note": "cardiac arrest, confirmed"}


def test_break_glass_opens_a_review_an_auditor_closes_once() -> None:
    world = World()
    review_id = world.send_ok(A_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields())
    opened = read_review_state(world.state, review_id)
    assert opened is not None and opened.status == ReviewStatus.OPEN and opened.sequence == 0
    assert queries.open_review_count(world.state) == 1
    page = list_reviews(world.state, ReviewStatus.OPEN, None, 10)
    assert [state.review_id for state, _ in page.reviews] == [review_id]
    assert page.reviews[0][1].reason == break_glass_fields()["reason"]
    # An auditor of another organisation than the clinician's and the patient's closes it.
    world.send_ok(B_AUDITOR, TxKind.CLOSE_REVIEW, close_fields(review_id))
    closed = read_review_state(world.state, review_id)
    assert closed is not None and closed.status == ReviewStatus.CLOSED
    assert (closed.outcome, closed.closed_by, closed.closed_height) == (
        ReviewOutcome.JUSTIFIED,
        B_AUDITOR.public_key,
        world.chain.height,
    )
    assert queries.open_review_count(world.state) == 0
    assert list_reviews(world.state, ReviewStatus.OPEN, None, 10).reviews == ()
    assert [
        s.review_id for s, _ in list_reviews(world.state, ReviewStatus.CLOSED, None, 10).reviews
    ] == [review_id]
    # Closing twice is refused and changes nothing.
    again = world.send(
        A_AUDITOR, TxKind.CLOSE_REVIEW, close_fields(review_id, ReviewOutcome.UNJUSTIFIED)
    )
    assert again.code == ResultCode.REVIEW_ALREADY_CLOSED
    assert read_review_state(world.state, review_id) == closed


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        (A_CLINICIAN, ResultCode.ROLE_NOT_PERMITTED),
        (A_ADMIN, ResultCode.ROLE_NOT_PERMITTED),
        (PATIENT, ResultCode.ROLE_NOT_PERMITTED),
        (STRANGER, ResultCode.NOT_A_MEMBER),
    ],
)
def test_only_auditors_close_reviews(sender, expected) -> None:
    world = World()
    review_id = world.send_ok(A_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields())
    assert world.send(sender, TxKind.CLOSE_REVIEW, close_fields(review_id)).code == expected
    state = read_review_state(world.state, review_id)
    assert state is not None and state.status == ReviewStatus.OPEN


def test_closing_an_unknown_review_is_refused() -> None:
    world = World()
    result = world.send(A_AUDITOR, TxKind.CLOSE_REVIEW, close_fields(digest("no review")))
    assert result.code == ResultCode.REVIEW_NOT_FOUND
    assert queries.open_review_count(world.state) == 0


def test_a_reenrolment_opens_a_review_too() -> None:
    world = World()
    world.send_ok(A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": PATIENT.public_key, "reason": ""})
    successor = actor("patient-successor")
    review_id = world.send_ok(
        A_ADMIN,
        TxKind.REGISTER_MEMBER,
        member_fields(HOSPITAL_A, successor, Role.PATIENT, PATIENT_ID),
    )
    state = read_review_state(world.state, review_id)
    assert state is not None and state.status == ReviewStatus.OPEN
    ((_, event),) = list_reviews(world.state, None, None, 10).reviews
    assert event.event_kind.name == "REENROLMENT"


def test_listing_pages_with_after_and_the_ring_drops_the_oldest_state(monkeypatch) -> None:
    small = Trail(keys.REVIEW_COUNT, keys.REVIEW_PREFIX, 3)
    monkeypatch.setattr(reviews_module, "REVIEW_TRAIL", small)
    world = World()
    ids = []
    for index in range(4):
        fields = break_glass_fields(reason=f"emergency number {index}")
        ids.append(
            world.send_ok(A_CLINICIAN if index % 2 else B_CLINICIAN, TxKind.BREAK_GLASS, fields)
        )
    world.send_ok(A_AUDITOR, TxKind.CLOSE_REVIEW, close_fields(ids[2]))
    # The first review left the ring with its state; the count of open ones followed.
    assert read_review_state(world.state, ids[0]) is None
    assert queries.open_review_count(world.state) == 2
    assert world.send(A_AUDITOR, TxKind.CLOSE_REVIEW, close_fields(ids[0])).code == (
        ResultCode.REVIEW_NOT_FOUND
    )
    first = list_reviews(world.state, ReviewStatus.OPEN, None, 1)
    assert [s.review_id for s, _ in first.reviews] == [ids[1]] and first.next_after == 1
    rest = list_reviews(world.state, ReviewStatus.OPEN, first.next_after, 10)
    assert [s.review_id for s, _ in rest.reviews] == [ids[3]] and rest.next_after is None
    assert (rest.total, rest.open) == (4, 2)
    assert REVIEW_TRAIL.capacity == 65_536


def test_stored_forms_validate_and_round_trip() -> None:
    from emrchain.state.emr.amendments import AmendmentLink, AmendmentState, RecordStatus
    from emrchain.state.emr.reviews import ReviewState
    from emrchain.types.codec import DecodeError

    review_id, record_id = digest("review"), digest("record")
    closed = ReviewState(
        review_id, 7, ReviewStatus.CLOSED, 3, A_AUDITOR.public_key, "hospital-a", "ok", 9, 10
    )
    assert ReviewState.decode(review_id, closed.encode()) == closed
    for broken in (
        ReviewState(review_id, 0, ReviewStatus.OPEN, outcome=1),
        ReviewState(review_id, 0, ReviewStatus.OPEN, note="x"),
        ReviewState(review_id, 0, ReviewStatus.CLOSED),  # no outcome, no auditor
    ):
        with pytest.raises(DecodeError):
            broken.encode()
    amended = AmendmentState(RecordStatus.SUPERSEDED, (record_id,))
    assert AmendmentState.decode(amended.encode()) == amended
    for wrong in (
        AmendmentState(RecordStatus.SUPERSEDED, ()),
        AmendmentState(RecordStatus.CURRENT, (record_id, record_id)),
    ):
        with pytest.raises(DecodeError):
            wrong.encode()
    link = AmendmentLink(record_id, RECORD, AmendmentReason.ADDENDUM, "note", 5)
    assert AmendmentLink.decode(record_id, link.encode()) == link
    with pytest.raises(DecodeError):
        AmendmentLink.decode(record_id, link.encode()[:32] + b"\x09" + link.encode()[33:])
