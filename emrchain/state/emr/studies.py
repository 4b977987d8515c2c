"""Research studies under differential privacy, and the patients' research consent
(`docs/spec/analytics.md`).

A study's privacy budget is kept by a deterministic accountant: epsilon and delta are integers
(millionths and 10^-12 units), and queries compose sequentially, so a query is accepted only if
the spent budget plus its own stays within the study's totals. No float enters execution.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

from emrchain.schema import (
    MAX_STUDY_PARTICIPANTS,
    MEASURE_CODE_MAX_BYTES,
    STUDY_PURPOSE_MAX_BYTES,
    QueryType,
    ResearchChoice,
    Role,
)
from emrchain.schema.codec import DecodedTransaction
from emrchain.state import keys
from emrchain.state.application import BlockContext, writes_only_when_accepted
from emrchain.state.codes import ResultCode
from emrchain.state.emr.context import emr_handler, require_role, require_sender, short
from emrchain.state.emr.entities import NO_KEY, Member, read_ident, read_text
from emrchain.state.emr.limits import (
    MAX_QUERIES_PER_STUDY,
    MAX_RESEARCH_CONSENT_CHANGES,
    MAX_STUDIES,
)
from emrchain.state.emr.tables import TransactionRefusedError, read_organization
from emrchain.state.result import TxResult
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.codec import DecodeError, Reader, Writer


class StudyStatus(IntEnum):
    PROPOSED = 1
    """Waiting for every participant's approval."""
    ACTIVE = 2
    """Every participant approved: queries may run until expiry, closure or the budget's end."""
    CLOSED = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Study:
    study_id: bytes
    sponsor: bytes
    """Member id of the proposer: the only member who may query and anchor results."""
    sponsor_organization: str
    purpose: str
    query_types: int
    """Bit set: bit v allows QueryType v."""
    epsilon_total: int
    delta_total: int
    participants: tuple[str, ...]
    """Organisation ids, strictly ascending."""
    expires_at_ms: int
    sequence: int
    height: int
    time_ms: int
    approvals: int = 0
    """Bit i set: participants[i]'s admin approved."""
    status: StudyStatus = StudyStatus.PROPOSED
    epsilon_spent: int = 0
    delta_spent: int = 0
    query_count: int = 0
    result_count: int = 0
    closed_height: int = 0

    def allows(self, query_type: QueryType) -> bool:
        return bool(self.query_types >> int(query_type) & 1)

    def all_approved(self) -> bool:
        return self.approvals == (1 << len(self.participants)) - 1

    def encode(self) -> bytes:
        writer = Writer().fixed(self.sponsor, 32)
        writer.var_bytes(self.sponsor_organization.encode("ascii"), 1)
        writer.var_bytes(self.purpose.encode("utf-8"), 2)
        writer.u8(self.query_types).u64(self.epsilon_total).u64(self.delta_total)
        writer.u8(len(self.participants))
        for organization_id in self.participants:
            writer.var_bytes(organization_id.encode("ascii"), 1)
        writer.u64(self.expires_at_ms).u32(self.sequence).u64(self.height).u64(self.time_ms)
        writer.u16(self.approvals).u8(self.status)
        writer.u64(self.epsilon_spent).u64(self.delta_spent)
        writer.u32(self.query_count).u32(self.result_count)
        return writer.u64(self.closed_height).bytes()

    @classmethod
    def decode(cls, study_id: bytes, data: bytes) -> Study:
        reader = Reader(data, "Study")
        sponsor = reader.fixed(32, "sponsor")
        sponsor_organization = read_ident(reader, "sponsor_organization", 1)
        purpose = read_text(reader, 2, STUDY_PURPOSE_MAX_BYTES, "purpose")
        query_types, epsilon_total, delta_total = (
            reader.u8("query_types"),
            reader.u64("epsilon_total"),
            reader.u64("delta_total"),
        )
        count = reader.count(1, MAX_STUDY_PARTICIPANTS, "participants")
        participants = tuple(read_ident(reader, "participant", 1) for _ in range(count))
        fields = (reader.u64("expires_at_ms"), reader.u32("sequence"), reader.u64("height"))
        time_ms, approvals = reader.u64("time_ms"), reader.u16("approvals")
        try:
            status = StudyStatus(reader.u8("status"))
        except ValueError:
            raise DecodeError("Study.status: unknown status") from None
        study = cls(
            study_id,
            sponsor,
            sponsor_organization,
            purpose,
            query_types,
            epsilon_total,
            delta_total,
            participants,
            *fields,
            time_ms,
            approvals,
            status,
            epsilon_spent=reader.u64("epsilon_spent"),
            delta_spent=reader.u64("delta_spent"),
            query_count=reader.u32("query_count"),
            result_count=reader.u32("result_count"),
            closed_height=reader.u64("closed_height"),
        )
        reader.finish()
        return study


