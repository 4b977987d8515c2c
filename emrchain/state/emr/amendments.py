"""Amendments: a new record that supersedes an earlier one (`docs/spec/records.md` §11,
`docs/spec/access-control.md` §3.13).

AMEND_RECORD anchors a new record exactly as ANCHOR_RECORD does (`clinical.anchor_new_record`:
same checks, same custody set) and links it to the record it supersedes. Both records keep
their data: the new one holds its link (0x34), the old one its status and the records that
amend it (0x35). A correction or an entered-in-error ends the old record's currency (it becomes
`superseded` / `entered-in-error` and cannot be amended again: amend its successor); addenda
leave it `current` and stack, up to MAX_AMENDMENTS_PER_RECORD.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from emrchain.schema import AMENDMENT_NOTE_MAX_BYTES, AmendmentReason, Role
from emrchain.schema.codec import DecodedTransaction
from emrchain.state import keys
from emrchain.state.application import BlockContext, writes_only_when_accepted
from emrchain.state.codes import ResultCode
from emrchain.state.emr.clinical import anchor_new_record, live_record
from emrchain.state.emr.context import emr_handler, require_role, require_sender, short
from emrchain.state.emr.entities import read_text
from emrchain.state.emr.limits import MAX_AMENDMENTS_PER_RECORD
from emrchain.state.emr.records import EmrRecord
from emrchain.state.emr.tables import TransactionRefusedError
from emrchain.state.result import TxResult
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.codec import DecodeError, Reader, Writer

MAX_HISTORY_DEPTH = 256
"""Links `record_amendments` follows back from a record (a longer chain is cut there)."""


class RecordStatus(IntEnum):
    CURRENT = 1
    SUPERSEDED = 2
    ENTERED_IN_ERROR = 3

    @property
    def label(self) -> str:
        """ "current" | "superseded" | "entered-in-error" (the FHIR status words)."""
        return self.name.lower().replace("_", "-")


_ENDS_CURRENCY = {
    AmendmentReason.CORRECTION: RecordStatus.SUPERSEDED,
    AmendmentReason.ENTERED_IN_ERROR: RecordStatus.ENTERED_IN_ERROR,
}


def reason_label(reason: int) -> str:
    """ "correction" | "entered_in_error" | "addendum"."""
    return AmendmentReason(reason).name.lower()


@dataclass(frozen=True, slots=True)
class AmendmentLink:
    """Stored under the amending record: which record it supersedes, why, when."""

    record_id: bytes
    """The amending (new) record."""
    supersedes: bytes
    reason: AmendmentReason
    note: str
    height: int

    def encode(self) -> bytes:
        writer = Writer().fixed(self.supersedes, 32).u8(self.reason)
        return writer.var_bytes(self.note.encode("utf-8"), 1).u64(self.height).bytes()

    @classmethod
    def decode(cls, record_id: bytes, data: bytes) -> AmendmentLink:
        reader = Reader(data, "AmendmentLink")
        supersedes = reader.fixed(32, "supersedes")
        try:
            reason = AmendmentReason(reader.u8("reason"))
        except ValueError:
            raise DecodeError("AmendmentLink.reason: unknown reason") from None
        link = cls(
            record_id,
            supersedes,
            reason,
            read_text(reader, 1, AMENDMENT_NOTE_MAX_BYTES, "note"),
            reader.u64("height"),
        )
        reader.finish()
        return link


@dataclass(frozen=True, slots=True)
class AmendmentState:
    """Stored under an amended record: its status and the records amending it, oldest first."""

    status: RecordStatus
    amended_by: tuple[bytes, ...]

    def validate_basic(self) -> None:
        """At most MAX_AMENDMENTS_PER_RECORD distinct amenders; a record no longer current was
        made so by one of them."""
        if len(self.amended_by) > MAX_AMENDMENTS_PER_RECORD:
            raise DecodeError("AmendmentState: too many amendments")
        if len(set(self.amended_by)) != len(self.amended_by):
            raise DecodeError("AmendmentState: an amender is listed twice")
        if self.status != RecordStatus.CURRENT and not self.amended_by:
            raise DecodeError("AmendmentState: superseded without an amender")

    def encode(self) -> bytes:
        self.validate_basic()
        writer = Writer().u8(self.status).u16(len(self.amended_by))
        for record_id in self.amended_by:
            writer.fixed(record_id, 32)
        return writer.bytes()

    @classmethod
    def decode(cls, data: bytes) -> AmendmentState:
        reader = Reader(data, "AmendmentState")
        try:
            status = RecordStatus(reader.u8("status"))
        except ValueError:
            raise DecodeError("AmendmentState.status: unknown status") from None
        count = reader.count(2, MAX_AMENDMENTS_PER_RECORD, "count")
        amended_by = tuple(reader.fixed(32, "record_id") for _ in range(count))
        reader.finish()
        state = cls(status, amended_by)
        state.validate_basic()
        return state


_NEVER_AMENDED = AmendmentState(RecordStatus.CURRENT, ())


def read_amendment_link(view: StateView, record_id: bytes) -> AmendmentLink | None:
    """The link of a record anchored by AMEND_RECORD; None for one anchored by ANCHOR_RECORD."""
    raw = view.get(keys.amendment_link_key(record_id))
    if raw is None:
        return None
    try:
        return AmendmentLink.decode(record_id, raw)
    except DecodeError as error:
        raise StateCorruptionError(f"amendment link {record_id.hex()}: {error}") from None


def read_amendment_state(view: StateView, record_id: bytes) -> AmendmentState:
    raw = view.get(keys.amendment_state_key(record_id))
    if raw is None:
        return _NEVER_AMENDED
    try:
        return AmendmentState.decode(raw)
    except DecodeError as error:
        raise StateCorruptionError(f"amendment state {record_id.hex()}: {error}") from None


_AMEND_ROLES = frozenset((Role.CLINICIAN, Role.ADMIN))


def _amendable(state: StateView, sender_organization: str, record_id: bytes) -> EmrRecord:
    record = live_record(state, record_id)
    if sender_organization != record.author_organization:
        raise TransactionRefusedError(
            ResultCode.NOT_AUTHOR_ORGANIZATION,
            f"record {short(record_id)} was authored by {record.author_organization}; only its "
            "clinicians and admins amend it",
        )
    return record


@writes_only_when_accepted  # every refusal comes before the first write (anchor_new_record's)
@emr_handler
def amend_record(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    """Anchor a new record that supersedes `supersedes` (same patient) for `reason`."""
    sender = require_sender(state, tx)
    require_role(sender, _AMEND_ROLES, "amend records")
    fields = tx.fields
    old_id = fields["supersedes"]
    old = _amendable(state, sender.organization_id, old_id)
    if fields["patient_id"] != old.patient_id:
        raise TransactionRefusedError(
            ResultCode.RECORD_PATIENT_MISMATCH,
            f"record {short(old_id)} belongs to another patient than the amendment names",
        )
    amended = read_amendment_state(state, old_id)
    if amended.status != RecordStatus.CURRENT:
        raise TransactionRefusedError(
            ResultCode.RECORD_ALREADY_SUPERSEDED,
            f"record {short(old_id)} is {amended.status.label}; amend the record that "
            "superseded it",
        )
    if len(amended.amended_by) >= MAX_AMENDMENTS_PER_RECORD:
        raise TransactionRefusedError(
            ResultCode.TOO_MANY_AMENDMENTS,
            f"record {short(old_id)} has {len(amended.amended_by)} amendments "
            f"(limit {MAX_AMENDMENTS_PER_RECORD})",
        )
    anchor_new_record(state, fields, sender, context)
    reason = AmendmentReason(fields["reason"])
    new_id = fields["record_id"]
    link = AmendmentLink(new_id, old_id, reason, fields["note"], context.height)
    state.put(keys.amendment_link_key(new_id), link.encode())
    status = _ENDS_CURRENCY.get(reason, RecordStatus.CURRENT)
    updated = AmendmentState(status, (*amended.amended_by, new_id))
    state.put(keys.amendment_state_key(old_id), updated.encode())
    return TxResult.make(
        ResultCode.OK,
        f"record {short(new_id)} anchored, {reason_label(reason)} of {short(old_id)} "
        f"(now {status.label})",
    )


class AmendmentRef(NamedTuple):
    """One end of an amendment link: the other record and the link's reason label."""

    record_id: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class RecordAmendments:
    """A record's place in its amendment history (`records.md` §11)."""

    status: str
    """"current" | "superseded" | "entered-in-error"."""
    supersedes: tuple[AmendmentRef, ...]
    """The records this one replaced or amended, nearest first, back to the original
    (at most MAX_HISTORY_DEPTH); each with the reason of the link leading to it."""
    superseded_by: tuple[AmendmentRef, ...]
    """The records that amend this one directly, oldest first, with their reasons."""


