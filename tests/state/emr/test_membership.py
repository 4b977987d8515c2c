"""Organisations, members, key rotation, genesis organisations, determinism and encodings."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from emrchain.crypto.keycheck import is_prime_order_key
from emrchain.schema import Role, TxKind, codec
from emrchain.state import BlockExecutionError, ResultCode, keys
from emrchain.state.emr import (
    NO_KEY,
    GenesisAdmin,
    access_events_for,
    break_glass_reviews,
    key_history,
    member,
    organisation,
    read_decision,
)
from emrchain.state.emr.audit import AccessBasis, EventKind
from emrchain.state.emr.context import transaction_id
from emrchain.state.emr.entities import KeyHistoryEntry, Member, MemberStatus, Organization
from emrchain.types import DecodeError
from tests.state.chain import CHAIN_ID, ChainBuilder, refused_writes, signer
from tests.state.emr.world import (
    A_ADMIN,
    A_CLINICIAN,
    A_NURSE,
    B_ADMIN,
    B_CLINICIAN,
    HOSPITAL_A,
    HOSPITAL_B,
    OTHER_PATIENT,
    PATIENT,
    PATIENT_ID,
    RECORD,
    World,
    access_fields,
    actor,
    anchor_fields,
    digest,
    encryption_key,
    genesis_organizations,
    grant_fields,
    member_fields,
)

MIXED_ORDER_KEY = bytes.fromhex("63754eb748861a32358958a0f6026b3796e7ddfdbe7283f78eefd504c9d7f75e")
"""From tests/vectors/ed25519_edge.json: canonical, not small-order, yet not prime-order."""
NEWCOMER = actor("newcomer")


def test_genesis_organisations_and_admins_exist_from_height_zero() -> None:
    world = World(setup=False)
    found = organisation(world.state, HOSPITAL_A)
    assert found is not None
    assert (found.name, found.admin_count, found.member_count, found.sponsor_organization) == (
        "Hospital A",
        1,
        1,
        "",
    )
    admin = member(world.state, A_ADMIN.public_key)
    assert admin is not None and admin.is_current_key
    assert (admin.member.role, admin.member.organization_id, admin.member.registered_by) == (
        Role.ADMIN,
        HOSPITAL_A,
        NO_KEY,
    )
    assert organisation(world.state, "nowhere") is None
    assert organisation(world.state, "Not An Id!") is None


def test_genesis_without_organisations_writes_only_the_pipelines_state() -> None:
    plain = ChainBuilder(organizations=())
    assert set(plain.genesis.writes) == {
        keys.PROGRESS,
        keys.VALIDATORS_NEXT,
        keys.VALIDATORS_AFTER_NEXT,
    }


def _admin(key: bytes) -> GenesisAdmin:
    return GenesisAdmin(key, encryption_key("admin"))


GENESIS_ERRORS = [
    ("repeated id", lambda orgs: [orgs[0], replace(orgs[1], organization_id=HOSPITAL_A)], "repeat"),
    ("bad id", lambda orgs: [replace(orgs[0], organization_id="Hospital A")], "not 1..64"),
    ("empty name", lambda orgs: [replace(orgs[0], name="")], "name"),
    ("zero encryption key", lambda orgs: [replace(orgs[0], encryption_key=NO_KEY)], "encryption"),
    ("no admin", lambda orgs: [replace(orgs[0], admins=())], "at least one admin"),
    (
        "admin in two organisations",
        lambda orgs: [orgs[0], replace(orgs[1], admins=orgs[0].admins)],
        "repeats",
    ),
    (
        "mixed-order admin key",
        lambda orgs: [replace(orgs[0], admins=(_admin(MIXED_ORDER_KEY),))],
        "prime-order",
    ),
]


@pytest.mark.parametrize(
    ("change", "message"),
    [case[1:] for case in GENESIS_ERRORS],
    ids=[case[0] for case in GENESIS_ERRORS],
)
def test_invalid_genesis_organisations_are_refused(change, message) -> None:
    organizations = change(genesis_organizations())
    with pytest.raises(BlockExecutionError, match=message):
        ChainBuilder(organizations=organizations)


REGISTRATION_REFUSALS = [
    (
        "unknown organisation",
        A_ADMIN,
        {"organization_id": "nowhere"},
        ResultCode.ORGANIZATION_NOT_FOUND,
    ),
    (
        "key of an existing member",
        A_ADMIN,
        {"member_key": A_CLINICIAN.public_key},
        ResultCode.KEY_IN_USE,
    ),
    ("mixed-order key", A_ADMIN, {"member_key": MIXED_ORDER_KEY}, ResultCode.INVALID_MEMBER_KEY),
    ("patient without patient id", A_ADMIN, {"role": Role.PATIENT}, ResultCode.PATIENT_ID_MISMATCH),
    (
        "clinician with a patient id",
        A_ADMIN,
        {"patient_id": digest("p")},
        ResultCode.PATIENT_ID_MISMATCH,
    ),
    (
        "patient id of an active patient",
        A_ADMIN,
        {"role": Role.PATIENT, "patient_id": PATIENT_ID},
        ResultCode.PATIENT_ID_IN_USE,
    ),
    ("admin of another organisation", B_ADMIN, {}, ResultCode.NOT_AUTHORIZED),
]


@pytest.mark.parametrize(
    ("sender", "overrides", "expected"),
    [case[1:] for case in REGISTRATION_REFUSALS],
    ids=[case[0] for case in REGISTRATION_REFUSALS],
)
def test_registration_refusals(sender, overrides, expected) -> None:
    world = World()
    fields = member_fields(HOSPITAL_A, NEWCOMER, Role.CLINICIAN)
    fields.update(overrides)
    assert world.send(sender, TxKind.REGISTER_MEMBER, fields).code == expected
    assert set(world.chain.built[-1].result.writes) == refused_writes(sender.public_key)


def test_registered_member_is_stored_and_counted() -> None:
    world = World()
    found = member(world.state, PATIENT.public_key)
    assert found is not None
    assert (found.member.role, found.member.patient_id, found.member.registered_by) == (
        Role.PATIENT,
        PATIENT_ID,
        A_ADMIN.public_key,
    )
    assert found.member.encryption_key == encryption_key("patient")
    hospital_a = organisation(world.state, HOSPITAL_A)
    assert hospital_a is not None and (hospital_a.admin_count, hospital_a.member_count) == (1, 7)


def test_new_organisation_gets_its_first_admin_from_its_sponsor_only() -> None:
    world = World()
    fields = {"organization_id": "clinic-c", "name": "Clinic C", "encryption_key": digest("c")}
    world.send_ok(A_ADMIN, TxKind.REGISTER_ORGANIZATION, fields)
    again = world.send(B_ADMIN, TxKind.REGISTER_ORGANIZATION, fields)
    assert again.code == ResultCode.DUPLICATE_ORGANIZATION
    c_admin, c_clinician = actor("c-admin"), actor("c-clinician")
    attempts = [
        (B_ADMIN, member_fields("clinic-c", c_admin, Role.ADMIN), ResultCode.NOT_AUTHORIZED),
        (
            A_ADMIN,
            member_fields("clinic-c", c_clinician, Role.CLINICIAN),
            ResultCode.NOT_AUTHORIZED,
        ),
        (A_ADMIN, member_fields("clinic-c", c_admin, Role.ADMIN), ResultCode.OK),
        # Once the organisation has an admin, the sponsor's role is over.
        (
            A_ADMIN,
            member_fields("clinic-c", actor("c-admin-2"), Role.ADMIN),
            ResultCode.NOT_AUTHORIZED,
        ),
        (c_admin, member_fields("clinic-c", c_clinician, Role.CLINICIAN), ResultCode.OK),
    ]
    for sender, member_payload, expected in attempts:
        assert world.send(sender, TxKind.REGISTER_MEMBER, member_payload).code == expected
    found = organisation(world.state, "clinic-c")
    assert found is not None and found.sponsor_organization == HOSPITAL_A
    assert (found.admin_count, found.member_count) == (1, 2)


def test_organisation_limit(monkeypatch) -> None:
    from emrchain.state.emr import membership

    monkeypatch.setattr(membership, "MAX_ORGANIZATIONS", 3)
    world = World()
    results = [
        world.send(
            A_ADMIN,
            TxKind.REGISTER_ORGANIZATION,
            {"organization_id": f"clinic-{index}", "name": "C", "encryption_key": digest("c")},
        ).code
        for index in range(2)
    ]
    assert results == [ResultCode.OK, ResultCode.ORGANIZATION_LIMIT_REACHED]


def test_revocation_rules() -> None:
    world = World()
    revoke = TxKind.REVOKE_MEMBER
    steps = [
        (A_ADMIN, A_NURSE, ResultCode.OK),
        (A_ADMIN, A_NURSE, ResultCode.MEMBER_ALREADY_REVOKED),
        (A_ADMIN, actor("nobody"), ResultCode.MEMBER_NOT_FOUND),
        (A_ADMIN, A_ADMIN, ResultCode.LAST_ADMIN),
    ]
    for sender, target, expected in steps:
        result = world.send(sender, revoke, {"member_key": target.public_key, "reason": "left"})
        assert result.code == expected, (target.label, result)
    revoked = member(world.state, A_NURSE.public_key)
    assert revoked is not None and revoked.member.status == MemberStatus.REVOKED
    assert (revoked.member.revoked_by, revoked.member.revoke_reason) == (A_ADMIN.public_key, "left")
    # With a second admin, the first may step down; then it can no longer act.
    second = actor("a-admin-2")
    world.send_ok(A_ADMIN, TxKind.REGISTER_MEMBER, member_fields(HOSPITAL_A, second, Role.ADMIN))
    world.send_ok(A_ADMIN, revoke, {"member_key": A_ADMIN.public_key, "reason": ""})
    assert world.send(second, revoke, {"member_key": second.public_key, "reason": ""}).code == (
        ResultCode.LAST_ADMIN
    )


def test_revoked_grantee_and_revoked_patient_lose_access_and_patient_id_can_be_reenrolled() -> None:
    world = World()
    world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())
    world.send_ok(
        B_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": B_CLINICIAN.public_key, "reason": ""}
    )
    world.send_ok(A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": PATIENT.public_key, "reason": ""})
    for reader in (B_CLINICIAN, PATIENT):
        decision = read_decision(world.state, RECORD, reader.public_key, world.time_ms)
        assert decision.reason_code == "MEMBER_REVOKED"
    returning = actor("patient-new-device")
    fields = member_fields(HOSPITAL_B, returning, Role.PATIENT, PATIENT_ID)
    registration_id = world.send_ok(B_ADMIN, TxKind.REGISTER_MEMBER, fields)
    # The earlier records open to the new holder on B_ADMIN's word alone: flagged, and the
    # re-enrolment itself is in the patient's trail and the auditors' review queue.
    earlier = read_decision(world.state, RECORD, returning.public_key, world.time_ms)
    assert earlier.via == "reenrolled_patient"
    for trail in (
        access_events_for(world.state, patient_id=PATIENT_ID),
        break_glass_reviews(world.state),
    ):
        newest = trail.events[0]
        assert newest.event_kind == EventKind.REENROLMENT and newest.flagged_for_review
        assert (newest.event_id, newest.actor) == (registration_id, B_ADMIN.public_key)
        assert newest.grant_id == returning.public_key
    later_record = digest("record/after-reenrolment")
    world.send_ok(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor_fields(later_record))
    later = read_decision(world.state, later_record, returning.public_key, world.time_ms)
    assert later.via == "patient"
    world.send_ok(returning, TxKind.ACCESS_EVENT, access_fields())
    read = access_events_for(world.state, record_id=RECORD).events[0]
    assert read.basis == AccessBasis.REENROLLED_PATIENT and read.flagged_for_review


def test_a_first_patient_member_reads_unflagged() -> None:
    """The re-enrolment flag cannot fire for a patient id's first holder: its records are all
    anchored after its registration (the control for the test above)."""
    world = World()
    world.send_ok(PATIENT, TxKind.ACCESS_EVENT, access_fields())
    read = access_events_for(world.state, record_id=RECORD).events[0]
    assert read.basis == AccessBasis.PATIENT and not read.flagged_for_review
    assert all(
        event.event_kind != EventKind.REENROLMENT
        for event in access_events_for(world.state, patient_id=PATIENT_ID).events
    )


def test_key_rotation_moves_the_member_to_the_new_key() -> None:
    world = World()
    world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())  # grant to B_CLINICIAN
    new_key = signer("b-clinician/rotated")
    fields = world.rotation_fields(B_CLINICIAN, new_key)
    world.send_ok(B_CLINICIAN, TxKind.ROTATE_KEY, fields)
    rotated_at = world.chain.height
    old, new = member(world.state, B_CLINICIAN.public_key), member(world.state, new_key.public_key)
    assert old is not None and new is not None and old.member == new.member
    assert (old.is_current_key, new.is_current_key) == (False, True)
    assert new.member.encryption_key == fields["new_encryption_key"]
    assert key_history(world.state, new_key.public_key) == [
        KeyHistoryEntry(B_CLINICIAN.public_key, 1, world.chain.block_time_ms(1)),
        KeyHistoryEntry(new_key.public_key, rotated_at, world.chain.block_time_ms(rotated_at)),
    ]
    # The old key can no longer sign; the new key starts its own nonces and keeps the grant.
    assert world.send(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields()).code == (
        ResultCode.KEY_ROTATED
    )
    assert world.send(new_key, TxKind.ACCESS_EVENT, access_fields()).code == ResultCode.OK
    assert read_decision(world.state, RECORD, new_key.public_key, world.time_ms).via == "grant"
    # Grants must name the current key.
    stale = world.send(PATIENT, TxKind.GRANT_ACCESS, grant_fields(member=B_CLINICIAN))
    assert stale.code == ResultCode.GRANTEE_NOT_FOUND


ROTATION_REFUSALS = [
    (
        "proof signed by another key",
        lambda w: w.rotation_fields(PATIENT, signer("new"), proof_by=signer("other")),
        ResultCode.INVALID_ROTATION_PROOF,
    ),
    (
        "proof for another old key",
        lambda w: w.rotation_fields(OTHER_PATIENT, signer("new")),
        ResultCode.INVALID_ROTATION_PROOF,
    ),
    (
        "proof over another encryption key",
        lambda w: {**w.rotation_fields(PATIENT, signer("new")), "new_encryption_key": digest("e")},
        ResultCode.INVALID_ROTATION_PROOF,
    ),
    (
        "new key already a member's",
        lambda w: w.rotation_fields(PATIENT, A_CLINICIAN.key),
        ResultCode.KEY_IN_USE,
    ),
    (
        "new key is own current key",
        lambda w: w.rotation_fields(PATIENT, PATIENT.key),
        ResultCode.KEY_IN_USE,
    ),
]


@pytest.mark.parametrize(
    ("make_fields", "expected"),
    [case[1:] for case in ROTATION_REFUSALS],
    ids=[case[0] for case in ROTATION_REFUSALS],
)
def test_rotation_refusals(make_fields, expected) -> None:
    world = World()
    assert world.send(PATIENT, TxKind.ROTATE_KEY, make_fields(world)).code == expected
    assert member(world.state, PATIENT.public_key).is_current_key  # type: ignore[union-attr]


def test_proof_for_another_chain_is_refused() -> None:
    from emrchain.state.emr import rotation_message

    world = World()
    new = signer("new")
    fields = world.rotation_fields(PATIENT, new)
    message = rotation_message(
        b"other-chain", PATIENT.public_key, new.public_key, fields["new_encryption_key"]
    )
    fields["proof"] = new.sign(message)
    assert world.send(PATIENT, TxKind.ROTATE_KEY, fields).code == ResultCode.INVALID_ROTATION_PROOF


def test_rotated_away_key_cannot_come_back() -> None:
    world = World()
    first = signer("first")
    world.send_ok(PATIENT, TxKind.ROTATE_KEY, world.rotation_fields(PATIENT, first))
    from tests.state.emr.world import Actor

    current = Actor(first, "patient")
    back = world.send(first, TxKind.ROTATE_KEY, world.rotation_fields(current, PATIENT.key))
    assert back.code == ResultCode.KEY_IN_USE


def test_key_history_is_bounded(monkeypatch) -> None:
    from emrchain.state.emr import membership
    from tests.state.emr.world import Actor

    monkeypatch.setattr(membership, "MAX_KEYS_PER_MEMBER", 2)
    world = World()
    first = signer("k1")
    world.send_ok(PATIENT, TxKind.ROTATE_KEY, world.rotation_fields(PATIENT, first))
    result = world.send(
        first, TxKind.ROTATE_KEY, world.rotation_fields(Actor(first, "patient"), signer("k2"))
    )
    assert result.code == ResultCode.KEY_HISTORY_FULL


def test_same_blocks_give_the_same_app_hash_and_state() -> None:
    first, second = World(), World()
    assert first.state.last_app_hash() == second.state.last_app_hash()
    for world in (first, second):
        world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())
        world.send_ok(B_CLINICIAN, TxKind.ACCESS_EVENT, access_fields())
        world.send(A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": A_ADMIN.public_key, "reason": ""})
    assert [b.result for b in first.chain.built] == [b.result for b in second.chain.built]
    assert list(first.state.items()) == list(second.state.items())
    assert first.state.last_app_hash() == second.state.last_app_hash()
    # A different block (another grant expiry) changes the app hash.
    third = World()
    third.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields(expires_at_ms=1 << 60))
    assert third.chain.built[-1].result.app_hash != first.chain.built[-3].result.app_hash


def test_transaction_id_is_sha256_of_the_transaction_bytes() -> None:
    world = World()
    raw = world.tx(PATIENT, TxKind.GRANT_ACCESS, grant_fields())
    decoded = codec.decode_transaction(raw, CHAIN_ID, 4096)
    assert transaction_id(decoded) == hashlib.sha256(raw).digest()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (signer("any").public_key, True),
        (MIXED_ORDER_KEY, False),
        ((1).to_bytes(32, "little"), False),  # the identity point
        (((1 << 255) - 20).to_bytes(32, "little"), False),  # y = p - 1: order 2
        (((1 << 255) - 1).to_bytes(32, "little"), False),  # not canonical (y >= p)
        (bytes.fromhex("02" + "00" * 31), False),  # y = 2 is not on the curve
        (b"\x01" * 31, False),
    ],
)
def test_prime_order_key_check(key: bytes, expected: bool) -> None:
    assert is_prime_order_key(key) is expected


def test_state_entities_round_trip() -> None:
    organization = Organization(HOSPITAL_A, "Hôpital A", digest("k"), "sponsor", 2, 9, 3, 4)
    assert Organization.decode(HOSPITAL_A, organization.encode()) == organization
    revoked = Member(
        digest("m"),
        HOSPITAL_B,
        Role.PATIENT,
        digest("p"),
        digest("c"),
        digest("e"),
        MemberStatus.REVOKED,
        3,
        digest("r"),
        5,
        digest("by"),
        6,
        "moved away",
    )
    assert Member.decode(digest("m"), revoked.encode()) == revoked
    with pytest.raises(DecodeError):
        Member.decode(digest("m"), revoked.encode() + b"\x00")
    unknown_role = bytearray(revoked.encode())
    unknown_role[1 + len(HOSPITAL_B)] = 9  # the byte after the organisation id
    with pytest.raises(DecodeError, match="role"):
        Member.decode(digest("m"), bytes(unknown_role))