@dataclass(frozen=True, slots=True)
class StudyQuery:
    query_id: bytes
    query_type: QueryType
    measure: str
    """The FHIR Observation code whose values the query reads."""
    lower_milli: int
    upper_milli: int
    bins: int
    epsilon: int
    delta: int
    sequence: int
    height: int
    time_ms: int
    result_sha256: bytes = NO_KEY
    result_height: int = 0

    def encode(self) -> bytes:
        writer = Writer().fixed(self.query_id, 32).u8(self.query_type)
        writer.var_bytes(self.measure.encode("utf-8"), 1)
        writer.u64(self.lower_milli).u64(self.upper_milli).u8(self.bins)
        writer.u64(self.epsilon).u64(self.delta).u32(self.sequence)
        writer.u64(self.height).u64(self.time_ms).fixed(self.result_sha256, 32)
        return writer.u64(self.result_height).bytes()

    @classmethod
    def decode(cls, data: bytes) -> StudyQuery:
        reader = Reader(data, "StudyQuery")
        query_id = reader.fixed(32, "query_id")
        try:
            query_type = QueryType(reader.u8("query_type"))
        except ValueError:
            raise DecodeError("StudyQuery.query_type: unknown type") from None
        query = cls(
            query_id,
            query_type,
            read_text(reader, 1, MEASURE_CODE_MAX_BYTES, "measure"),
            reader.u64("lower_milli"),
            reader.u64("upper_milli"),
            reader.u8("bins"),
            reader.u64("epsilon"),
            reader.u64("delta"),
            reader.u32("sequence"),
            reader.u64("height"),
            reader.u64("time_ms"),
            reader.fixed(32, "result_sha256"),
            reader.u64("result_height"),
        )
        reader.finish()
        return query


# --- reading -----------------------------------------------------------------------------------


def read_study(view: StateView, study_id: bytes) -> Study | None:
    raw = view.get(keys.study_key(study_id))
    if raw is None:
        return None
    try:
        return Study.decode(study_id, raw)
    except DecodeError as error:
        raise StateCorruptionError(f"study {study_id.hex()}: {error}") from None


def study_count(view: StateView) -> int:
    raw = view.get(keys.STUDY_COUNT)
    return 0 if raw is None else int.from_bytes(raw, "big")


def study_id_at(view: StateView, sequence: int) -> bytes:
    raw = view.get(keys.study_list_key(sequence))
    if raw is None:
        raise StateCorruptionError(f"study list slot {sequence} is missing")
    return raw


def read_query(view: StateView, study_id: bytes, sequence: int) -> StudyQuery:
    raw = view.get(keys.study_query_key(study_id, sequence))
    if raw is None:
        raise StateCorruptionError(f"study {study_id.hex()} query {sequence} is missing")
    try:
        return StudyQuery.decode(raw)
    except DecodeError as error:
        raise StateCorruptionError(f"study query {sequence}: {error}") from None


def find_query(view: StateView, study_id: bytes, query_id: bytes) -> StudyQuery | None:
    raw = view.get(keys.study_query_index_key(study_id, query_id))
    return None if raw is None else read_query(view, study_id, int.from_bytes(raw, "big"))


def study_queries(view: StateView, study: Study) -> list[StudyQuery]:
    """Every query of the study, in commit order (at most MAX_QUERIES_PER_STUDY)."""
    return [read_query(view, study.study_id, index) for index in range(study.query_count)]


