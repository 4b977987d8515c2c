"""Studies (PROPOSE_STUDY .. CLOSE_STUDY) and research consent: every rule and refusal, and the
integer privacy accountant (`docs/spec/analytics.md`)."""

from __future__ import annotations

from typing import Any

import pytest

from emrchain.schema import QueryType, ResearchChoice, TxKind
from emrchain.state import ResultCode, keys
from emrchain.state.emr import studies as studies_module
from emrchain.state.emr.entities import NO_KEY
from emrchain.state.emr.studies import (
    StudyStatus,
    encode_participants,
    find_query,
    list_studies,
    opted_in_at,
    read_study,
    research_consent_history,
)
from tests.state.emr.world import (
    A_ADMIN,
    A_AUDITOR,
    A_CLINICIAN,
    B_ADMIN,
    B_CLINICIAN,
    HOSPITAL_A,
    HOSPITAL_B,
    OTHER_PATIENT,
    OTHER_PATIENT_ID,
    PATIENT,
    PATIENT_ID,
    World,
    digest,
)

STUDY = digest("study/1")
ALL_TYPES = sum(1 << int(kind) for kind in QueryType)


def study_fields(world: World, **changes: Any) -> dict[str, Any]:
    fields = {
        "study_id": STUDY,
        "purpose": "HbA1c across the consortium",
        "query_types": ALL_TYPES,
        "epsilon_total": 1_000_000,
        "delta_total": 1_000_000,
        "participants": encode_participants([HOSPITAL_A, HOSPITAL_B]),
        "expires_at_ms": world.time_ms + 3_600_000,
    }
    fields.update(changes)
    return fields


def query_fields(label: str = "q1", **changes: Any) -> dict[str, Any]:
    fields = {
        "study_id": STUDY,
        "query_id": digest("query/" + label),
        "query_type": QueryType.SUM,
        "measure": "4548-4",
        "lower_milli": 0,
        "upper_milli": 20_000,
        "bins": 0,
        "epsilon": 400_000,
        "delta": 100_000,
    }
    fields.update(changes)
    return fields


def active_study(world: World) -> None:
    world.send_ok(B_CLINICIAN, TxKind.PROPOSE_STUDY, study_fields(world))
    world.send_ok(A_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY})
    world.send_ok(B_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY})


