"""Grants: expiry at block time, revocation, organisation grantees, validation, bounds, pruning."""

from __future__ import annotations

import hashlib

import pytest

from emrchain.schema import GranteeKind, GrantScope, Role, TxKind
from emrchain.state import ResultCode, keys
from emrchain.state.emr import NO_KEY, access_events_for, grants_for, read_decision
from emrchain.state.emr import consent as consent_module
from tests.state.chain import refused_writes
from tests.state.emr.world import (
    A_ADMIN,
    A_AUDITOR,
    B_ADMIN,
    B_AUDITOR,
    B_CLINICIAN,
    HOSPITAL_B,
    OTHER_RECORD,
    PATIENT,
    PATIENT_ID,
    RECORD,
    STRANGER,
    World,
    access_fields,
    actor,
    grant_fields,
    member_fields,
)


def test_grant_is_stored_with_its_transaction_id_and_indexed_by_patient_and_record() -> None:
    world = World()
    grant_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields(expires_at_ms=1 << 60))
    [grant] = grants_for(world.state, record_id=RECORD)
    assert grant.grant_id == grant_id
    assert grants_for(world.state, patient_id=PATIENT_ID) == [grant]
    assert grant.grantor == PATIENT.public_key and grant.grantee_member == B_CLINICIAN.public_key
    assert grant.wrapped_key_sha256 == hashlib.sha256(b"\x07" * 80).digest()
    assert grant.patient_id == PATIENT_ID
    assert grant.height == world.chain.height
    with pytest.raises(ValueError, match="exactly one"):
        grants_for(world.state)
    with pytest.raises(ValueError, match="not both"):
        grants_for(world.state, patient_id=PATIENT_ID, record_id=RECORD)


def test_grant_expires_at_block_time_equal_to_its_expiry() -> None:
    world = World()
    expires_at = world.chain.block_time_ms(world.chain.height + 3)
    grant_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields(expires_at_ms=expires_at))
    # The next block is one interval before expiry: the read applies and names the grant.
    assert world.send(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields()).code == ResultCode.OK
    assert access_events_for(world.state, record_id=RECORD).events[0].grant_id == grant_id
    assert world.chain.block_time_ms(world.chain.height + 1) == expires_at
    refused = world.send(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields())
    assert refused.code == ResultCode.ACCESS_DENIED
    explicit = world.send(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields(grant_id=grant_id))
    assert explicit.code == ResultCode.GRANT_NOT_APPLICABLE
    reader = B_CLINICIAN.public_key
    assert read_decision(world.state, RECORD, reader, expires_at - 1).via == "grant"
    assert not read_decision(world.state, RECORD, reader, expires_at).allowed
    # Without a time, the expired grant is still listed until pruned; with one, it is not.
    assert len(grants_for(world.state, patient_id=PATIENT_ID)) == 1
    assert grants_for(world.state, patient_id=PATIENT_ID, time_ms=expires_at) == []


def test_expired_grants_are_pruned_when_the_patient_list_is_next_written() -> None:
    world = World()
    soon = world.chain.block_time_ms(world.chain.height + 2)
    expired_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields(expires_at_ms=soon))
    world.idle()
    world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields(member=A_AUDITOR))
    assert [g.grantee_member for g in grants_for(world.state, patient_id=PATIENT_ID)] == [
        A_AUDITOR.public_key
    ]
    assert world.state.get(keys.grant_key(expired_id)) is None
    assert world.send(PATIENT, TxKind.REVOKE_ACCESS, {"grant_id": expired_id}).code == (
        ResultCode.GRANT_NOT_FOUND
    )


@pytest.mark.parametrize(
    ("revoker", "grantor", "expected"),
    [
        (PATIENT, PATIENT, ResultCode.OK),
        (A_ADMIN, PATIENT, ResultCode.NOT_AUTHORIZED),
        (B_CLINICIAN, PATIENT, ResultCode.NOT_AUTHORIZED),  # the grantee cannot revoke
        (STRANGER, PATIENT, ResultCode.NOT_A_MEMBER),
    ],
)
def test_revocation(revoker, grantor, expected) -> None:
    world = World()
    grant_id = world.send_ok(grantor, TxKind.GRANT_ACCESS, grant_fields())
    assert world.send(revoker, TxKind.REVOKE_ACCESS, {"grant_id": grant_id}).code == expected
    allowed = read_decision(world.state, RECORD, B_CLINICIAN.public_key, world.time_ms).allowed
    assert allowed == (expected != ResultCode.OK)
    if expected == ResultCode.OK:
        assert grants_for(world.state, patient_id=PATIENT_ID) == []
        assert world.state.get(keys.record_grants_key(RECORD)) is None
        again = world.send(revoker, TxKind.REVOKE_ACCESS, {"grant_id": grant_id})
        assert again.code == ResultCode.GRANT_NOT_FOUND


