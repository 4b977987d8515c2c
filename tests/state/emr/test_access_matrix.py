"""The role x action matrix of `docs/spec/access-control.md` §2, one row per cell and condition.

Every (role, action) pair of the matrix must appear at least once (checked below). Transaction
actions run as real signed transactions in a block; query actions call the pure query functions
on the committed state. A refused transaction must leave nothing but the block's progress write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from emrchain.schema import ErasureReason, GrantScope, Role, TxKind
from emrchain.state import ResultCode
from emrchain.state.emr import list_decision, read_decision
from tests.state.chain import refused_writes, signer, validator_update_tx
from tests.state.emr.world import (
    A_ADMIN,
    A_AUDITOR,
    A_CLINICIAN,
    A_COLLEAGUE,
    A_NURSE,
    B_CLINICIAN,
    HOSPITAL_A,
    HOSPITAL_B,
    OTHER_PATIENT_ID,
    OTHER_RECORD,
    PATIENT,
    PATIENT_ID,
    RECORD,
    ROLE_ACTORS,
    STRANGER,
    Actor,
    World,
    access_fields,
    actor,
    anchor_fields,
    break_glass_fields,
    digest,
    encryption_key,
    erase_fields,
    grant_fields,
    member_fields,
)

Act = Callable[[World, Actor], int]

ACTIONS = (
    "register organisation",
    "register member",
    "revoke member",
    "rotate key",
    "anchor",
    "grant",
    "revoke grant",
    "record access event",
    "break-glass",
    "erase",
    "read record",
    "list grants",
    "list access trail",
    "validator update",
)
QUERY_ACTIONS = {"read record", "list grants", "list access trail"}


def send(kind: TxKind, fields: dict) -> Act:
    return lambda world, sender: world.send(sender, kind, fields).code


def query(decide: Callable[[World, Actor], object]) -> Act:
    def act(world: World, sender: Actor) -> int:
        decision = decide(world, sender)
        return ResultCode[decision.reason_code]  # type: ignore[attr-defined]

    return act


def register_organisation(world: World, sender: Actor) -> int:
    fields = {"organization_id": "hospital-c", "name": "Hospital C", "encryption_key": digest("c")}
    return world.send(sender, TxKind.REGISTER_ORGANIZATION, fields).code


def register_member(organization_id: str) -> Act:
    fields = member_fields(organization_id, actor("newcomer"), Role.CLINICIAN)
    return send(TxKind.REGISTER_MEMBER, fields)


def revoke(target: Actor) -> Act:
    return send(TxKind.REVOKE_MEMBER, {"member_key": target.public_key, "reason": "left"})


def rotate_own_key(world: World, sender: Actor) -> int:
    fields = world.rotation_fields(sender, signer("rotated/" + sender.label))
    return world.send(sender, TxKind.ROTATE_KEY, fields).code


def revoke_grant_made_by(grantor: Actor) -> Act:
    def act(world: World, sender: Actor) -> int:
        grant_id = world.send_ok(grantor, TxKind.GRANT_ACCESS, grant_fields())
        return world.send(sender, TxKind.REVOKE_ACCESS, {"grant_id": grant_id}).code

    return act


def with_grant_to_sender(then: Act) -> Act:
    """The patient first grants the sender a record grant (auditor "unless granted")."""

    def act(world: World, sender: Actor) -> int:
        world.send_ok(PATIENT, TxKind.GRANT_ACCESS, grant_fields(member=sender))
        return then(world, sender)

    return act


def with_organization_grant(then: Act) -> Act:
    """The patient first grants the author's organisation (its clinicians) the record."""

    def act(world: World, sender: Actor) -> int:
        fields = grant_fields(member=None, organization=HOSPITAL_A)
        world.send_ok(PATIENT, TxKind.GRANT_ACCESS, fields)
        return then(world, sender)

    return act


def grant_on_hospital_b_record(world: World, sender: Actor) -> int:
    record_id = digest("record/b")
    world.send_ok(
        B_CLINICIAN, TxKind.ANCHOR_RECORD, anchor_fields(record_id, author_organization=HOSPITAL_B)
    )
    return world.send(sender, TxKind.GRANT_ACCESS, grant_fields(record_id)).code


def validator_update(world: World, sender: Actor) -> int:
    fields = {
        "validator_key": signer(10).public_key,
        "power": 5,
        "epoch": 1,
        "node_key": signer(11).public_key,
        "address": "",
    }
    return world.send(sender, TxKind.VALIDATOR_UPDATE, fields).code


def list_for_patient(patient_id: bytes) -> Act:
    return query(
        lambda world, sender: list_decision(world.state, sender.public_key, patient_id=patient_id)
    )