def list_studies(view: StateView, after: int | None, limit: int) -> tuple[list[Study], int | None]:
    """Up to `limit` studies in proposal order after sequence `after`; the next cursor or None."""
    total = study_count(view)
    start = 0 if after is None else after + 1
    stop = min(total, start + limit)
    studies = []
    for sequence in range(start, stop):
        study = read_study(view, study_id_at(view, sequence))
        if study is None:
            raise StateCorruptionError(f"study list slot {sequence} names no study")
        studies.append(study)
    return studies, (stop - 1 if stop < total else None)


def research_consent_history(
    view: StateView, patient_id: bytes
) -> list[tuple[ResearchChoice, int]]:
    """Every (choice, height) change of the patient, oldest first."""
    raw = view.get(keys.research_consent_key(patient_id))
    count = 0 if raw is None else int.from_bytes(raw, "big")
    history = []
    for sequence in range(count):
        entry = view.get(keys.research_consent_history_key(patient_id, sequence))
        if entry is None or len(entry) != 9:
            raise StateCorruptionError(f"research consent {patient_id.hex()}/{sequence}")
        history.append((ResearchChoice(entry[0]), int.from_bytes(entry[1:], "big")))
    return history


def opted_in_at(view: StateView, patient_id: bytes, height: int) -> bool:
    """Whether the patient's research choice in force after block `height` is OPT_IN (a patient
    who never chose is opted out)."""
    choice = ResearchChoice.OPT_OUT
    for changed, changed_height in research_consent_history(view, patient_id):
        if changed_height > height:
            break
        choice = changed
    return choice == ResearchChoice.OPT_IN


# --- handlers ----------------------------------------------------------------------------------


def _refuse(code: ResultCode, message: str) -> TransactionRefusedError:
    return TransactionRefusedError(code, message)


def parse_participants(raw: bytes) -> tuple[str, ...]:
    """The `participants` field: count u8, then u8-prefixed organisation ids, ascending."""
    reader = Reader(raw, "participants")
    try:
        count = reader.count(1, MAX_STUDY_PARTICIPANTS, "participants")
        participants = tuple(read_ident(reader, "participant", 1) for _ in range(count))
        reader.finish()
    except DecodeError as error:
        raise _refuse(ResultCode.INVALID_STUDY, str(error)) from None
    if count == 0 or list(participants) != sorted(set(participants)):
        raise _refuse(ResultCode.INVALID_STUDY, "participants must be 1..16, ascending, distinct")
    return participants


def encode_participants(participants: list[str] | tuple[str, ...]) -> bytes:
    writer = Writer().u8(len(participants))
    for organization_id in sorted(participants):
        writer.var_bytes(organization_id.encode("ascii"), 1)
    return writer.bytes()


def _study(state: StateView, study_id: bytes) -> Study:
    study = read_study(state, study_id)
    if study is None:
        raise _refuse(ResultCode.STUDY_NOT_FOUND, f"no study {short(study_id)}")
    return study


def _put_study(state: OverlayStateView, study: Study) -> None:
    state.put(keys.study_key(study.study_id), study.encode())


