"""Issue #21 in state: consent history with ended grants, the whole access trail, and the
patient's record index (written by the general rule and the compiled accept path alike)."""

from __future__ import annotations

import hashlib
import time

import pytest

from emrchain.schema import ErasureReason, GrantScope, TxKind
from emrchain.state import ResultCode, keys
from emrchain.state.emr import NO_KEY, grants_for
from emrchain.state.emr.access import patient_records_decision
from emrchain.state.emr.queries import access_events_for, consents_of, records_of
from emrchain.state.emr.records import GrantEnd
from tests.state.emr.world import (
    A_ADMIN,
    A_AUDITOR,
    A_CLINICIAN,
    B_ADMIN,
    B_CLINICIAN,
    OTHER_PATIENT,
    OTHER_PATIENT_ID,
    OTHER_RECORD,
    PATIENT,
    PATIENT_ID,
    RECORD,
    World,
    access_fields,
    break_glass_fields,
    digest,
    erase_fields,
    grant_fields,
)


def _walk_trail(world: World, **target: bytes) -> list[bytes]:
    """Every event id of a trail, newest first, by pages of 1,000 (the RPC maximum)."""
    event_ids: list[bytes] = []
    before = None
    while True:
        page = access_events_for(world.state, limit=1_000, before=before, **target)
        event_ids.extend(event.event_id for event in page.events)
        if page.oldest_sequence in (None, 0):
            return event_ids
        before = page.oldest_sequence


def test_a_trail_of_more_than_4096_events_is_whole_and_paginates_back_to_the_first() -> None:
    world = World()
    started = time.monotonic()
    sent: list[bytes] = []
    for _ in range(9):  # 4,500 reads in 9 blocks: more than the old ring's 4,096
        txs = [world.tx(PATIENT, TxKind.ACCESS_EVENT, access_fields()) for _ in range(500)]
        assert {result.code for result in world.block(txs)} == {ResultCode.OK}
        sent.extend(txs)
    first = access_events_for(world.state, patient_id=PATIENT_ID, limit=1)
    assert (first.total, first.dropped) == (4_500, 0)
    newest_first = _walk_trail(world, patient_id=PATIENT_ID)
    assert len(newest_first) == 4_500 == len(set(newest_first))
    assert _walk_trail(world, record_id=RECORD) == newest_first
    assert newest_first[-1] == hashlib.sha256(sent[0]).digest()  # the first event ever
    assert newest_first[0] == hashlib.sha256(sent[-1]).digest()
    # One entry per event, none overwritten: the first event's key is still there.
    assert world.state.get(keys.PATIENT_TRAIL_PREFIX + PATIENT_ID + bytes(8)) is not None
    print(f"4,500 access events executed and paginated in {time.monotonic() - started:.1f} s")


def test_a_page_before_a_sequence_outside_the_trail_is_refused() -> None:
    world = World()
    world.send_ok(PATIENT, TxKind.ACCESS_EVENT, access_fields())
    page = access_events_for(world.state, patient_id=PATIENT_ID, before=1)
    assert [event.actor for event in page.events] == [PATIENT.public_key]
    assert page.oldest_sequence == 0
    assert access_events_for(world.state, patient_id=PATIENT_ID, before=0).events == ()
    with pytest.raises(ValueError, match="not within"):
        access_events_for(world.state, patient_id=PATIENT_ID, before=2)


def test_revoked_expired_and_erased_grants_stay_in_the_consent_history() -> None:
    world = World()
    revoked_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())
    revoked_at = world.chain.height + 1
    world.send_ok(PATIENT, TxKind.REVOKE_ACCESS, {"grant_id": revoked_id})
    soon = world.chain.block_time_ms(world.chain.height + 2)
    expired_id = world.send_ok(
        PATIENT,
        TxKind.GRANT_ACCESS,
        grant_fields(PATIENT_ID, scope=GrantScope.PATIENT, expires_at_ms=soon),
    )
    world.idle()
    # The next grant prunes the expired one: it ends as EXPIRED, at the pruning block.
    erased_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())
    in_force_id = world.send_ok(
        PATIENT, TxKind.GRANT_ACCESS, grant_fields(PATIENT_ID, scope=GrantScope.PATIENT)
    )
    world.send_ok(PATIENT, TxKind.ERASE_RECORD, erase_fields())
    erased_at = world.chain.height

    history = consents_of(world.state, PATIENT_ID)
    assert history.total == 4
    assert [entry.grant.grant_id for entry in history.items] == [
        revoked_id,
        expired_id,
        erased_id,
        in_force_id,
    ]
    assert [entry.sequence for entry in history.items] == [0, 1, 2, 3]
    revoked, expired, erased, in_force = history.items
    assert revoked.ended is not None and revoked.ended.end == GrantEnd.REVOKED
    assert (revoked.ended.height, revoked.ended.ended_by) == (revoked_at, PATIENT.public_key)
    assert revoked.ended.time_ms == world.chain.block_time_ms(revoked_at)
    assert expired.ended is not None and expired.ended.end == GrantEnd.EXPIRED
    assert expired.ended.ended_by == NO_KEY and expired.grant.expires_at_ms == soon
    assert erased.ended is not None and erased.ended.end == GrantEnd.RECORD_ERASED
    assert erased.ended.height == erased_at
    assert in_force.ended is None
    # The grants in force (and their bounds) are unchanged: only the one still in force.
    assert [grant.grant_id for grant in grants_for(world.state, patient_id=PATIENT_ID)] == [
        in_force_id
    ]
    assert world.state.get(keys.grant_key(revoked_id)) is None
    # A revoked grant authorises nothing and cannot be revoked again.
    again = world.send(PATIENT, TxKind.REVOKE_ACCESS, {"grant_id": revoked_id})
    assert again.code == ResultCode.GRANT_NOT_FOUND
    # Pages: after sequence 1, two at most; after the last, none; past it, refused.
    assert [entry.sequence for entry in consents_of(world.state, PATIENT_ID, 1, 2).items] == [2, 3]
    assert consents_of(world.state, PATIENT_ID, 3).items == ()
    with pytest.raises(ValueError, match="not within"):
        consents_of(world.state, PATIENT_ID, 4)
    assert consents_of(world.state, OTHER_PATIENT_ID).total == 0