LIST_OWN_RECORD = query(
    lambda world, sender: list_decision(world.state, sender.public_key, record_id=RECORD)
)
READ_RECORD = query(
    lambda world, sender: read_decision(world.state, RECORD, sender.public_key, world.time_ms)
)

OK = ResultCode.OK
ROLE = ResultCode.ROLE_NOT_PERMITTED
DENIED = ResultCode.NOT_AUTHORIZED
ADMIN, CLINICIAN, PATIENT_ROLE, AUDITOR = Role.ADMIN, Role.CLINICIAN, Role.PATIENT, Role.AUDITOR


@dataclass(frozen=True)
class Cell:
    action: str
    role: Role
    condition: str
    expected: ResultCode
    act: Act
    sender: Actor | None = None
    """Who acts, when not the role's default actor (`ROLE_ACTORS`)."""

    @property
    def id(self) -> str:
        return f"{self.action}/{self.role.name.lower()}/{self.condition}"


def cells_for(
    action: str, act: Act, expected: dict[Role, ResultCode], condition: str
) -> list[Cell]:
    return [Cell(action, role, condition, code, act) for role, code in expected.items()]


EVERY_ROLE = (ADMIN, CLINICIAN, PATIENT_ROLE, AUDITOR)


def only(allowed: set[Role], refused: ResultCode = ROLE) -> dict[Role, ResultCode]:
    return {role: OK if role in allowed else refused for role in EVERY_ROLE}


