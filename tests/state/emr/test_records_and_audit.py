"""Anchors, access trails, break-glass and erasure."""

from __future__ import annotations

import pytest

from emrchain.schema import AccessAction, ErasureReason, GrantScope, RecordType, TxKind
from emrchain.state import ResultCode, keys
from emrchain.state.emr import (
    AccessBasis,
    EventKind,
    access_events_for,
    break_glass_reviews,
    grants_for,
    is_erased,
    read_decision,
    record,
)
from emrchain.state.emr import clinical as clinical_module
from emrchain.state.emr.audit import Trail, append_event, read_trail
from emrchain.state.view import OverlayStateView
from tests.state.emr.world import (
    A_ADMIN,
    A_AUDITOR,
    A_CLINICIAN,
    A_NURSE,
    B_ADMIN,
    B_CLINICIAN,
    HOSPITAL_A,
    OTHER_RECORD,
    PATIENT,
    PATIENT_ID,
    RECORD,
    STRANGER,
    World,
    access_fields,
    anchor_fields,
    break_glass_fields,
    digest,
    erase_fields,
    grant_fields,
)


def test_anchor_stores_author_organisation_patient_and_block() -> None:
    world = World()
    stored = record(world.state, RECORD)
    fields = anchor_fields(RECORD)
    assert stored is not None and not stored.is_erased
    assert (stored.patient_id, stored.ciphertext_sha256, stored.cid) == (
        PATIENT_ID,
        fields["ciphertext_sha256"],
        fields["cid"],
    )
    assert (stored.author, stored.author_organization) == (A_CLINICIAN.public_key, HOSPITAL_A)
    assert stored.record_type == RecordType.LAB_RESULT and stored.size_bytes == 2048
    assert (stored.height, stored.time_ms) == (2, world.chain.block_time_ms(2))
    assert record(world.state, digest("never")) is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (anchor_fields(RECORD), ResultCode.DUPLICATE_RECORD),
        (
            anchor_fields(digest("record/x"), digest("unknown patient")),
            ResultCode.PATIENT_NOT_REGISTERED,
        ),
    ],
)
def test_anchor_refusals(fields, expected) -> None:
    world = World()
    assert world.send(A_CLINICIAN, TxKind.ANCHOR_RECORD, fields).code == expected


@pytest.mark.parametrize(
    ("sender", "fields", "expected"),
    [
        (STRANGER, anchor_fields(digest("r/s")), ResultCode.NOT_A_MEMBER),
        (PATIENT, anchor_fields(digest("r/p")), ResultCode.ROLE_NOT_PERMITTED),
        (A_NURSE, anchor_fields(digest("r/n")), ResultCode.MEMBER_REVOKED),
        (A_CLINICIAN, anchor_fields(RECORD), ResultCode.DUPLICATE_RECORD),
        (
            A_CLINICIAN,
            anchor_fields(digest("r/u"), digest("unknown patient")),
            ResultCode.PATIENT_NOT_REGISTERED,
        ),
    ],
)
def test_a_refused_anchor_writes_nothing_but_its_nonce(sender, fields, expected) -> None:
    # ANCHOR_RECORD runs on the block's overlay (writes_only_when_accepted): a refusal at any
    # of its checks must leave only the block's progress and the consumed nonce behind.
    world = World()
    if sender is A_NURSE:
        revocation = {"member_key": A_NURSE.public_key, "reason": ""}
        world.send_ok(A_ADMIN, TxKind.REVOKE_MEMBER, revocation)
    built = world.chain.add_block([world.tx(sender, TxKind.ANCHOR_RECORD, fields)])
    assert [result.code for result in built.result.tx_results] == [expected]
    assert set(built.result.writes) == {keys.PROGRESS, keys.nonce_key(sender.public_key)}


def test_record_limit_per_patient(monkeypatch) -> None:
    monkeypatch.setattr(clinical_module, "MAX_RECORDS_PER_PATIENT", 2)
    world = World()  # the patient has one record
    first = world.send(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor_fields(digest("r/2")))
    second = world.send(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor_fields(digest("r/3")))
    assert (first.code, second.code) == (ResultCode.OK, ResultCode.RECORD_LIMIT_REACHED)


