"""Every mapper of emrchain/fhir, on the replies the routes give (and the fields the consent
history and amendment routes add), validated with the R4B models of fhir.resources; and the
search-parameter parser."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from emrchain.fhir import resources
from emrchain.fhir.capability import capability_statement
from emrchain.fhir.search import SearchError, parse_date, parse_search
from tests.fhir.validate import BindingError, validated

RECORD = "ab" * 32
PATIENT = "cd" * 32
AUTHOR = "ef" * 32
GRANTEE = "12" * 32
NO_KEY = "0" * 64
TIME_MS = 1_764_873_434_123  # 2025-12-04T18:37:14.123Z
ANCHOR: dict[str, Any] = {
    "record_id": RECORD,
    "patient_id": PATIENT,
    "author": AUTHOR,
    "author_organization": "hospital-0",
    "anchored_height": 7,
    "anchored_time_ms": TIME_MS,
    "record_type": "lab_result",
    "content_sha256": "01" * 32,
    "cid": "bafkreiabc",
    "size_bytes": 161,
    "erased": False,
}
GRANT: dict[str, Any] = {
    "grant_id": "34" * 32,
    "scope": "record",
    "target": RECORD,
    "patient_id": PATIENT,
    "grantee_kind": "member",
    "grantee_member": GRANTEE,
    "grantee_organization": "",
    "grantor": "56" * 32,
    "expires_at_ms": 0,
    "height": 9,
    "time_ms": TIME_MS + 1_000,
}
HISTORY_CONSENT: dict[str, Any] = {
    "grant_id": "78" * 32,
    "scope": "patient",
    "record_id": None,
    "grantee": "clinic-b",
    "grantee_kind": "organization",
    "granted_height": 3,
    "granted_time_ms": TIME_MS,
    "expires_time_ms": 0,
    "status": "revoked",
    "revoked_height": 8,
    "revoked_time_ms": TIME_MS + 5_000,
}
EVENT: dict[str, Any] = {
    "kind": "access",
    "event_id": "9a" * 32,
    "patient_id": PATIENT,
    "record_id": RECORD,
    "actor": GRANTEE,
    "actor_organization": "clinic-b",
    "action": 1,
    "basis": "grant",
    "grant_id": GRANT["grant_id"],
    "reason": "",
    "expires_at_ms": 0,
    "flagged_for_review": False,
    "height": 11,
    "time_ms": TIME_MS + 2_000,
}


def test_instants_round_trip_without_floats() -> None:
    assert resources.instant(TIME_MS) == "2025-12-04T18:37:14.123Z"
    assert resources.instant(0) == "1970-01-01T00:00:00.000Z"
    for value in (0, 1, 999, TIME_MS, 253_402_300_799_999):
        assert resources.instant_ms(resources.instant(value)) == value


def test_document_reference_of_a_current_record() -> None:
    document = resources.document_reference(ANCHOR, f"http://node/records/{RECORD}")
    validated(document)
    assert document["id"] == RECORD and document["status"] == "current"
    assert document["date"] == "2025-12-04T18:37:14.123Z"
    assert document["content"][0]["attachment"] == {
        "contentType": resources.ENVELOPE_MEDIA_TYPE,
        "url": f"http://node/records/{RECORD}",
        "size": 161,
    }
    assert {"system": resources.CID_SYSTEM, "value": "bafkreiabc"} in document["identifier"]
    assert document["author"][0] == {"reference": f"Practitioner/{AUTHOR}"}


def test_document_reference_of_an_erased_record_keeps_only_the_hash() -> None:
    erased = {
        **ANCHOR,
        "cid": None,
        "erased": True,
        "erasure_reason": "patient_request",
        "erased_time_ms": TIME_MS + 9_000,
    }
    document = resources.document_reference(erased, f"http://node/records/{RECORD}")
    validated(document)
    assert document["status"] == "entered-in-error"
    assert "url" not in document["content"][0]["attachment"]
    assert [item["system"] for item in document["identifier"]] == [
        resources.CIPHERTEXT_SHA256_SYSTEM
    ]
    assert document["meta"]["tag"] == [{"system": resources.TAG_SYSTEM, "code": "erased"}]
    assert "patient_request" in document["description"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("superseded", "superseded"),
        ("entered-in-error", "entered-in-error"),
        ("current", "current"),
    ],
)
def test_amended_records_relate_to_what_they_replace(status: str, expected: str) -> None:
    # The history lists the whole chain back; the record replaces the first, directly.
    chain = [{"record_id": "bc" * 32}, {"record_id": "de" * 32}]
    amended = {**ANCHOR, "status": status, "supersedes": chain}
    document = resources.document_reference(amended, None)
    validated(document)
    assert document["status"] == expected
    assert document["relatesTo"] == [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{'bc' * 32}"}}
    ]
    provenance = resources.provenance(amended)
    validated(provenance)
    assert provenance["entity"] == [
        {"role": "revision", "what": {"reference": f"DocumentReference/{'bc' * 32}"}}
    ]


def test_the_read_routes_numeric_record_type_is_named() -> None:
    document = resources.document_reference({**ANCHOR, "record_type": 3}, None)
    assert document["type"]["coding"][0]["code"] == "imaging"


def test_consent_of_a_grant_in_force_then_expired() -> None:
    consent = resources.consent(GRANT, now_ms=TIME_MS)
    validated(consent)
    assert consent["status"] == "active"
    assert consent["provision"]["actor"][0]["reference"] == {"reference": f"Practitioner/{GRANTEE}"}
    assert consent["provision"]["data"][0]["reference"] == {
        "reference": f"DocumentReference/{RECORD}"
    }
    expiring = {**GRANT, "expires_at_ms": TIME_MS + 60_000}
    assert resources.consent(expiring, now_ms=TIME_MS + 59_999)["status"] == "active"
    expired = resources.consent(expiring, now_ms=TIME_MS + 60_000)
    validated(expired)
    assert expired["status"] == "inactive"
    assert expired["provision"]["period"]["end"] == resources.instant(TIME_MS + 60_000)


def test_consent_of_a_revoked_organisation_grant_from_the_history() -> None:
    consent = resources.consent(HISTORY_CONSENT, now_ms=TIME_MS, patient_id=PATIENT)
    validated(consent)
    assert consent["status"] == "inactive"
    assert consent["meta"]["lastUpdated"] == resources.instant(TIME_MS + 5_000)
    assert consent["meta"]["tag"][0]["code"] == "revoked"
    assert consent["provision"]["actor"][0]["reference"] == {"reference": "Organization/clinic-b"}
    assert "data" not in consent["provision"]


def test_audit_event_of_a_read_under_a_grant() -> None:
    event = resources.audit_event(EVENT)
    validated(event)
    assert event["action"] == "R" and event["recorded"] == resources.instant(TIME_MS + 2_000)
    assert event["agent"][0]["who"] == {"reference": f"Practitioner/{GRANTEE}"}
    whats = [entity["what"] for entity in event["entity"]]
    assert {"reference": f"DocumentReference/{RECORD}"} in whats
    assert {"reference": f"Consent/{GRANT['grant_id']}"} in whats
    assert "purposeOfEvent" not in event and "tag" not in event["meta"]


def test_audit_event_of_the_patients_own_read_names_the_patient() -> None:
    event = resources.audit_event(
        {**EVENT, "actor": "66" * 32, "basis": "patient", "grant_id": NO_KEY}
    )
    validated(event)
    assert event["agent"][0]["who"] == {"reference": f"Patient/{PATIENT}"}


def test_audit_event_of_a_break_glass_declaration_is_flagged_with_its_reason() -> None:
    declaration = {
        **EVENT,
        "kind": "break_glass",
        "record_id": NO_KEY,
        "action": 0,
        "basis": "break_glass",
        "grant_id": "9a" * 32,
        "reason": "unconscious patient in the emergency room",
        "expires_at_ms": TIME_MS + 3_600_000,
        "flagged_for_review": True,
    }
    event = resources.audit_event(declaration)
    validated(event)
    assert event["action"] == "E"
    assert event["subtype"][0]["code"] == "break_glass"
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert event["meta"]["tag"][0]["code"] == "flagged-for-review"
    details = [detail for entity in event["entity"] for detail in entity.get("detail", [])]
    assert {"type": "reason", "valueString": declaration["reason"]} in details
    assert all("DocumentReference" not in str(entity["what"]) for entity in event["entity"])
    read_under_it = resources.audit_event(
        {**EVENT, "basis": "break_glass", "flagged_for_review": True}
    )
    validated(read_under_it)
    assert read_under_it["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"


def test_audit_event_of_a_reenrolment() -> None:
    event = resources.audit_event(
        {
            **EVENT,
            "kind": "reenrolment",
            "record_id": NO_KEY,
            "action": 0,
            "basis": "none",
            "flagged_for_review": True,
        }
    )
    validated(event)
    assert event["subtype"][0]["code"] == "reenrolment"


def test_members_patients_and_organisations() -> None:
    validated(resources.patient(PATIENT, organization_id="hospital-0"))
    validated(resources.patient(PATIENT, active=False))
    practitioner = resources.practitioner(
        {"member_id": AUTHOR, "organization_id": "hospital-0", "role": "clinician", "active": True}
    )
    validated(practitioner)
    assert practitioner["qualification"][0]["code"]["text"] == "clinician"
    validated(resources.organization("hospital-0", "Hospital Zero"))


def test_bundles_outcomes_and_the_capability_statement() -> None:
    document = resources.document_reference(ANCHOR, None)
    searchset = resources.searchset([document], "http://node", 3)
    validated(searchset)
    assert searchset["total"] == 3 and searchset["entry"][0]["fullUrl"] == (
        f"http://node/fhir/DocumentReference/{RECORD}"
    )
    collection = resources.collection(
        [
            (resources.full_url(document), document),
            (
                "urn:emrchain:record:x",
                {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
            ),
        ],
        "export-1",
        TIME_MS,
    )
    validated(collection)
    outcome = resources.operation_outcome("invalid", "bad_search", "search parameter 'x'")
    validated(outcome)
    statement = capability_statement(100)
    validated(statement)
    assert statement["fhirVersion"] == resources.FHIR_VERSION == "4.0.1"


def test_validation_is_not_vacuous() -> None:
    document = resources.document_reference(ANCHOR, None)
    without_status = {key: value for key, value in document.items() if key != "status"}
    for broken in (without_status, {**document, "date": "yesterday"}, {**document, "x": 1}):
        with pytest.raises(pydantic.ValidationError):
            validated(broken)
    with pytest.raises(BindingError):
        validated({**document, "status": "erased"})
    with pytest.raises(pydantic.ValidationError):
        validated({**resources.consent(GRANT, now_ms=TIME_MS), "patient": "not a reference"})


# ------------------------------------------------------------------------------- search


def search(resource_type: str, query: str, max_count: int = 50):
    pairs = [tuple(item.split("=", 1)) for item in query.split("&") if item]
    return parse_search(resource_type, pairs, max_count)


def test_search_parameters_parse_with_their_bounds() -> None:
    parsed = search("DocumentReference", f"subject=Patient/{PATIENT}&status=current&_count=5")
    assert (parsed.patient_id, parsed.status, parsed.count) == (PATIENT, "current", 5)
    assert search("Consent", f"patient={PATIENT}").count == 50  # the node's bound by default
    assert search("Provenance", f"target=DocumentReference/{RECORD}").target_id == RECORD


@pytest.mark.parametrize(
    ("resource_type", "query", "message"),
    [
        ("Consent", f"patient={PATIENT}&_sort=date", "'_sort' is not supported for Consent"),
        ("AuditEvent", f"patient={PATIENT}&status=active", "'status' is not supported"),
        ("Consent", f"patient={PATIENT}&_count=51", "_count must be an integer 1..50"),
        ("Consent", f"patient={PATIENT}&_count=²", "_count must be an integer 1..50"),
        ("Consent", f"patient={PATIENT}&patient={PATIENT}", "patient may be given once"),
        ("Consent", f"patient={PATIENT}&subject=x", "not supported"),
        ("DocumentReference", f"patient={PATIENT}&subject={'ee' * 32}", "different patients"),
        (
            "Consent",
            f"patient={PATIENT}&date=ge2026-01-01&date=le2026-02-01&date=2026-01-05",
            "at most 2",
        ),
        ("Consent", f"patient={PATIENT}&date=yesterday", "date value 'yesterday'"),
        ("Consent", f"patient={PATIENT}&date=2026-02-30", "date value"),
        ("Consent", f"patient={PATIENT.upper()}", "64 lowercase hex"),
        ("AuditEvent", "_count=3", "a AuditEvent search needs patient="),
        ("Consent", f"patient={PATIENT}&date=" + "1" * 200, "longer than 128"),
    ],
)
def test_bad_searches_say_what_is_wrong(resource_type: str, query: str, message: str) -> None:
    with pytest.raises(SearchError) as refused:
        search(resource_type, query)
    assert message in str(refused.value)


def test_date_prefixes_over_days_and_instants() -> None:
    day_start = resources.instant_ms("2026-01-05T00:00:00.000Z")
    day = parse_date("2026-01-05")
    assert day.matches(day_start) and day.matches(day_start + 86_399_999)
    assert not day.matches(day_start - 1) and not day.matches(day_start + 86_400_000)
    assert parse_date("gt2026-01-05").matches(day_start + 86_400_000)
    assert not parse_date("gt2026-01-05").matches(day_start + 86_399_999)
    assert parse_date("lt2026-01-05").matches(day_start - 1)
    assert not parse_date("lt2026-01-05").matches(day_start)
    assert parse_date("le2026-01-05").matches(day_start + 86_399_999)
    assert parse_date("ge2026-01-05T01:00:00+01:00").matches(day_start)
    assert not parse_date("ge2026-01-05T01:00:00.001+01:00").matches(day_start)


def test_a_search_filters_mapped_resources_by_status_and_dates() -> None:
    active = resources.consent(GRANT, now_ms=TIME_MS)
    revoked = resources.consent(HISTORY_CONSENT, now_ms=TIME_MS, patient_id=PATIENT)
    wanted = search("Consent", f"patient={PATIENT}&status=inactive")
    assert [wanted.matches(item) for item in (active, revoked)] == [False, True]
    updated = search("Consent", f"patient={PATIENT}&_lastUpdated=gt2025-12-04T18:37:16.000Z")
    assert [updated.matches(item) for item in (active, revoked)] == [False, True]
    dated = search("Consent", f"patient={PATIENT}&date=2025-12-04")
    assert dated.matches(active) and not search(
        "Consent", f"patient={PATIENT}&date=lt2025-12-04"
    ).matches(active)
