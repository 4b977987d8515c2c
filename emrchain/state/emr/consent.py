"""Consent: GRANT_ACCESS and REVOKE_ACCESS, and the grant indexes they maintain.

A grant stays under its id (0x40) only while it may still be in force: it leaves when revoked,
when its record is erased, and when it has expired and its patient's grant list is next written
(at block time, so every node prunes identically); it is then kept as an ended grant for the
patient's consent history (`history.py`), which names every grant ever made. Each patient's
list holds every grant in force naming the patient (both scopes, at most
MAX_GRANTS_PER_PATIENT); each record's list its record-scope grants in force (at most
MAX_GRANTS_PER_RECORD). Rules: `docs/spec/access-control.md` §3.6–3.7.
"""

from __future__ import annotations

from emrchain.schema import GranteeKind, GrantScope, Role
from emrchain.schema.codec import DecodedTransaction
from emrchain.state import keys
from emrchain.state.application import BlockContext
from emrchain.state.codes import ResultCode
from emrchain.state.emr.context import (
    emr_handler,
    require_role,
    require_sender,
    short,
    transaction_id,
)
from emrchain.state.emr.entities import NO_KEY, Member
from emrchain.state.emr.history import append_consent, end_grant
from emrchain.state.emr.limits import MAX_GRANTS_PER_PATIENT, MAX_GRANTS_PER_RECORD
from emrchain.state.emr.records import Grant, GrantEnd
from emrchain.state.emr.tables import (
    TransactionRefusedError,
    member_of_key,
    read_grant,
    read_organization,
    read_patient_grant_ids,
    read_record,
    read_record_grant_ids,
    write_ids,
)
from emrchain.state.result import TxResult
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import OverlayStateView


def grantee_grant_key(grant: Grant) -> bytes:
    """The grant's entry in its grantee's index (0x45), present exactly while 0x40 is."""
    if grant.grantee_kind == GranteeKind.MEMBER:
        grantee = grant.grantee_member
    else:
        grantee = grant.grantee_organization.encode("ascii")
    return keys.grantee_grant_key(grant.grantee_kind, grantee, grant.grant_id)


def remove_grant(
    state: OverlayStateView, grant: Grant, end: GrantEnd, ended_by: bytes, at: tuple[int, int]
) -> None:
    """Take a grant out of force and out of the lists that name it; keep it, with how it
    ended (`end`, by member `ended_by`, at block (height, time_ms) `at`), for the history."""
    state.delete(keys.grant_key(grant.grant_id))
    state.delete(grantee_grant_key(grant))
    end_grant(state, grant, end, ended_by, at)
    patient_ids = read_patient_grant_ids(state, grant.patient_id)
    write_ids(
        state,
        keys.patient_grants_key(grant.patient_id),
        [grant_id for grant_id in patient_ids if grant_id != grant.grant_id],
    )
    if grant.scope == GrantScope.RECORD:
        record_ids = read_record_grant_ids(state, grant.target)
        write_ids(
            state,
            keys.record_grants_key(grant.target),
            [grant_id for grant_id in record_ids if grant_id != grant.grant_id],
        )


def prune_expired_grants(state: OverlayStateView, patient_id: bytes, at: tuple[int, int]) -> None:
    """Remove the patient's grants that are over at block (height, time_ms) `at`."""
    _, time_ms = at
    for grant_id in read_patient_grant_ids(state, patient_id):
        grant = read_grant(state, grant_id)
        if grant is None:
            raise StateCorruptionError("a patient grant list names a grant that is not stored")
        if not grant.in_force(time_ms):
            remove_grant(state, grant, GrantEnd.EXPIRED, NO_KEY, at)


def _grant_target(
    state: OverlayStateView, sender: Member, scope: GrantScope, target: bytes
) -> bytes:
    """Check the sender (a patient) may grant on `target`; return the patient id the grant
    concerns."""
    if scope == GrantScope.PATIENT:
        if sender.patient_id != target:
            raise TransactionRefusedError(
                ResultCode.NOT_AUTHORIZED, "a patient grants access to itself only"
            )
        return target
    record = read_record(state, target)
    if record is None:
        raise TransactionRefusedError(
            ResultCode.RECORD_NOT_FOUND, f"record {short(target)} is not anchored"
        )
    if record.is_erased:
        raise TransactionRefusedError(ResultCode.RECORD_ERASED, f"record {short(target)} is erased")
    if sender.patient_id != record.patient_id:
        raise TransactionRefusedError(
            ResultCode.NOT_AUTHORIZED, "the record belongs to another patient"
        )
    return record.patient_id