def test_access_events_are_indexed_per_record_and_per_patient_newest_first() -> None:
    world = World()
    world.send_ok(PATIENT, TxKind.ACCESS_EVENT, access_fields())
    export = access_fields()
    export["action"] = AccessAction.EXPORT
    event_id = world.send_ok(A_CLINICIAN, TxKind.ACCESS_EVENT, export)
    trail = access_events_for(world.state, patient_id=PATIENT_ID)
    assert (trail.total, trail.dropped) == (2, 0)
    newest = trail.events[0]
    assert (newest.event_id, newest.actor, newest.action, newest.basis) == (
        event_id,
        A_CLINICIAN.public_key,
        AccessAction.EXPORT,
        AccessBasis.AUTHOR,
    )
    assert trail.events[1].basis == AccessBasis.PATIENT
    assert access_events_for(world.state, record_id=RECORD) == trail
    assert access_events_for(world.state, record_id=OTHER_RECORD).total == 0
    assert access_events_for(world.state, patient_id=PATIENT_ID, limit=1).events == (newest,)


def test_trail_keeps_the_newest_events_and_counts_the_dropped() -> None:
    world = World()
    state = OverlayStateView(world.state)
    trail = Trail(b"\x7e", b"\x7f", 3)
    for _ in range(5):
        world.send_ok(PATIENT, TxKind.ACCESS_EVENT, access_fields())
    events = access_events_for(world.state, patient_id=PATIENT_ID).events[::-1]
    for event in events:
        append_event(state, trail, event)
    page = read_trail(state, trail, 10)
    assert (page.total, page.dropped) == (5, 2)
    assert page.events == tuple(reversed(events[2:]))
    assert len([key for key in state.writes() if key.startswith(b"\x7f")]) == 3


def test_break_glass_opens_time_boxed_access_visible_in_the_patient_trail_with_reason() -> None:
    world = World()
    reason = "cardiac arrest, patient unresponsive"
    assert not read_decision(world.state, RECORD, B_CLINICIAN.public_key, world.time_ms).allowed
    event_id = world.send_ok(
        B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields(reason=reason, duration_ms=2_500)
    )
    opened_at = world.time_ms
    [declaration] = access_events_for(world.state, patient_id=PATIENT_ID).events
    assert declaration.event_kind == EventKind.BREAK_GLASS and declaration.flagged_for_review
    assert (declaration.reason, declaration.actor, declaration.expires_at_ms) == (
        reason,
        B_CLINICIAN.public_key,
        opened_at + 2_500,
    )
    assert break_glass_reviews(world.state).events == (declaration,)
    decision = read_decision(world.state, RECORD, B_CLINICIAN.public_key, world.time_ms)
    assert (decision.via, decision.grant_id) == ("break_glass", event_id)
    # A read under break-glass is recorded and flagged too (next block: opened_at + 1000).
    world.send_ok(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields())
    read_event = access_events_for(world.state, patient_id=PATIENT_ID).events[0]
    assert read_event.basis == AccessBasis.BREAK_GLASS and read_event.flagged_for_review
    # Other clinicians gain nothing; the session ends at opened_at + 2500 (block opened_at + 3000).
    assert not read_decision(world.state, RECORD, A_AUDITOR.public_key, world.time_ms).allowed
    world.idle()
    refused = world.send(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields())
    assert refused.code == ResultCode.ACCESS_DENIED
    late = read_decision(world.state, RECORD, B_CLINICIAN.public_key, opened_at + 2_500)
    assert late.reason_code == "ACCESS_DENIED"


