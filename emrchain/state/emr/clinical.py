"""Records and their use: ANCHOR_RECORD, ERASE_RECORD, ACCESS_EVENT, BREAK_GLASS.

Rules: `docs/spec/access-control.md` §3.5, §3.8–3.10. Access events and break-glass
declarations are appended to the patient's trail and (when they concern one record) to the
record's; break-glass declarations also to the auditors' review queue.
"""

from __future__ import annotations

from typing import Any

from emrchain.schema import ErasureReason, Role
from emrchain.schema.anchor import anchored_message
from emrchain.schema.codec import DecodedTransaction
from emrchain.state import keys
from emrchain.state.application import BlockContext, writes_only_when_accepted
from emrchain.state.codes import ResultCode
from emrchain.state.emr.access import decide_access, member_status
from emrchain.state.emr.audit import (
    AccessBasis,
    AccessEvent,
    EventKind,
    append_event,
    declaration,
    patient_trail,
    record_trail,
)
from emrchain.state.emr.consent import remove_grant
from emrchain.state.emr.context import (
    emr_handler,
    require_role,
    require_sender,
    short,
    transaction_id,
)
from emrchain.state.emr.custody import (
    RecordCustody,
    custody_nameable,
    custody_set_for,
    decode_custody_entries,
    encode_receipts,
    read_erasure_receipts,
    read_record_custody,
    write_record_custody,
)
from emrchain.state.emr.entities import NO_KEY, Member
from emrchain.state.emr.limits import MAX_BREAK_GLASS_SESSIONS_PER_PATIENT

# Re-exported: the application gives the accept path the limit this module's rule reads.
from emrchain.state.emr.limits import MAX_RECORDS_PER_PATIENT as MAX_RECORDS_PER_PATIENT
from emrchain.state.emr.records import BreakGlassSession, EmrRecord, GrantEnd, encode_record
from emrchain.state.emr.reviews import open_review
from emrchain.state.emr.tables import (
    TransactionRefusedError,
    read_grant,
    read_patient,
    read_patient_fields,
    read_record,
    read_record_grant_ids,
    read_sessions,
    write_patient_fields,
    write_record,
    write_sessions,
)
from emrchain.state.result import TxResult
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.codec import DecodeError

_ANCHOR_ROLES = frozenset((Role.CLINICIAN, Role.ADMIN))
_OK = int(ResultCode.OK)