@pytest.mark.parametrize("anchor_path", [True, False], ids=["accept-path", "general-only"])
def test_the_patient_record_index_lists_records_in_anchoring_order(anchor_path: bool) -> None:
    world = World(anchor_path=anchor_path)
    more = [digest(f"indexed/{number}") for number in range(5)]
    txs = [world.tx(A_CLINICIAN, TxKind.ANCHOR_RECORD, world.anchor_fields(r)) for r in more]
    assert {result.code for result in world.block(txs)} == {ResultCode.OK}
    if anchor_path:
        assert world.chain.app.accept_path_hits >= len(more)
    world.send_ok(PATIENT, TxKind.ERASE_RECORD, erase_fields(more[1]))
    page = records_of(world.state, PATIENT_ID)
    assert page.total == 6
    assert [item.record.record_id for item in page.items] == [RECORD, *more]
    assert [item.record.is_erased for item in page.items] == [
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    assert [item.record.record_id for item in records_of(world.state, OTHER_PATIENT_ID).items] == [
        OTHER_RECORD
    ]
    second = records_of(world.state, PATIENT_ID, after=2, limit=2)
    assert [item.sequence for item in second.items] == [3, 4]
    with pytest.raises(ValueError, match="not within"):
        records_of(world.state, PATIENT_ID, after=6)
    assert records_of(world.state, digest("never registered")).items == ()


def test_both_anchor_paths_write_the_same_index() -> None:
    worlds = [World(anchor_path=True), World(anchor_path=False)]
    for world in worlds:
        records = [digest(f"same/{number}") for number in range(3)]
        world.block(
            [world.tx(A_CLINICIAN, TxKind.ANCHOR_RECORD, world.anchor_fields(r)) for r in records]
        )
    assert worlds[0].state.last_app_hash() == worlds[1].state.last_app_hash()
    assert worlds[0].chain.app.accept_path_hits > 0 == worlds[1].chain.app.accept_path_hits


def test_who_may_list_a_patients_records() -> None:
    world = World()

    def via(member) -> str:
        decision = patient_records_decision(
            world.state, member.public_key, PATIENT_ID, world.time_ms
        )
        return decision.via if decision.allowed else decision.reason_code

    assert via(PATIENT) == "patient"
    assert via(OTHER_PATIENT) == "NOT_AUTHORIZED"
    assert via(A_AUDITOR) == "auditor"
    assert via(A_ADMIN) == via(B_ADMIN) == "author_organization"  # the caller filters
    assert via(A_CLINICIAN) == "ACCESS_DENIED"  # the author of a record: it knows its ids
    world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())  # a record grant only
    assert via(B_CLINICIAN) == "ACCESS_DENIED"
    grant_id = world.send_ok(
        PATIENT, TxKind.GRANT_ACCESS, grant_fields(PATIENT_ID, scope=GrantScope.PATIENT)
    )
    assert via(B_CLINICIAN) == "grant"
    world.send_ok(PATIENT, TxKind.REVOKE_ACCESS, {"grant_id": grant_id})
    assert via(B_CLINICIAN) == "ACCESS_DENIED"
    world.send_ok(B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields())
    assert via(B_CLINICIAN) == "break_glass"
    world.send_ok(A_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields(record_id=RECORD))
    assert via(A_CLINICIAN) == "ACCESS_DENIED"  # one record's emergency lists nothing


def test_an_erasure_for_a_legal_order_keeps_the_index_entry() -> None:
    world = World()
    world.send_ok(A_ADMIN, TxKind.ERASE_RECORD, erase_fields(reason=ErasureReason.LEGAL_ORDER))
    [item] = records_of(world.state, PATIENT_ID).items
    assert item.record.is_erased and item.record.cid == b""