def test_break_glass_on_one_record_covers_only_that_record() -> None:
    world = World()
    second = digest("record/3")
    world.send_ok(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor_fields(second))
    world.send_ok(B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields(record_id=RECORD))
    reader = B_CLINICIAN.public_key
    assert read_decision(world.state, RECORD, reader, world.time_ms).via == "break_glass"
    assert not read_decision(world.state, second, reader, world.time_ms).allowed
    assert access_events_for(world.state, record_id=RECORD).total == 1


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (break_glass_fields(digest("nobody")), ResultCode.PATIENT_NOT_REGISTERED),
        (break_glass_fields(record_id=OTHER_RECORD), ResultCode.RECORD_PATIENT_MISMATCH),
        (break_glass_fields(record_id=digest("missing")), ResultCode.RECORD_NOT_FOUND),
    ],
)
def test_break_glass_refusals(fields, expected) -> None:
    world = World()
    assert world.send(B_CLINICIAN, TxKind.BREAK_GLASS, fields).code == expected


def test_break_glass_sessions_are_bounded_and_expired_ones_pruned(monkeypatch) -> None:
    monkeypatch.setattr(clinical_module, "MAX_BREAK_GLASS_SESSIONS_PER_PATIENT", 1)
    world = World()
    world.send_ok(B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields(duration_ms=1_500))
    full = world.send(A_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields())
    assert full.code == ResultCode.TOO_MANY_BREAK_GLASS
    world.idle()  # the first session is over by the next block
    assert world.send(A_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields()).code == 0


def test_erasure_keeps_the_anchor_hash_and_makes_every_read_gone() -> None:
    world = World()
    grant_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())
    patient_grant = world.send_ok(
        PATIENT, TxKind.GRANT_ACCESS, grant_fields(PATIENT_ID, scope=GrantScope.PATIENT)
    )
    world.send_ok(PATIENT, TxKind.ACCESS_EVENT, access_fields())
    before = record(world.state, RECORD)
    world.send_ok(A_ADMIN, TxKind.ERASE_RECORD, erase_fields(reason=ErasureReason.LEGAL_ORDER))
    after = record(world.state, RECORD)
    assert before is not None and after is not None and is_erased(world.state, RECORD)
    assert after.cid == b"" and after.ciphertext_sha256 == before.ciphertext_sha256
    assert (after.erasure_reason, after.erased_by, after.erased_height) == (
        ErasureReason.LEGAL_ORDER,
        A_ADMIN.public_key,
        world.chain.height,
    )
    # The record grant (its wrapped key) is gone; the whole-patient grant stays.
    assert world.state.get(keys.grant_key(grant_id)) is None
    assert [g.grant_id for g in grants_for(world.state, patient_id=PATIENT_ID)] == [patient_grant]
    for reader in (PATIENT, A_CLINICIAN, B_CLINICIAN):
        decision = read_decision(world.state, RECORD, reader.public_key, world.time_ms)
        assert decision.reason_code == "RECORD_ERASED"
    assert access_events_for(world.state, record_id=RECORD).total == 1  # the audit stays
    refusals = [
        world.send(PATIENT, TxKind.ACCESS_EVENT, access_fields()).code,
        world.send(PATIENT, TxKind.GRANT_ACCESS, grant_fields()).code,
        world.send(PATIENT, TxKind.ERASE_RECORD, erase_fields()).code,
        world.send(B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields(record_id=RECORD)).code,
    ]
    assert refusals == [ResultCode.RECORD_ERASED] * 4
    assert not is_erased(world.state, OTHER_RECORD) and not is_erased(world.state, digest("x"))


def test_erased_record_id_cannot_be_anchored_again() -> None:
    world = World()
    world.send_ok(PATIENT, TxKind.ERASE_RECORD, erase_fields())
    again = world.send(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor_fields(RECORD))
    assert again.code == ResultCode.DUPLICATE_RECORD


def test_erasure_of_unknown_record_and_other_organisation() -> None:
    world = World()
    unknown = world.send(PATIENT, TxKind.ERASE_RECORD, erase_fields(digest("missing")))
    assert unknown.code == ResultCode.RECORD_NOT_FOUND
    other_org = world.send(
        B_ADMIN, TxKind.ERASE_RECORD, erase_fields(reason=ErasureReason.ENTERED_IN_ERROR)
    )
    assert other_org.code == ResultCode.NOT_AUTHORIZED
    assert not is_erased(world.state, RECORD)