@writes_only_when_accepted  # every refusal below comes before the writes at the end
@emr_handler
def anchor_record(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    # The hot path of the chain (issue #7): the record is encoded straight from the fields
    # rather than through an EmrRecord, and the patient entry's fields are updated without
    # building PatientEntry objects.
    # `record_type` needs no RecordType() round trip: the stateless check admits only its
    # values.
    sender = require_sender(state, tx)
    require_role(sender, _ANCHOR_ROLES, "anchor records")
    record_id = tx.fields["record_id"]
    anchor_new_record(state, tx.fields, sender, context)
    # The message is short, so TxResult.make would not cut it.
    return TxResult(_OK, anchored_message(record_id))


def anchor_new_record(
    state: OverlayStateView, fields: dict[str, Any], sender: Member, context: BlockContext
) -> None:
    """Check and write the new record an ANCHOR_RECORD or AMEND_RECORD carries (the payload's
    record fields, `schema.PAYLOAD_SCHEMAS_ANCHOR`) for a sender already checked to be an active
    clinician or admin. Every refusal comes before the first write."""
    record_id = fields["record_id"]
    if read_record(state, record_id) is not None:
        raise TransactionRefusedError(
            ResultCode.DUPLICATE_RECORD, f"record {record_id.hex()} is already anchored"
        )
    patient_id = fields["patient_id"]
    patient = read_patient_fields(state, patient_id)
    if patient is None:
        raise TransactionRefusedError(
            ResultCode.PATIENT_NOT_REGISTERED, f"patient id {short(patient_id)} is not registered"
        )
    holder, record_count = patient
    if record_count >= MAX_RECORDS_PER_PATIENT:
        raise TransactionRefusedError(
            ResultCode.RECORD_LIMIT_REACHED,
            f"{record_count} records are anchored for this patient "
            f"(limit {MAX_RECORDS_PER_PATIENT})",
        )
    custody = _checked_custody(state, fields, sender)
    state.put(
        keys.emr_record_key(record_id),
        encode_record(
            patient_id,
            fields["ciphertext_sha256"],
            fields["cid"],
            fields["record_type"],
            fields["size_bytes"],
            sender.member_id,
            sender.organization_id,
            context.height,
            context.time_ms,
        ),
    )
    write_record_custody(state, record_id, custody)
    # The patient's record index: the record count before this anchor is its sequence.
    state.put(keys.patient_record_key(patient_id, record_count), record_id)
    write_patient_fields(state, patient_id, holder, record_count + 1)


def _checked_custody(
    state: OverlayStateView, fields: dict[str, Any], sender: Member
) -> RecordCustody:
    """The anchor's custody list, refused unless canonical (INVALID_CUSTODY) and equal to the
    policy's set for this record in this state (CUSTODY_SET_MISMATCH), `records.md` §9."""
    try:
        entries = decode_custody_entries(fields["custody"])
    except DecodeError as error:
        raise TransactionRefusedError(ResultCode.INVALID_CUSTODY, str(error)) from None
    expected = custody_set_for(
        state, fields["record_id"], sender.organization_id, fields["patient_id"]
    )
    named = [entry.organization_id for entry in entries]
    if named != expected:
        raise TransactionRefusedError(
            ResultCode.CUSTODY_SET_MISMATCH,
            f"custodians {','.join(named)} are not the policy's {','.join(expected)}",
        )
    return RecordCustody(fields["patient_wrap_sha256"], entries)


def anchor_author(view: StateView, sender: bytes) -> tuple[bytes, bytes] | None:
    """(member id, organisation id in ASCII) of the member `sender` signs for, when
    `anchor_record`'s sender checks pass for it (`require_sender`, then `require_role`) and a
    custody entry may name its organisation (always so for a registered one; checked so that
    the path's byte comparison means what `decode_custody_entries` means); else None. The
    compiled accept path (`_core.AnchorPath`, wired in `application.py`) asks this once per
    sender and run of anchors."""
    status = member_status(view, sender)
    if not isinstance(status, Member) or status.role not in _ANCHOR_ROLES:
        return None
    organization = status.organization_id.encode("ascii")
    if not custody_nameable(organization):
        return None
    return status.member_id, organization


def live_record(state: StateView, record_id: bytes) -> EmrRecord:
    """The record, which must exist and not be erased."""
    record = read_record(state, record_id)
    if record is None:
        raise TransactionRefusedError(
            ResultCode.RECORD_NOT_FOUND, f"record {short(record_id)} is not anchored"
        )
    if record.is_erased:
        raise TransactionRefusedError(
            ResultCode.RECORD_ERASED,
            f"record {short(record_id)} was erased at height {record.erased_height}",
        )
    return record


def _check_eraser(sender: Member, record: EmrRecord, reason: ErasureReason) -> None:
    """The patient erases on request; an admin of the author organisation for a legal order or
    an entry in error."""
    if sender.role == Role.PATIENT:
        if sender.patient_id != record.patient_id:
            raise TransactionRefusedError(
                ResultCode.NOT_AUTHORIZED, "the record belongs to another patient"
            )
        if reason != ErasureReason.PATIENT_REQUEST:
            raise TransactionRefusedError(
                ResultCode.NOT_AUTHORIZED,
                "a patient erases with reason patient request; legal orders and entries in "
                "error are erased by an admin of the author organisation",
            )
        return
    if sender.organization_id != record.author_organization:
        raise TransactionRefusedError(
            ResultCode.NOT_AUTHORIZED,
            f"the record was authored by {record.author_organization}; only its admins erase it",
        )
    if reason == ErasureReason.PATIENT_REQUEST:
        raise TransactionRefusedError(
            ResultCode.NOT_AUTHORIZED,
            "a patient request is made by the patient; an admin erases for a legal order or an "
            "entry in error",
        )


@emr_handler
def erase_record(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    sender = require_sender(state, tx)
    require_role(sender, {Role.PATIENT, Role.ADMIN}, "erase records")
    record = live_record(state, tx.fields["record_id"])
    reason = ErasureReason(tx.fields["reason"])
    _check_eraser(sender, record, reason)
    write_record(state, record.erased(reason, sender.member_id, context.height, context.time_ms))
    # Record grants name the digest of their grantee's wrap (kept by the custodians, who delete
    # it through their erasure queue): they go with the record.
    for grant_id in read_record_grant_ids(state, record.record_id):
        grant = read_grant(state, grant_id)
        if grant is None:
            raise StateCorruptionError("a record grant list names a grant that is not stored")
        at = (context.height, context.time_ms)
        remove_grant(state, grant, GrantEnd.RECORD_ERASED, sender.member_id, at)
    return TxResult.make(
        ResultCode.OK,
        f"record {short(record.record_id)} erased ({reason.name.lower()}); its anchor hash "
        "remains, its CID and record grants are gone",
    )


def _append(state: OverlayStateView, event: AccessEvent) -> None:
    append_event(state, patient_trail(event.patient_id), event)
    if event.record_id != NO_KEY:
        append_event(state, record_trail(event.record_id), event)


@emr_handler
def access_event(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    """The reader records a read (or export) it was served. Only a read the rules allow at
    block time is recorded; a named grant must be one that authorises this reader."""
    reader = require_sender(state, tx)
    record = live_record(state, tx.fields["record_id"])
    grant_id = tx.fields["grant_id"]
    decision = decide_access(state, record, reader, grant_id, context.time_ms)
    if decision.reason_code == ResultCode.GRANT_NOT_APPLICABLE.name:
        raise TransactionRefusedError(
            ResultCode.GRANT_NOT_APPLICABLE,
            f"grant {short(grant_id)} does not authorise this reader for this record now",
        )
    if not decision.allowed:
        raise TransactionRefusedError(
            ResultCode.ACCESS_DENIED,
            f"member {short(reader.member_id)} may not read record {short(record.record_id)}",
        )
    basis = AccessBasis[decision.via.upper()]
    _append(
        state,
        AccessEvent(
            event_kind=EventKind.ACCESS,
            event_id=transaction_id(tx),
            patient_id=record.patient_id,
            record_id=record.record_id,
            actor=reader.member_id,
            actor_organization=reader.organization_id,
            action=tx.fields["action"],
            basis=basis,
            grant_id=decision.grant_id,
            expires_at_ms=0,
            reason="",
            height=context.height,
            time_ms=context.time_ms,
        ),
    )
    return TxResult.make(ResultCode.OK, f"access recorded (via {decision.via})")


@emr_handler
def break_glass(tx: DecodedTransaction, state: OverlayStateView, context: BlockContext) -> TxResult:
    """A clinician opens time-boxed emergency read access, flagged for review."""
    clinician = require_sender(state, tx)
    require_role(clinician, {Role.CLINICIAN}, "break the glass")
    patient_id = tx.fields["patient_id"]
    if read_patient(state, patient_id) is None:
        raise TransactionRefusedError(
            ResultCode.PATIENT_NOT_REGISTERED, f"patient id {short(patient_id)} is not registered"
        )
    record_id = tx.fields["record_id"]
    if record_id != NO_KEY:
        record = live_record(state, record_id)
        if record.patient_id != patient_id:
            raise TransactionRefusedError(
                ResultCode.RECORD_PATIENT_MISMATCH,
                f"record {short(record_id)} belongs to another patient",
            )
    sessions = [s for s in read_sessions(state, patient_id) if s.in_force(context.time_ms)]
    if len(sessions) >= MAX_BREAK_GLASS_SESSIONS_PER_PATIENT:
        raise TransactionRefusedError(
            ResultCode.TOO_MANY_BREAK_GLASS,
            f"{len(sessions)} break-glass sessions are open on this patient "
            f"(limit {MAX_BREAK_GLASS_SESSIONS_PER_PATIENT})",
        )
    event_id = transaction_id(tx)
    expires_at_ms = context.time_ms + tx.fields["duration_ms"]
    write_sessions(
        state,
        patient_id,
        [*sessions, BreakGlassSession(clinician.member_id, record_id, expires_at_ms, event_id)],
    )
    event = declaration(
        EventKind.BREAK_GLASS,
        event_id,
        clinician,
        patient_id,
        record_id,
        AccessBasis.BREAK_GLASS,
        event_id,
        (context.height, context.time_ms),
        expires_at_ms=expires_at_ms,
        reason=tx.fields["reason"],
    )
    _append(state, event)
    open_review(state, event)
    return TxResult.make(
        ResultCode.OK, f"break-glass open until {expires_at_ms} ms, flagged for review"
    )


@writes_only_when_accepted  # every refusal comes before the one write
@emr_handler
def erasure_receipt(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    """A custodian confirms that its copies of an erased record's data key, wraps, cache entry
    and blob are gone (`docs/spec/records.md` §9). Sent by an admin of a custodian organisation
    (the key its node posts receipts with); one per custodian."""
    sender = require_sender(state, tx)
    require_role(sender, {Role.ADMIN}, "confirm erasures")
    record_id = tx.fields["record_id"]
    record = read_record(state, record_id)
    if record is None:
        raise TransactionRefusedError(
            ResultCode.RECORD_NOT_FOUND, f"record {short(record_id)} is not anchored"
        )
    if not record.is_erased:
        raise TransactionRefusedError(
            ResultCode.RECORD_NOT_ERASED, f"record {short(record_id)} is not erased"
        )
    custody = read_record_custody(state, record_id)
    organization_id = sender.organization_id
    if custody is None or custody.wrap_digest_of(organization_id) is None:
        raise TransactionRefusedError(
            ResultCode.NOT_A_CUSTODIAN,
            f"{organization_id} is not a custodian of record {short(record_id)}",
        )
    confirmed = read_erasure_receipts(state, record_id)
    if organization_id in confirmed:
        raise TransactionRefusedError(
            ResultCode.DUPLICATE_RECEIPT,
            f"{organization_id} already confirmed the erasure of record {short(record_id)}",
        )
    now_confirmed = set(confirmed) | {organization_id}
    in_custody_order = [item for item in custody.organization_ids if item in now_confirmed]
    state.put(keys.erasure_receipts_key(record_id), encode_receipts(in_custody_order))
    return TxResult.make(
        ResultCode.OK,
        f"{organization_id} confirmed the erasure of record {short(record_id)} "
        f"({len(in_custody_order)} of {len(custody.custodians)} custodians)",
    )
