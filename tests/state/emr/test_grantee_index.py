"""The grantee index (0x45, issue #23 "shared with me"): an entry per grant in force under its
grantee, written by GRANT_ACCESS and deleted on every path that takes a grant out of force."""

from __future__ import annotations

from emrchain.schema import GranteeKind, GrantScope, TxKind
from emrchain.state import keys
from tests.state.emr.world import (
    A_AUDITOR,
    B_CLINICIAN,
    HOSPITAL_B,
    PATIENT,
    PATIENT_ID,
    World,
    erase_fields,
    grant_fields,
)


def _member_entry(world: World, grant_id: bytes, member: bytes) -> bytes | None:
    return world.state.get(keys.grantee_grant_key(GranteeKind.MEMBER, member, grant_id))


def test_a_member_grant_is_indexed_under_the_member_until_revoked() -> None:
    world = World()
    grant_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())
    assert _member_entry(world, grant_id, B_CLINICIAN.public_key) == PATIENT_ID
    world.send_ok(PATIENT, TxKind.REVOKE_ACCESS, {"grant_id": grant_id})
    assert _member_entry(world, grant_id, B_CLINICIAN.public_key) is None


def test_an_organisation_grant_is_indexed_under_the_padded_organisation_id() -> None:
    world = World()
    fields = grant_fields(
        PATIENT_ID, scope=GrantScope.PATIENT, member=None, organization=HOSPITAL_B
    )
    grant_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, fields)
    key = keys.grantee_grant_key(GranteeKind.ORGANIZATION, HOSPITAL_B.encode(), grant_id)
    assert len(key) == 1 + 1 + keys.GRANTEE_FIELD_BYTES + 32
    assert world.state.get(key) == PATIENT_ID
    # Not under a member whose id were the organisation's bytes: the kind byte differs.
    assert _member_entry(world, grant_id, HOSPITAL_B.encode()) is None
    world.send_ok(PATIENT, TxKind.REVOKE_ACCESS, {"grant_id": grant_id})
    assert world.state.get(key) is None


def test_an_expired_grant_leaves_the_index_when_pruned() -> None:
    world = World()
    soon = world.chain.block_time_ms(world.chain.height + 2)
    expired_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields(expires_at_ms=soon))
    world.idle()
    assert _member_entry(world, expired_id, B_CLINICIAN.public_key) == PATIENT_ID  # not pruned
    kept_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields(member=A_AUDITOR))
    assert world.state.get(keys.grant_key(expired_id)) is None
    assert _member_entry(world, expired_id, B_CLINICIAN.public_key) is None
    assert _member_entry(world, kept_id, A_AUDITOR.public_key) == PATIENT_ID


def test_erasing_the_record_removes_its_grants_from_the_index() -> None:
    world = World()
    grant_id = world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields())
    world.send_ok(PATIENT, TxKind.ERASE_RECORD, erase_fields())
    assert world.state.get(keys.grant_key(grant_id)) is None
    assert _member_entry(world, grant_id, B_CLINICIAN.public_key) is None
