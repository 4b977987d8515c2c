"""Organisations and members: REGISTER_ORGANIZATION, REGISTER_MEMBER, REVOKE_MEMBER, ROTATE_KEY.

Rules (`docs/spec/access-control.md` §3): an admin registers organisations (its own organisation
becomes the sponsor) and members of its own organisation; while an organisation has no admin,
the sponsor organisation's admins may register its first admin. Patients carry a nonzero
patient id pseudonym, every other role none. Every member key must be a prime-order Ed25519 key
never used by any member before. A member rotates its own key with a proof of possession by the
new key.
"""

from __future__ import annotations

from dataclasses import replace

from emrchain.crypto.keycheck import is_prime_order_key
from emrchain.crypto.keys import verify_signature
from emrchain.schema import Role
from emrchain.schema.codec import DecodedTransaction
from emrchain.state.application import BlockContext
from emrchain.state.codes import ResultCode
from emrchain.state.emr.audit import (
    AccessBasis,
    EventKind,
    append_event,
    declaration,
    patient_trail,
)
from emrchain.state.emr.context import (
    emr_handler,
    require_role,
    require_sender,
    short,
    transaction_id,
)
from emrchain.state.emr.custody import add_organization_id
from emrchain.state.emr.entities import (
    NO_KEY,
    KeyHistoryEntry,
    Member,
    MemberStatus,
    Organization,
    PatientEntry,
)
from emrchain.state.emr.limits import (
    MAX_KEYS_PER_MEMBER,
    MAX_MEMBERS_PER_ORGANIZATION,
    MAX_ORGANIZATIONS,
)
from emrchain.state.emr.reviews import open_review
from emrchain.state.emr.tables import (
    TransactionRefusedError,
    member_id_of_key,
    member_of_key,
    read_member,
    read_organization,
    read_organization_count,
    read_patient,
    write_key_history,
    write_member,
    write_organization,
    write_organization_count,
    write_patient,
)
from emrchain.state.result import TxResult
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.signing import Domain, signed_message