CELLS: list[Cell] = [
    *cells_for("register organisation", register_organisation, only({ADMIN}), "new id"),
    *cells_for("register member", register_member(HOSPITAL_A), only({ADMIN}), "own organisation"),
    Cell("register member", ADMIN, "another organisation", DENIED, register_member(HOSPITAL_B)),
    *cells_for("revoke member", revoke(A_NURSE), only({ADMIN}), "member of own organisation"),
    Cell("revoke member", ADMIN, "member of another organisation", DENIED, revoke(B_CLINICIAN)),
    *cells_for("rotate key", rotate_own_key, only(set(EVERY_ROLE)), "own key, valid proof"),
    *cells_for(
        "anchor",
        send(TxKind.ANCHOR_RECORD, anchor_fields(digest("record/new"))),
        only({ADMIN, CLINICIAN}),
        "registered patient",
    ),
    *cells_for(
        "grant",
        send(TxKind.GRANT_ACCESS, grant_fields()),
        only({PATIENT_ROLE}),
        "own record / record of own organisation",
    ),
    Cell(
        "grant",
        PATIENT_ROLE,
        "to itself",
        ResultCode.INVALID_GRANTEE,
        send(TxKind.GRANT_ACCESS, grant_fields(member=PATIENT)),
    ),
    Cell(
        "grant",
        PATIENT_ROLE,
        "whole patient, self",
        OK,
        send(TxKind.GRANT_ACCESS, grant_fields(PATIENT_ID, scope=GrantScope.PATIENT)),
    ),
    Cell(
        "grant",
        ADMIN,
        "whole patient",
        ROLE,
        send(TxKind.GRANT_ACCESS, grant_fields(PATIENT_ID, scope=GrantScope.PATIENT)),
    ),
    Cell(
        "grant",
        ADMIN,
        "record of own organisation, to itself",
        ROLE,
        send(TxKind.GRANT_ACCESS, grant_fields(member=A_ADMIN)),
    ),
    Cell(
        "grant",
        PATIENT_ROLE,
        "another patient's record",
        DENIED,
        send(TxKind.GRANT_ACCESS, grant_fields(OTHER_RECORD)),
    ),
    Cell("grant", ADMIN, "record of another organisation", ROLE, grant_on_hospital_b_record),
    *cells_for(
        "revoke grant",
        revoke_grant_made_by(PATIENT),
        {ADMIN: DENIED, CLINICIAN: DENIED, PATIENT_ROLE: OK, AUDITOR: DENIED},
        "grant made by the patient",
    ),
    *cells_for(
        "record access event",
        send(TxKind.ACCESS_EVENT, access_fields()),
        {
            ADMIN: ResultCode.ACCESS_DENIED,
            CLINICIAN: OK,
            PATIENT_ROLE: OK,
            AUDITOR: ResultCode.ACCESS_DENIED,
        },
        "no grant (clinician is the author)",
    ),
    Cell(
        "record access event",
        CLINICIAN,
        "colleague of the author, no grant",
        ResultCode.ACCESS_DENIED,
        send(TxKind.ACCESS_EVENT, access_fields()),
        sender=A_COLLEAGUE,
    ),
    Cell(
        "record access event",
        CLINICIAN,
        "colleague of the author, organisation granted",
        OK,
        with_organization_grant(send(TxKind.ACCESS_EVENT, access_fields())),
        sender=A_COLLEAGUE,
    ),
    Cell(
        "record access event",
        CLINICIAN,
        "other organisation, no grant",
        ResultCode.ACCESS_DENIED,
        send(TxKind.ACCESS_EVENT, access_fields()),
        sender=B_CLINICIAN,
    ),
    Cell(
        "record access event",
        AUDITOR,
        "granted",
        OK,
        with_grant_to_sender(send(TxKind.ACCESS_EVENT, access_fields())),
    ),
    *cells_for(
        "break-glass",
        send(TxKind.BREAK_GLASS, break_glass_fields()),
        only({CLINICIAN}),
        "registered patient",
    ),
    Cell(
        "erase",
        ADMIN,
        "author organisation, legal order",
        OK,
        send(TxKind.ERASE_RECORD, erase_fields(reason=ErasureReason.LEGAL_ORDER)),
    ),
    Cell(
        "erase",
        ADMIN,
        "author organisation, entered in error",
        OK,
        send(TxKind.ERASE_RECORD, erase_fields(reason=ErasureReason.ENTERED_IN_ERROR)),
    ),
    Cell(
        "erase",
        ADMIN,
        "patient request",
        DENIED,
        send(TxKind.ERASE_RECORD, erase_fields(reason=ErasureReason.PATIENT_REQUEST)),
    ),
    Cell("erase", CLINICIAN, "author", ROLE, send(TxKind.ERASE_RECORD, erase_fields())),
    Cell(
        "erase",
        PATIENT_ROLE,
        "own record, patient request",
        OK,
        send(TxKind.ERASE_RECORD, erase_fields()),
    ),
    Cell(
        "erase",
        PATIENT_ROLE,
        "own record, legal order",
        DENIED,
        send(TxKind.ERASE_RECORD, erase_fields(reason=ErasureReason.LEGAL_ORDER)),
    ),
    Cell(
        "erase",
        PATIENT_ROLE,
        "another patient's record",
        DENIED,
        send(TxKind.ERASE_RECORD, erase_fields(OTHER_RECORD)),
    ),
    Cell("erase", AUDITOR, "any record", ROLE, send(TxKind.ERASE_RECORD, erase_fields())),
    *cells_for(
        "read record",
        READ_RECORD,
        {
            ADMIN: ResultCode.ACCESS_DENIED,
            CLINICIAN: OK,
            PATIENT_ROLE: OK,
            AUDITOR: ResultCode.ACCESS_DENIED,
        },
        "no grant (clinician is the author)",
    ),
    Cell("read record", AUDITOR, "granted", OK, with_grant_to_sender(READ_RECORD)),
    Cell(
        "read record",
        CLINICIAN,
        "colleague of the author, no grant",
        ResultCode.ACCESS_DENIED,
        READ_RECORD,
        A_COLLEAGUE,
    ),
    Cell(
        "read record",
        CLINICIAN,
        "colleague of the author, organisation granted",
        OK,
        with_organization_grant(READ_RECORD),
        A_COLLEAGUE,
    ),
    Cell(
        "read record",
        CLINICIAN,
        "other organisation, no grant",
        ResultCode.ACCESS_DENIED,
        READ_RECORD,
        B_CLINICIAN,
    ),
    Cell(
        "read record",
        CLINICIAN,
        "other organisation, granted",
        OK,
        with_grant_to_sender(READ_RECORD),
        B_CLINICIAN,
    ),
]
for listing in ("list grants", "list access trail"):
    CELLS += [
        *cells_for(
            listing,
            list_for_patient(PATIENT_ID),
            {ADMIN: DENIED, CLINICIAN: ROLE, PATIENT_ROLE: OK, AUDITOR: OK},
            "a patient",
        ),
        Cell(listing, ADMIN, "a record of own organisation", OK, LIST_OWN_RECORD),
        Cell(listing, PATIENT_ROLE, "own record", OK, LIST_OWN_RECORD),
        Cell(listing, PATIENT_ROLE, "another patient", DENIED, list_for_patient(OTHER_PATIENT_ID)),
        Cell(
            listing,
            AUDITOR,
            "another organisation's patient",
            OK,
            list_for_patient(PATIENT_ID),
            A_AUDITOR,
        ),
    ]
CELLS += cells_for(
    "validator update", validator_update, only(set(), ResultCode.NOT_A_VALIDATOR), "not a validator"
)