def _grantee(
    state: OverlayStateView, sender: Member, tx: DecodedTransaction
) -> tuple[GranteeKind, bytes, str]:
    """(kind, grantee member id or zeros, grantee organisation id or "")."""
    kind = GranteeKind(tx.fields["grantee_kind"])
    member_key = tx.fields["grantee_member"]
    organization_id = tx.fields["grantee_organization"]
    if kind == GranteeKind.MEMBER:
        if member_key == NO_KEY or organization_id:
            raise TransactionRefusedError(
                ResultCode.INVALID_GRANTEE,
                "a member grant names grantee_member and leaves grantee_organization empty",
            )
        grantee = member_of_key(state, member_key)
        if grantee is None or grantee.current_key != member_key or not grantee.is_active:
            raise TransactionRefusedError(
                ResultCode.GRANTEE_NOT_FOUND,
                f"{short(member_key)} is not the current key of an active member",
            )
        if grantee.member_id == sender.member_id:
            raise TransactionRefusedError(
                ResultCode.INVALID_GRANTEE, "a member does not grant itself access"
            )
        return kind, grantee.member_id, ""
    if member_key != NO_KEY or not organization_id:
        raise TransactionRefusedError(
            ResultCode.INVALID_GRANTEE,
            "an organisation grant names grantee_organization and leaves grantee_member zero",
        )
    if read_organization(state, organization_id) is None:
        raise TransactionRefusedError(
            ResultCode.GRANTEE_NOT_FOUND, f"organisation {organization_id} is not registered"
        )
    return kind, NO_KEY, organization_id


@emr_handler
def grant_access(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    sender = require_sender(state, tx)
    # Consent is the patient's: an admin granting would let one admin open any record of its
    # organisation to a member it registered itself (access-control.md §3.6).
    require_role(sender, {Role.PATIENT}, "grant access")
    scope = GrantScope(tx.fields["scope"])
    target = tx.fields["target"]
    patient_id = _grant_target(state, sender, scope, target)
    grantee_kind, grantee_member, grantee_organization = _grantee(state, sender, tx)
    expires_at_ms = tx.fields["expires_at_ms"]
    if expires_at_ms != 0 and expires_at_ms <= context.time_ms:
        raise TransactionRefusedError(
            ResultCode.EXPIRY_NOT_IN_FUTURE,
            f"expires_at_ms {expires_at_ms} is not after the block time {context.time_ms}",
        )
    wrapped_key_sha256 = tx.fields["wrapped_key_sha256"]
    if (wrapped_key_sha256 == NO_KEY) == (scope == GrantScope.RECORD):
        raise TransactionRefusedError(
            ResultCode.INVALID_WRAPPED_KEY,
            "a record grant names the SHA-256 of the grantee's wrap; a patient grant names none "
            "(zeros)",
        )
    prune_expired_grants(state, patient_id, (context.height, context.time_ms))
    patient_ids = read_patient_grant_ids(state, patient_id)
    if len(patient_ids) >= MAX_GRANTS_PER_PATIENT:
        raise TransactionRefusedError(
            ResultCode.TOO_MANY_GRANTS,
            f"the patient has {len(patient_ids)} grants in force (limit {MAX_GRANTS_PER_PATIENT})",
        )
    grant_id = transaction_id(tx)
    if scope == GrantScope.RECORD:
        record_ids = read_record_grant_ids(state, target)
        if len(record_ids) >= MAX_GRANTS_PER_RECORD:
            raise TransactionRefusedError(
                ResultCode.TOO_MANY_GRANTS,
                f"the record has {len(record_ids)} grants in force (limit {MAX_GRANTS_PER_RECORD})",
            )
        write_ids(state, keys.record_grants_key(target), [*record_ids, grant_id])
    write_ids(state, keys.patient_grants_key(patient_id), [*patient_ids, grant_id])
    grant = Grant(
        grant_id=grant_id,
        scope=scope,
        target=target,
        patient_id=patient_id,
        grantee_kind=grantee_kind,
        grantee_member=grantee_member,
        grantee_organization=grantee_organization,
        grantor=sender.member_id,
        expires_at_ms=expires_at_ms,
        wrapped_key_sha256=wrapped_key_sha256,
        height=context.height,
        time_ms=context.time_ms,
    )
    state.put(keys.grant_key(grant_id), grant.encode())
    state.put(grantee_grant_key(grant), patient_id)
    append_consent(state, patient_id, grant_id)
    return TxResult.make(ResultCode.OK, f"grant {grant_id.hex()} in force")


@emr_handler
def revoke_access(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    sender = require_sender(state, tx)
    grant_id = tx.fields["grant_id"]
    grant = read_grant(state, grant_id)
    if grant is None:
        raise TransactionRefusedError(
            ResultCode.GRANT_NOT_FOUND,
            f"no grant {short(grant_id)} in force (never made, revoked, expired and pruned, or "
            "its record erased)",
        )
    is_grantor = grant.grantor == sender.member_id
    is_patient = sender.role == Role.PATIENT and sender.patient_id == grant.patient_id
    if not (is_grantor or is_patient):
        raise TransactionRefusedError(
            ResultCode.NOT_AUTHORIZED, "only the grantor or the patient may revoke a grant"
        )
    remove_grant(
        state, grant, GrantEnd.REVOKED, sender.member_id, (context.height, context.time_ms)
    )
    return TxResult.make(ResultCode.OK, f"grant {short(grant_id)} revoked")