@emr_handler
def register_organization(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    sender = require_sender(state, tx)
    require_role(sender, {Role.ADMIN}, "register organisations")
    organization_id = tx.fields["organization_id"]
    if read_organization(state, organization_id) is not None:
        raise TransactionRefusedError(
            ResultCode.DUPLICATE_ORGANIZATION, f"organisation {organization_id} already exists"
        )
    count = read_organization_count(state)
    if count >= MAX_ORGANIZATIONS:
        raise TransactionRefusedError(
            ResultCode.ORGANIZATION_LIMIT_REACHED,
            f"{count} organisations are registered (limit {MAX_ORGANIZATIONS})",
        )
    write_organization(
        state,
        Organization(
            organization_id=organization_id,
            name=tx.fields["name"],
            encryption_key=tx.fields["encryption_key"],
            sponsor_organization=sender.organization_id,
            admin_count=0,
            member_count=0,
            height=context.height,
            time_ms=context.time_ms,
        ),
    )
    write_organization_count(state, count + 1)
    add_organization_id(state, organization_id)
    return TxResult.make(
        ResultCode.OK,
        f"organisation {organization_id} registered; admins of {sender.organization_id} "
        "may register its first admin",
    )


def _check_registrar(sender: Member, organization: Organization, role: Role) -> None:
    """An admin registers members of its own organisation; the sponsor's admins may register
    the first admin of an organisation that has none."""
    if sender.organization_id == organization.organization_id:
        return
    sponsoring = (
        organization.admin_count == 0
        and organization.sponsor_organization == sender.organization_id
    )
    if sponsoring and role == Role.ADMIN:
        return
    if sponsoring:
        raise TransactionRefusedError(
            ResultCode.NOT_AUTHORIZED,
            f"as sponsor of {organization.organization_id} you may register only its first "
            "admin; its admins register everyone else",
        )
    raise TransactionRefusedError(
        ResultCode.NOT_AUTHORIZED,
        f"an admin of {sender.organization_id} cannot register members of "
        f"{organization.organization_id}",
    )


def _check_new_key(view: StateView, key: bytes, what: str) -> None:
    if member_id_of_key(view, key) is not None:
        raise TransactionRefusedError(
            ResultCode.KEY_IN_USE, f"{what} {short(key)} is or was a member key"
        )
    if not is_prime_order_key(key):
        raise TransactionRefusedError(
            ResultCode.INVALID_MEMBER_KEY,
            f"{what} {short(key)} is not an Ed25519 key of the prime-order subgroup",
        )


@emr_handler
def register_member(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    sender = require_sender(state, tx)
    require_role(sender, {Role.ADMIN}, "register members")
    organization_id = tx.fields["organization_id"]
    organization = read_organization(state, organization_id)
    if organization is None:
        raise TransactionRefusedError(
            ResultCode.ORGANIZATION_NOT_FOUND, f"organisation {organization_id} is not registered"
        )
    role = Role(tx.fields["role"])
    _check_registrar(sender, organization, role)
    if organization.member_count >= MAX_MEMBERS_PER_ORGANIZATION:
        raise TransactionRefusedError(
            ResultCode.MEMBER_LIMIT_REACHED,
            f"{organization_id} has registered {organization.member_count} members "
            f"(limit {MAX_MEMBERS_PER_ORGANIZATION})",
        )
    member_key = tx.fields["member_key"]
    _check_new_key(state, member_key, "member key")
    patient_id = tx.fields["patient_id"]
    if (role == Role.PATIENT) != (patient_id != NO_KEY):
        raise TransactionRefusedError(
            ResultCode.PATIENT_ID_MISMATCH,
            "a patient needs a nonzero patient_id and every other role a zero one",
        )
    if role == Role.PATIENT:
        entry = read_patient(state, patient_id)
        if entry is not None:
            holder = read_member(state, entry.member_id)
            if holder is not None and holder.is_active:
                raise TransactionRefusedError(
                    ResultCode.PATIENT_ID_IN_USE,
                    f"patient id {short(patient_id)} belongs to active member "
                    f"{short(holder.current_key)}",
                )
        # A revoked holder's patient id passes to the new member, with its record count.
        record_count = 0 if entry is None else entry.record_count
        write_patient(state, patient_id, PatientEntry(member_key, record_count))
        if entry is not None:
            _record_reenrolment(state, context, transaction_id(tx), sender, patient_id, member_key)
    write_member(
        state,
        Member(
            member_id=member_key,
            organization_id=organization_id,
            role=role,
            patient_id=patient_id,
            current_key=member_key,
            encryption_key=tx.fields["encryption_key"],
            status=MemberStatus.ACTIVE,
            key_count=1,
            registered_by=sender.member_id,
            height=context.height,
        ),
    )
    write_key_history(
        state, member_key, 0, KeyHistoryEntry(member_key, context.height, context.time_ms)
    )
    write_organization(state, organization.with_counts(int(role == Role.ADMIN), 1))
    return TxResult.make(
        ResultCode.OK, f"{role.name.lower()} {short(member_key)} registered in {organization_id}"
    )


def _record_reenrolment(
    state: OverlayStateView,
    context: BlockContext,
    event_id: bytes,
    admin: Member,
    patient_id: bytes,
    new_holder: bytes,
) -> None:
    """The new holder of a patient id reads the patient's earlier records on one admin's
    identity proofing: the patient's trail and the auditors' review queue say so, flagged."""
    event = declaration(
        EventKind.REENROLMENT,
        event_id,
        admin,
        patient_id,
        NO_KEY,
        AccessBasis.REENROLLED_PATIENT,
        new_holder,
        (context.height, context.time_ms),
    )
    append_event(state, patient_trail(patient_id), event)
    open_review(state, event)


@emr_handler
def revoke_member(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    sender = require_sender(state, tx)
    require_role(sender, {Role.ADMIN}, "revoke members")
    target_key = tx.fields["member_key"]
    # Any key the member ever had names it: an admin may only know an older one.
    target = member_of_key(state, target_key)
    if target is None:
        raise TransactionRefusedError(
            ResultCode.MEMBER_NOT_FOUND, f"{short(target_key)} is not a member key"
        )
    if target.organization_id != sender.organization_id:
        raise TransactionRefusedError(
            ResultCode.NOT_AUTHORIZED,
            f"the member belongs to {target.organization_id}; an admin of "
            f"{sender.organization_id} cannot revoke it",
        )
    if not target.is_active:
        raise TransactionRefusedError(
            ResultCode.MEMBER_ALREADY_REVOKED,
            f"member {short(target.member_id)} was revoked at height {target.revoked_height}",
        )
    organization = read_organization(state, target.organization_id)
    if organization is None:
        raise TransactionRefusedError(
            ResultCode.ORGANIZATION_NOT_FOUND, "the member's organisation is missing"
        )
    is_admin = target.role == Role.ADMIN
    if is_admin and organization.admin_count <= 1:
        raise TransactionRefusedError(
            ResultCode.LAST_ADMIN,
            f"{short(target.member_id)} is the last admin of {organization.organization_id}",
        )
    write_member(
        state,
        replace(
            target,
            status=MemberStatus.REVOKED,
            revoked_by=sender.member_id,
            revoked_height=context.height,
            revoke_reason=tx.fields["reason"],
        ),
    )
    write_organization(state, organization.with_counts(-int(is_admin), 0))
    return TxResult.make(ResultCode.OK, f"member {short(target.member_id)} revoked")


def rotation_message(
    chain_id: bytes, old_key: bytes, new_key: bytes, new_encryption_key: bytes
) -> bytes:
    """What the new key signs to prove possession (domain KEY_ROTATION, bound to the chain and
    to the key it replaces, so a proof cannot be replayed for another member or chain)."""
    return signed_message(Domain.KEY_ROTATION, chain_id, old_key + new_key + new_encryption_key)


@emr_handler
def rotate_key(tx: DecodedTransaction, state: OverlayStateView, context: BlockContext) -> TxResult:
    sender = require_sender(state, tx)
    if sender.key_count >= MAX_KEYS_PER_MEMBER:
        raise TransactionRefusedError(
            ResultCode.KEY_HISTORY_FULL,
            f"the member has had {sender.key_count} keys (limit {MAX_KEYS_PER_MEMBER}); "
            "an admin must register it anew",
        )
    new_key = tx.fields["new_member_key"]
    new_encryption_key = tx.fields["new_encryption_key"]
    _check_new_key(state, new_key, "new member key")
    message = rotation_message(context.chain_id, tx.sender, new_key, new_encryption_key)
    if not verify_signature(new_key, message, tx.fields["proof"]):
        raise TransactionRefusedError(
            ResultCode.INVALID_ROTATION_PROOF,
            "proof is not the new key's signature over old key | new key | new encryption key",
        )
    write_key_history(
        state,
        sender.member_id,
        sender.key_count,
        KeyHistoryEntry(new_key, context.height, context.time_ms),
    )
    write_member(
        state,
        replace(
            sender,
            current_key=new_key,
            encryption_key=new_encryption_key,
            key_count=sender.key_count + 1,
        ),
    )
    return TxResult.make(
        ResultCode.OK,
        f"member {short(sender.member_id)} now signs with {short(new_key)}; "
        f"{short(tx.sender)} is retired",
    )