def test_every_role_and_action_has_a_cell() -> None:
    covered = {(cell.action, cell.role) for cell in CELLS}
    missing = [(a, r.name) for a in ACTIONS for r in EVERY_ROLE if (a, r) not in covered]
    assert not missing
    assert {cell.action for cell in CELLS} == set(ACTIONS)


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.id)
def test_matrix_cell(cell: Cell) -> None:
    world = World()
    sender = cell.sender or ROLE_ACTORS[cell.role]
    code = cell.act(world, sender)
    assert code == cell.expected, cell.id
    if cell.action not in QUERY_ACTIONS and code != ResultCode.OK:
        # A refused transaction changes nothing but its sender's nonce, which it consumes.
        assert set(world.chain.built[-1].result.writes) == refused_writes(sender.public_key)


# Who the sender is comes first: the same refusal whatever the action.
SENDER_ACTIONS: dict[str, tuple[TxKind, dict]] = {
    "register organisation": (
        TxKind.REGISTER_ORGANIZATION,
        {"organization_id": "hospital-c", "name": "C", "encryption_key": digest("c")},
    ),
    "register member": (
        TxKind.REGISTER_MEMBER,
        member_fields(HOSPITAL_A, actor("newcomer"), Role.CLINICIAN),
    ),
    "revoke member": (TxKind.REVOKE_MEMBER, {"member_key": A_NURSE.public_key, "reason": ""}),
    "rotate key": (
        TxKind.ROTATE_KEY,
        {
            "new_member_key": signer("fresh").public_key,
            "new_encryption_key": encryption_key("f"),
            "proof": b"\x01" * 64,
        },
    ),
    "anchor": (TxKind.ANCHOR_RECORD, anchor_fields(digest("record/new"))),
    "grant": (TxKind.GRANT_ACCESS, grant_fields()),
    "revoke grant": (TxKind.REVOKE_ACCESS, {"grant_id": digest("grant")}),
    "record access event": (TxKind.ACCESS_EVENT, access_fields()),
    "break-glass": (TxKind.BREAK_GLASS, break_glass_fields()),
    "erase": (TxKind.ERASE_RECORD, erase_fields()),
}


def _revoked_clinician(world: World) -> Actor:
    world.send_ok(
        A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": A_CLINICIAN.public_key, "reason": ""}
    )
    return A_CLINICIAN


def _rotated_away_key(world: World) -> Actor:
    world.send_ok(
        A_CLINICIAN, TxKind.ROTATE_KEY, world.rotation_fields(A_CLINICIAN, signer("new-key"))
    )
    return A_CLINICIAN


@pytest.mark.parametrize("action", sorted(SENDER_ACTIONS))
@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (lambda world: STRANGER, ResultCode.NOT_A_MEMBER),
        (_revoked_clinician, ResultCode.MEMBER_REVOKED),
        (_rotated_away_key, ResultCode.KEY_ROTATED),
    ],
    ids=["not a member", "revoked member", "rotated-away key"],
)
def test_sender_identity_is_checked_before_anything_else(action, who, expected) -> None:
    world = World()
    sender = who(world)
    kind, fields = SENDER_ACTIONS[action]
    assert world.send(sender, kind, fields).code == expected
    # Refused, yet the (stranger's, revoked or rotated-away) key consumed its nonce.
    assert set(world.chain.built[-1].result.writes) == refused_writes(sender.public_key)


def test_queries_refuse_unknown_rotated_and_revoked_keys_alike() -> None:
    world = World()
    for decide in (
        lambda key: read_decision(world.state, RECORD, key, world.time_ms),
        lambda key: list_decision(world.state, key, patient_id=PATIENT_ID),
    ):
        assert decide(STRANGER.public_key).reason_code == "NOT_A_MEMBER"
    _rotated_away_key(world)
    assert read_decision(
        world.state, RECORD, A_CLINICIAN.public_key, world.time_ms
    ).reason_code == ("KEY_ROTATED")
    world.send_ok(A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": A_AUDITOR.public_key, "reason": ""})
    assert list_decision(world.state, A_AUDITOR.public_key, patient_id=PATIENT_ID).reason_code == (
        "MEMBER_REVOKED"
    )


def test_validators_still_approve_validator_updates_without_being_members() -> None:
    world = World()
    # 3 of the 4 genesis validators (power 1 each) approve: more than 2/3.
    txs = [validator_update_tx(signer(index), 1, signer(10).public_key, 5, 1) for index in range(3)]
    results = world.block(txs)
    assert [result.code for result in results] == [ResultCode.OK] * 3
    assert "takes effect at height" in results[2].message