def test_organisation_grant_covers_its_clinicians_only() -> None:
    world = World()
    world.send_ok(
        PATIENT,
        TxKind.GRANT_ACCESS,
        grant_fields(PATIENT_ID, scope=GrantScope.PATIENT, member=None, organization=HOSPITAL_B),
    )
    later_clinician = actor("b-clinician-2")
    world.send_ok(
        B_ADMIN, TxKind.REGISTER_MEMBER, member_fields(HOSPITAL_B, later_clinician, Role.CLINICIAN)
    )
    decisions = {
        who.label: read_decision(world.state, RECORD, who.public_key, world.time_ms)
        for who in (B_CLINICIAN, later_clinician, B_AUDITOR, B_ADMIN, A_AUDITOR)
    }
    assert {label: decision.via for label, decision in decisions.items()} == {
        "b-clinician": "grant",
        "b-clinician-2": "grant",
        "b-auditor": "none",
        "b-admin": "none",
        "a-auditor": "none",
    }
    # A whole-patient grant covers every record of the patient and no one else's.
    other = read_decision(world.state, OTHER_RECORD, B_CLINICIAN.public_key, world.time_ms)
    assert other.reason_code == "ACCESS_DENIED"


GRANT_REFUSALS = [
    (
        "member kind with an organisation too",
        {"grantee_organization": HOSPITAL_B},
        ResultCode.INVALID_GRANTEE,
    ),
    ("member kind without a member", {"grantee_member": NO_KEY}, ResultCode.INVALID_GRANTEE),
    (
        "organisation kind with a member",
        {"grantee_kind": GranteeKind.ORGANIZATION, "grantee_organization": HOSPITAL_B},
        ResultCode.INVALID_GRANTEE,
    ),
    (
        "organisation kind without an organisation",
        {"grantee_kind": GranteeKind.ORGANIZATION, "grantee_member": NO_KEY},
        ResultCode.INVALID_GRANTEE,
    ),
    (
        "unknown grantee member",
        {"grantee_member": STRANGER.public_key},
        ResultCode.GRANTEE_NOT_FOUND,
    ),
    (
        "unknown grantee organisation",
        {
            "grantee_kind": GranteeKind.ORGANIZATION,
            "grantee_member": NO_KEY,
            "grantee_organization": "nowhere",
        },
        ResultCode.GRANTEE_NOT_FOUND,
    ),
    ("expiry in the past", {"expires_at_ms": 1}, ResultCode.EXPIRY_NOT_IN_FUTURE),
    (
        "record grant without a wrap digest",
        {"wrapped_key_sha256": bytes(32)},
        ResultCode.INVALID_WRAPPED_KEY,
    ),
    (
        "patient grant with a wrapped key",
        {"scope": GrantScope.PATIENT, "target": PATIENT_ID},
        ResultCode.INVALID_WRAPPED_KEY,
    ),
    ("unknown record", {"target": b"\x09" * 32}, ResultCode.RECORD_NOT_FOUND),
]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [case[1:] for case in GRANT_REFUSALS],
    ids=[case[0] for case in GRANT_REFUSALS],
)
def test_grant_refusals(overrides, expected) -> None:
    world = World()
    fields = grant_fields()
    fields.update(overrides)
    assert world.send(PATIENT, TxKind.GRANT_ACCESS, fields).code == expected
    assert set(world.chain.built[-1].result.writes) == refused_writes(PATIENT.public_key)


def test_expiry_equal_to_block_time_is_refused() -> None:
    world = World()
    now = world.chain.block_time_ms(world.chain.height + 1)
    result = world.send(PATIENT, TxKind.GRANT_ACCESS, grant_fields(expires_at_ms=now))
    assert result.code == ResultCode.EXPIRY_NOT_IN_FUTURE


@pytest.mark.parametrize(
    ("limit_name", "fields_for"),
    [
        ("MAX_GRANTS_PER_RECORD", lambda index: grant_fields(expires_at_ms=1 << 50 | index)),
        (
            "MAX_GRANTS_PER_PATIENT",
            lambda index: grant_fields(
                PATIENT_ID, scope=GrantScope.PATIENT, expires_at_ms=1 << 50 | index
            ),
        ),
    ],
)
def test_grants_in_force_are_bounded(monkeypatch, limit_name, fields_for) -> None:
    monkeypatch.setattr(consent_module, limit_name, 2)
    world = World()
    results = [world.send(PATIENT, TxKind.GRANT_ACCESS, fields_for(index)) for index in range(3)]
    assert [result.code for result in results] == [0, 0, ResultCode.TOO_MANY_GRANTS]
    assert "limit 2" in results[2].message


def test_an_expired_grant_frees_its_slot(monkeypatch) -> None:
    monkeypatch.setattr(consent_module, "MAX_GRANTS_PER_PATIENT", 1)
    world = World()
    soon = world.chain.block_time_ms(world.chain.height + 2)
    world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields(expires_at_ms=soon))
    assert world.send(PATIENT, TxKind.GRANT_ACCESS, grant_fields()).code == ResultCode.OK


def test_explicit_grant_id_must_authorise_this_reader() -> None:
    world = World()
    grant_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())
    other = world.send(A_AUDITOR, TxKind.ACCESS_EVENT, access_fields(grant_id=grant_id))
    assert other.code == ResultCode.GRANT_NOT_APPLICABLE
    wrong_record = world.send(
        B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields(OTHER_RECORD, grant_id=grant_id)
    )
    assert wrong_record.code == ResultCode.GRANT_NOT_APPLICABLE
    assert world.send(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields(grant_id=grant_id)).code == 0