@dataclass(frozen=True, slots=True)
class AmendmentDetail:
    """One link of a history, as `GET /records/{id}/history` lists it."""

    record_id: bytes
    reason: str
    note: str
    height: int
    """The height of the AMEND_RECORD that made the link."""


@dataclass(frozen=True, slots=True)
class RecordHistory:
    status: str
    supersedes: tuple[AmendmentDetail, ...]
    superseded_by: tuple[AmendmentDetail, ...]


def _detail(record_id: bytes, link: AmendmentLink) -> AmendmentDetail:
    return AmendmentDetail(record_id, reason_label(link.reason), link.note, link.height)


def record_history(view: StateView, record_id: bytes) -> RecordHistory:
    """`record_amendments` with each link's note and height."""
    state = read_amendment_state(view, record_id)
    superseded_by: list[AmendmentDetail] = []
    for amending_id in state.amended_by:
        link = read_amendment_link(view, amending_id)
        if link is None:
            raise StateCorruptionError(f"record {amending_id.hex()} amends without a link")
        superseded_by.append(_detail(amending_id, link))
    supersedes: list[AmendmentDetail] = []
    current = read_amendment_link(view, record_id)
    while current is not None and len(supersedes) < MAX_HISTORY_DEPTH:
        supersedes.append(_detail(current.supersedes, current))
        current = read_amendment_link(view, current.supersedes)
    return RecordHistory(state.status.label, tuple(supersedes), tuple(superseded_by))


def record_amendments(view: StateView, record_id: bytes) -> RecordAmendments:
    """The amendment history of `record_id` (an unknown id reads as current, unamended: the
    caller checks that the record exists)."""
    history = record_history(view, record_id)
    return RecordAmendments(
        history.status,
        tuple(AmendmentRef(item.record_id, item.reason) for item in history.supersedes),
        tuple(AmendmentRef(item.record_id, item.reason) for item in history.superseded_by),
    )