@writes_only_when_accepted
@emr_handler
def propose_study(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    """An admin or clinician (a researcher) proposes a study; it becomes its sponsor."""
    sponsor = require_sender(state, tx)
    require_role(sponsor, {Role.ADMIN, Role.CLINICIAN}, "propose studies")
    fields = tx.fields
    study_id = fields["study_id"]
    if read_study(state, study_id) is not None:
        raise _refuse(ResultCode.DUPLICATE_STUDY, f"study {short(study_id)} exists")
    participants = parse_participants(fields["participants"])
    for organization_id in participants:
        if read_organization(state, organization_id) is None:
            raise _refuse(ResultCode.INVALID_STUDY, f"no organisation {organization_id!r}")
    if fields["query_types"] & 1:
        raise _refuse(ResultCode.INVALID_STUDY, "query_types bit 0 names no query type")
    if fields["expires_at_ms"] <= context.time_ms:
        raise _refuse(ResultCode.INVALID_STUDY, "the study expires before this block")
    sequence = study_count(state)
    if sequence >= MAX_STUDIES:
        raise _refuse(ResultCode.STUDY_LIMIT_REACHED, f"the chain holds {MAX_STUDIES} studies")
    study = Study(
        study_id,
        sponsor.member_id,
        sponsor.organization_id,
        fields["purpose"],
        fields["query_types"],
        fields["epsilon_total"],
        fields["delta_total"],
        participants,
        fields["expires_at_ms"],
        sequence,
        context.height,
        context.time_ms,
    )
    _put_study(state, study)
    state.put(keys.study_list_key(sequence), study_id)
    state.put(keys.STUDY_COUNT, (sequence + 1).to_bytes(4, "big"))
    return TxResult.make(ResultCode.OK, f"study {short(study_id)} proposed")


def _require_open(study: Study, context: BlockContext) -> None:
    if study.status == StudyStatus.CLOSED:
        raise _refuse(ResultCode.STUDY_CLOSED, f"study {short(study.study_id)} is closed")
    if context.time_ms >= study.expires_at_ms:
        raise _refuse(ResultCode.STUDY_EXPIRED, f"study {short(study.study_id)} has expired")


@writes_only_when_accepted
@emr_handler
def approve_study(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    """An admin of a participating organisation approves, once per organisation; the study is
    active when every participant approved."""
    admin = require_sender(state, tx)
    require_role(admin, {Role.ADMIN}, "approve studies")
    study = _study(state, tx.fields["study_id"])
    _require_open(study, context)
    if admin.organization_id not in study.participants:
        raise _refuse(ResultCode.NOT_A_PARTICIPANT, f"{admin.organization_id} is not in the study")
    bit = 1 << study.participants.index(admin.organization_id)
    if study.approvals & bit:
        raise _refuse(
            ResultCode.STUDY_ALREADY_APPROVED, f"{admin.organization_id} approved already"
        )
    approved = replace(study, approvals=study.approvals | bit)
    if approved.all_approved():
        approved = replace(approved, status=StudyStatus.ACTIVE)
    _put_study(state, approved)
    return TxResult.make(ResultCode.OK, f"study {short(study.study_id)} {approved.status.label}")


def _require_sponsor(member: Member, study: Study) -> None:
    if member.member_id != study.sponsor:
        raise _refuse(ResultCode.NOT_STUDY_SPONSOR, "only the study's sponsor may do this")


def _check_query_shape(fields: dict[str, object], query_type: QueryType) -> None:
    lower, upper, bins = fields["lower_milli"], fields["upper_milli"], fields["bins"]
    assert isinstance(lower, int) and isinstance(upper, int) and isinstance(bins, int)
    if (bins >= 1) != (query_type == QueryType.HISTOGRAM):
        raise _refuse(ResultCode.INVALID_QUERY, "bins is 1..64 for a histogram, else 0")
    if query_type != QueryType.COUNT and lower >= upper:
        raise _refuse(ResultCode.INVALID_QUERY, "the clamping bounds need lower < upper")
    if fields["delta"] == 0:
        raise _refuse(ResultCode.INVALID_QUERY, "the Gaussian noise needs a delta above 0")


@writes_only_when_accepted
@emr_handler
def study_query(tx: DecodedTransaction, state: OverlayStateView, context: BlockContext) -> TxResult:
    """The sponsor runs a query of an allowed type on an active study; the accountant refuses it
    if the spent budget plus its (epsilon, delta) would exceed the study's totals."""
    sponsor = require_sender(state, tx)
    fields = tx.fields
    study = _study(state, fields["study_id"])
    _require_sponsor(sponsor, study)
    _require_open(study, context)
    if study.status != StudyStatus.ACTIVE:
        raise _refuse(ResultCode.STUDY_NOT_APPROVED, "not every participant approved yet")
    query_type = QueryType(fields["query_type"])
    if not study.allows(query_type):
        raise _refuse(ResultCode.QUERY_TYPE_NOT_ALLOWED, f"{query_type.name.lower()} not allowed")
    _check_query_shape(fields, query_type)
    if find_query(state, study.study_id, fields["query_id"]) is not None:
        raise _refuse(ResultCode.DUPLICATE_QUERY, f"query {short(fields['query_id'])} exists")
    if study.query_count >= MAX_QUERIES_PER_STUDY:
        raise _refuse(ResultCode.QUERY_LIMIT_REACHED, f"{MAX_QUERIES_PER_STUDY} queries run")
    epsilon_spent = study.epsilon_spent + fields["epsilon"]
    delta_spent = study.delta_spent + fields["delta"]
    if epsilon_spent > study.epsilon_total or delta_spent > study.delta_total:
        raise _refuse(
            ResultCode.PRIVACY_BUDGET_EXCEEDED,
            f"budget left: epsilon {study.epsilon_total - study.epsilon_spent}, delta "
            f"{study.delta_total - study.delta_spent}; the query asks {fields['epsilon']}, "
            f"{fields['delta']}",
        )
    query = StudyQuery(
        fields["query_id"],
        query_type,
        fields["measure"],
        fields["lower_milli"],
        fields["upper_milli"],
        fields["bins"],
        fields["epsilon"],
        fields["delta"],
        study.query_count,
        context.height,
        context.time_ms,
    )
    state.put(keys.study_query_key(study.study_id, query.sequence), query.encode())
    state.put(
        keys.study_query_index_key(study.study_id, query.query_id),
        query.sequence.to_bytes(4, "big"),
    )
    spent = replace(
        study,
        epsilon_spent=epsilon_spent,
        delta_spent=delta_spent,
        query_count=study.query_count + 1,
    )
    _put_study(state, spent)
    return TxResult.make(ResultCode.OK, f"query {short(query.query_id)} accepted")


@writes_only_when_accepted
@emr_handler
def study_result(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    """The sponsor anchors the SHA-256 of a query's released result, once."""
    sponsor = require_sender(state, tx)
    fields = tx.fields
    study = _study(state, fields["study_id"])
    _require_sponsor(sponsor, study)
    query = find_query(state, study.study_id, fields["query_id"])
    if query is None:
        raise _refuse(ResultCode.QUERY_NOT_FOUND, f"no query {short(fields['query_id'])}")
    if query.result_sha256 != NO_KEY:
        raise _refuse(
            ResultCode.RESULT_ALREADY_ANCHORED, f"anchored at height {query.result_height}"
        )
    anchored = replace(query, result_sha256=fields["result_sha256"], result_height=context.height)
    state.put(keys.study_query_key(study.study_id, query.sequence), anchored.encode())
    _put_study(state, replace(study, result_count=study.result_count + 1))
    return TxResult.make(ResultCode.OK, f"result of query {short(query.query_id)} anchored")


@writes_only_when_accepted
@emr_handler
def close_study(tx: DecodedTransaction, state: OverlayStateView, context: BlockContext) -> TxResult:
    """The sponsor, or an admin of a participant, closes the study: no query runs after it."""
    member = require_sender(state, tx)
    study = _study(state, tx.fields["study_id"])
    participant_admin = member.role == Role.ADMIN and member.organization_id in study.participants
    if member.member_id != study.sponsor and not participant_admin:
        raise _refuse(
            ResultCode.NOT_AUTHORIZED, "only the sponsor or a participant's admin may close"
        )
    if study.status == StudyStatus.CLOSED:
        raise _refuse(ResultCode.STUDY_CLOSED, f"closed at height {study.closed_height}")
    _put_study(state, replace(study, status=StudyStatus.CLOSED, closed_height=context.height))
    return TxResult.make(ResultCode.OK, f"study {short(study.study_id)} closed")


@writes_only_when_accepted
@emr_handler
def research_consent(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    """A patient opts in to (or out of) research use of their records; each change is kept with
    its height."""
    patient = require_sender(state, tx)
    require_role(patient, {Role.PATIENT}, "choose research consent")
    choice = ResearchChoice(tx.fields["choice"])
    history = research_consent_history(state, patient.patient_id)
    current = history[-1][0] if history else ResearchChoice.OPT_OUT
    if choice == current:
        raise _refuse(ResultCode.RESEARCH_CONSENT_UNCHANGED, f"already {choice.name.lower()}")
    if len(history) >= MAX_RESEARCH_CONSENT_CHANGES:
        raise _refuse(
            ResultCode.RESEARCH_CONSENT_LIMIT_REACHED,
            f"{MAX_RESEARCH_CONSENT_CHANGES} research consent changes made",
        )
    sequence = len(history)
    entry = bytes([choice]) + context.height.to_bytes(8, "big")
    state.put(keys.research_consent_history_key(patient.patient_id, sequence), entry)
    state.put(keys.research_consent_key(patient.patient_id), (sequence + 1).to_bytes(4, "big"))
    return TxResult.make(ResultCode.OK, f"research consent: {choice.name.lower()}")