def test_study_lifecycle_and_budget_accounting() -> None:
    world = World()
    world.send_ok(B_CLINICIAN, TxKind.PROPOSE_STUDY, study_fields(world))
    study = read_study(world.state, STUDY)
    assert study is not None and study.status == StudyStatus.PROPOSED
    assert study.participants == (HOSPITAL_A, HOSPITAL_B)
    # A query before every participant approved is refused.
    assert world.send(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields()).code == (
        ResultCode.STUDY_NOT_APPROVED
    )
    world.send_ok(A_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY})
    assert world.send(A_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY}).code == (
        ResultCode.STUDY_ALREADY_APPROVED
    )
    world.send_ok(B_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY})
    assert read_study(world.state, STUDY).status == StudyStatus.ACTIVE  # type: ignore[union-attr]
    world.send_ok(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q1"))
    world.send_ok(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q2"))
    spent = read_study(world.state, STUDY)
    assert spent is not None and (spent.epsilon_spent, spent.delta_spent) == (800_000, 200_000)
    # 800,000 + 400,000 > 1,000,000: refused, nothing written.
    before = list(world.state.items())
    result = world.send(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q3"))
    assert result.code == ResultCode.PRIVACY_BUDGET_EXCEEDED
    assert "epsilon 200000" in result.message
    after = [item for item in world.state.items() if item[0][:1] in (b"\x80", b"\x83", b"\x84")]
    assert after == [item for item in before if item[0][:1] in (b"\x80", b"\x83", b"\x84")]
    # Exactly the remaining epsilon fits.
    world.send_ok(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q4", epsilon=200_000))
    assert read_study(world.state, STUDY).epsilon_spent == 1_000_000  # type: ignore[union-attr]
    result_fields = {
        "study_id": STUDY,
        "query_id": digest("query/q1"),
        "result_sha256": digest("r"),
    }
    world.send_ok(B_CLINICIAN, TxKind.STUDY_RESULT, result_fields)
    query = find_query(world.state, STUDY, digest("query/q1"))
    assert query is not None and query.result_sha256 == digest("r") and query.sequence == 0
    assert world.send(B_CLINICIAN, TxKind.STUDY_RESULT, result_fields).code == (
        ResultCode.RESULT_ALREADY_ANCHORED
    )
    world.send_ok(A_ADMIN, TxKind.CLOSE_STUDY, {"study_id": STUDY})
    assert read_study(world.state, STUDY).status == StudyStatus.CLOSED  # type: ignore[union-attr]
    assert world.send(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q5", epsilon=1)).code == (
        ResultCode.STUDY_CLOSED
    )
    studies, cursor = list_studies(world.state, None, 10)
    assert [study.study_id for study in studies] == [STUDY] and cursor is None


def test_delta_is_accounted_like_epsilon() -> None:
    world = World()
    active_study(world)
    world.send_ok(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q1", epsilon=1, delta=999_999))
    assert world.send(
        B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q2", epsilon=1, delta=2)
    ).code == (ResultCode.PRIVACY_BUDGET_EXCEEDED)


def test_proposal_refusals() -> None:
    world = World()
    assert world.send(A_AUDITOR, TxKind.PROPOSE_STUDY, study_fields(world)).code == (
        ResultCode.ROLE_NOT_PERMITTED
    )
    assert world.send(PATIENT, TxKind.PROPOSE_STUDY, study_fields(world)).code == (
        ResultCode.ROLE_NOT_PERMITTED
    )
    unknown = study_fields(world, participants=encode_participants([HOSPITAL_A, "nowhere"]))
    assert world.send(A_CLINICIAN, TxKind.PROPOSE_STUDY, unknown).code == ResultCode.INVALID_STUDY
    descending = b"\x02\x0ahospital-b\x0ahospital-a"
    assert (
        world.send(
            A_CLINICIAN, TxKind.PROPOSE_STUDY, study_fields(world, participants=descending)
        ).code
        == ResultCode.INVALID_STUDY
    )
    expired = study_fields(world, expires_at_ms=world.time_ms)
    assert world.send(A_CLINICIAN, TxKind.PROPOSE_STUDY, expired).code == ResultCode.INVALID_STUDY
    assert (
        world.send(A_CLINICIAN, TxKind.PROPOSE_STUDY, study_fields(world, query_types=3)).code
        == ResultCode.INVALID_STUDY
    )
    world.send_ok(A_CLINICIAN, TxKind.PROPOSE_STUDY, study_fields(world))
    assert world.send(B_CLINICIAN, TxKind.PROPOSE_STUDY, study_fields(world)).code == (
        ResultCode.DUPLICATE_STUDY
    )


def test_approval_and_query_refusals() -> None:
    world = World()
    only_a = study_fields(world, participants=encode_participants([HOSPITAL_A]))
    only_a["query_types"] = 1 << QueryType.COUNT
    world.send_ok(B_CLINICIAN, TxKind.PROPOSE_STUDY, only_a)
    assert world.send(B_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY}).code == (
        ResultCode.NOT_A_PARTICIPANT
    )
    assert world.send(A_CLINICIAN, TxKind.APPROVE_STUDY, {"study_id": STUDY}).code == (
        ResultCode.ROLE_NOT_PERMITTED
    )
    assert world.send(A_ADMIN, TxKind.APPROVE_STUDY, {"study_id": digest("no")}).code == (
        ResultCode.STUDY_NOT_FOUND
    )
    world.send_ok(A_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY})
    count = query_fields(query_type=QueryType.COUNT)
    assert world.send(A_CLINICIAN, TxKind.STUDY_QUERY, count).code == ResultCode.NOT_STUDY_SPONSOR
    assert world.send(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields()).code == (
        ResultCode.QUERY_TYPE_NOT_ALLOWED
    )
    histogram_bins = query_fields(query_type=QueryType.COUNT, bins=4)
    assert world.send(B_CLINICIAN, TxKind.STUDY_QUERY, histogram_bins).code == (
        ResultCode.INVALID_QUERY
    )
    no_delta = query_fields(query_type=QueryType.COUNT, delta=0)
    assert world.send(B_CLINICIAN, TxKind.STUDY_QUERY, no_delta).code == ResultCode.INVALID_QUERY
    world.send_ok(B_CLINICIAN, TxKind.STUDY_QUERY, count)
    assert world.send(B_CLINICIAN, TxKind.STUDY_QUERY, count).code == ResultCode.DUPLICATE_QUERY
    missing = {"study_id": STUDY, "query_id": digest("none"), "result_sha256": digest("r")}
    assert world.send(B_CLINICIAN, TxKind.STUDY_RESULT, missing).code == ResultCode.QUERY_NOT_FOUND
    assert world.send(A_CLINICIAN, TxKind.CLOSE_STUDY, {"study_id": STUDY}).code == (
        ResultCode.NOT_AUTHORIZED
    )


def test_expiry_uses_the_block_time() -> None:
    world = World()
    # The next block's time is the last one's + one interval: expire between it and the one after.
    interval = world.chain.block_time_ms(1) - world.chain.block_time_ms(0)
    fields = study_fields(world, expires_at_ms=world.time_ms + interval + 1)
    world.send_ok(B_CLINICIAN, TxKind.PROPOSE_STUDY, fields)
    world.idle(2)
    assert world.send(A_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY}).code == (
        ResultCode.STUDY_EXPIRED
    )


def test_research_consent_history_and_opt_in_at_a_height() -> None:
    world = World()
    assert not opted_in_at(world.state, PATIENT_ID, world.chain.height)
    opt_in = {"choice": ResearchChoice.OPT_IN}
    opt_out = {"choice": ResearchChoice.OPT_OUT}
    assert world.send(PATIENT, TxKind.RESEARCH_CONSENT, opt_out).code == (
        ResultCode.RESEARCH_CONSENT_UNCHANGED
    )
    assert world.send(A_CLINICIAN, TxKind.RESEARCH_CONSENT, opt_in).code == (
        ResultCode.ROLE_NOT_PERMITTED
    )
    world.send_ok(PATIENT, TxKind.RESEARCH_CONSENT, opt_in)
    opted_in_height = world.chain.height
    world.send_ok(PATIENT, TxKind.RESEARCH_CONSENT, opt_out)
    opted_out_height = world.chain.height
    assert opted_in_at(world.state, PATIENT_ID, opted_in_height)
    assert not opted_in_at(world.state, PATIENT_ID, opted_in_height - 1)
    assert not opted_in_at(world.state, PATIENT_ID, opted_out_height)
    assert [choice for choice, _ in research_consent_history(world.state, PATIENT_ID)] == [
        ResearchChoice.OPT_IN,
        ResearchChoice.OPT_OUT,
    ]
    assert not opted_in_at(world.state, OTHER_PATIENT_ID, world.chain.height)
    world.send_ok(OTHER_PATIENT, TxKind.RESEARCH_CONSENT, opt_in)
    assert world.state.get(keys.research_consent_key(OTHER_PATIENT_ID)) == (1).to_bytes(4, "big")
    assert NO_KEY != OTHER_PATIENT_ID


def test_every_bound_refuses_with_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounds of limits.py, lowered so a test reaches them (the check is the same)."""
    monkeypatch.setattr(studies_module, "MAX_STUDIES", 1)
    monkeypatch.setattr(studies_module, "MAX_QUERIES_PER_STUDY", 2)
    monkeypatch.setattr(studies_module, "MAX_RESEARCH_CONSENT_CHANGES", 2)
    world = World()
    active_study(world)
    other = study_fields(world, study_id=digest("study/2"))
    assert world.send(A_CLINICIAN, TxKind.PROPOSE_STUDY, other).code == (
        ResultCode.STUDY_LIMIT_REACHED
    )
    small = {"epsilon": 1, "delta": 1}
    world.send_ok(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q1", **small))
    world.send_ok(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q2", **small))
    assert world.send(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q3", **small)).code == (
        ResultCode.QUERY_LIMIT_REACHED
    )
    world.send_ok(PATIENT, TxKind.RESEARCH_CONSENT, {"choice": ResearchChoice.OPT_IN})
    world.send_ok(PATIENT, TxKind.RESEARCH_CONSENT, {"choice": ResearchChoice.OPT_OUT})
    assert world.send(PATIENT, TxKind.RESEARCH_CONSENT, {"choice": ResearchChoice.OPT_IN}).code == (
        ResultCode.RESEARCH_CONSENT_LIMIT_REACHED
    )


def test_only_the_sponsor_anchors_and_an_expired_study_answers_no_query() -> None:
    world = World()
    interval = world.chain.block_time_ms(1) - world.chain.block_time_ms(0)
    world.send_ok(
        B_CLINICIAN,
        TxKind.PROPOSE_STUDY,
        study_fields(world, expires_at_ms=world.time_ms + 5 * interval),
    )
    world.send_ok(A_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY})
    world.send_ok(B_ADMIN, TxKind.APPROVE_STUDY, {"study_id": STUDY})
    world.send_ok(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q1"))
    anchor = {"study_id": STUDY, "query_id": digest("query/q1"), "result_sha256": digest("r")}
    assert world.send(A_CLINICIAN, TxKind.STUDY_RESULT, anchor).code == ResultCode.NOT_STUDY_SPONSOR
    world.idle(2)
    assert world.send(B_CLINICIAN, TxKind.STUDY_QUERY, query_fields("q2")).code == (
        ResultCode.STUDY_EXPIRED
    )
    # A released result is still anchored after expiry: it records what was released.
    world.send_ok(B_CLINICIAN, TxKind.STUDY_RESULT, anchor)
