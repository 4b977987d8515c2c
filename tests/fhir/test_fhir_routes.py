"""The node's /fhir facade against a real node: every response validates with the R4B models
of fhir.resources; reads and searches follow the JSON routes' access rules; errors are
OperationOutcomes; a FHIR Observation stored as a record comes back identical through /fhir
after decryption on the client, and that read is on the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
import pytest

from emrchain.client.fhir_content import encode_resource
from emrchain.client.replies import BadRequest, NotFound
from emrchain.client.rpc import EmrClient
from emrchain.schema import AmendmentReason, RecordType
from tests.client.conftest import RealNode
from tests.fhir.validate import validated

TEST_DEADLINE_S = 90.0
FHIR_JSON = "application/fhir+json"
Result = TypeVar("Result")
OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "hba1c-1",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}]},
    "effectiveDateTime": "2026-11-24T08:30:00Z",
    "valueQuantity": {
        "value": 6.1,
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    },
}


def run(scenario: Awaitable[Result]) -> Result:
    async def bounded() -> Result:
        async with asyncio.timeout(TEST_DEADLINE_S):
            return await scenario

    return asyncio.run(bounded())


def entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    validated(bundle)
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_metadata_is_an_r4_capability_statement(real_node: RealNode) -> None:
    async def scenario() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{real_node.url}/fhir/metadata") as response,
        ):
            assert response.status == 200
            assert response.content_type == FHIR_JSON
            statement = await response.json(content_type=FHIR_JSON)
        validated(statement)
        assert statement["fhirVersion"] == "4.0.1"
        served = {item["type"]: item for item in statement["rest"][0]["resource"]}
        assert set(served) == {
            "AuditEvent",
            "Consent",
            "DocumentReference",
            "Organization",
            "Patient",
            "Practitioner",
            "Provenance",
        }
        assert {"name": "_count", "type": "number"} in served["Consent"]["searchParam"]

    run(scenario())


def test_observation_round_trip_through_fhir_with_consent_and_trail(real_node: RealNode) -> None:
    cast = real_node.cast()

    async def scenario() -> None:
        async with EmrClient(real_node.url, cast.clinician) as clinician:
            stored = await clinician.store_fhir_resource(OBSERVATION, cast.patient_id)
        record_hex = stored.record_id.hex()
        patient_hex = cast.patient_id.hex()
        async with EmrClient(real_node.url, cast.patient) as patient:
            document = await patient.fhir_read("DocumentReference", record_hex)
            validated(document)
            assert document["status"] == "current"
            assert document["subject"] == {"reference": f"Patient/{patient_hex}"}
            assert document["type"]["coding"][0]["code"] == "lab_result"
            url = document["content"][0]["attachment"]["url"]
            assert url == f"{real_node.url}/records/{record_hex}"
            # The node served metadata only; the content comes through the audited read.
            assert await patient.read_attachment(document) == OBSERVATION
            grant = await patient.grant(
                record_id=stored.record_id, grantee_member=cast.outsider.member_key
            )
            consents = entries(await patient.fhir_search("Consent", patient=patient_hex))
            assert [item["id"] for item in consents] == [grant.tx_id.hex()]
            assert consents[0]["status"] == "active"
            assert consents[0]["provision"]["data"][0]["reference"] == {
                "reference": f"DocumentReference/{record_hex}"
            }
            validated(await patient.fhir_read("Consent", grant.tx_id.hex()))
            events = entries(
                await patient.fhir_search("AuditEvent", patient=f"Patient/{patient_hex}")
            )
            reads = [item for item in events if item["subtype"][0]["code"] == "access"]
            assert len(reads) == 2  # the attachment read and the grant's own read of the key
            assert all(
                {"what": {"reference": f"DocumentReference/{record_hex}"}} in item["entity"]
                for item in reads
            )
            provenance = await patient.fhir_read("Provenance", record_hex)
            validated(provenance)
            assert provenance["agent"][0]["who"] == {
                "reference": f"Practitioner/{cast.clinician.member_key.hex()}"
            }
            validated(await patient.fhir_read("Patient", patient_hex))
            validated(await patient.fhir_read("Organization", "hospital-0"))
            one = entries(
                await patient.fhir_search("Provenance", target=f"DocumentReference/{record_hex}")
            )
            assert [item["id"] for item in one] == [record_hex]
        async with EmrClient(real_node.url, cast.outsider) as outsider:
            # The grantee reads the record through /fhir as well, its read audited too.
            document = await outsider.fhir_read("DocumentReference", record_hex)
            assert await outsider.read_attachment(document) == OBSERVATION
        async with EmrClient(real_node.url, cast.auditor) as auditor:
            events = entries(
                await auditor.fhir_search("AuditEvent", patient=patient_hex, _count="1")
            )
            assert len(events) == 1
            bundle = await auditor.fhir_search("AuditEvent", patient=patient_hex)
            assert bundle["total"] == 3
            validated(await auditor.fhir_read("Practitioner", cast.clinician.member_key.hex()))

    run(scenario())


def test_a_clinician_is_refused_what_the_json_routes_refuse(real_node: RealNode) -> None:
    cast = real_node.cast()

    async def scenario() -> None:
        async with EmrClient(real_node.url, cast.clinician) as clinician:
            stored = await clinician.put_record(
                b"a note", cast.patient_id, RecordType.CLINICAL_NOTE
            )
        patient_hex = cast.patient_id.hex()
        async with EmrClient(real_node.url, cast.outsider) as outsider:
            for resource_type, parameters in (
                ("Consent", {"patient": patient_hex}),
                ("AuditEvent", {"patient": patient_hex}),
            ):
                with pytest.raises(NotFound):
                    await outsider.fhir_search(resource_type, **parameters)
            with pytest.raises(NotFound):
                await outsider.grants(patient_id=cast.patient_id)  # the JSON route agrees
            with pytest.raises(NotFound):
                await outsider.fhir_read("DocumentReference", stored.record_id.hex())
            with pytest.raises(NotFound):
                await outsider.fhir_read("Patient", patient_hex)
            with pytest.raises(NotFound):
                await outsider.fhir_read("Practitioner", cast.clinician.member_key.hex())
            # A search by id returns nothing rather than the record it may not see.
            bundle = await outsider.fhir_search("DocumentReference", _id=stored.record_id.hex())
            assert entries(bundle) == [] and bundle["total"] == 0
        async with EmrClient(real_node.url, cast.clinician) as author:
            # The author reads its own record's DocumentReference (it may read the record).
            validated(await author.fhir_read("DocumentReference", stored.record_id.hex()))
            with pytest.raises(NotFound):
                await author.fhir_search("Consent", patient=patient_hex)

    run(scenario())


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("Consent?patient={p}&name=x", "search parameter 'name' is not supported for Consent"),
        ("AuditEvent?_id={p}", "search parameter '_id' is not supported for AuditEvent"),
        ("Consent?_count=0&patient={p}", "_count must be an integer 1..100"),
        ("Consent?status=revoked&patient={p}", "status of a Consent is one of: active, inactive"),
        ("Consent?date=2026-13-01&patient={p}", "date value '2026-13-01'"),
        ("Consent", "a Consent search needs patient= or _id="),
        ("Consent?patient=Patient/xyz", "patient must be a Patient id"),
    ],
)
def test_bad_searches_are_operation_outcomes(real_node: RealNode, query: str, message: str) -> None:
    cast = real_node.cast()

    async def scenario() -> None:
        async with EmrClient(real_node.url, cast.patient) as patient:
            resource_type, _, text = query.format(p=cast.patient_id.hex()).partition("?")
            parameters = dict(item.split("=", 1) for item in text.split("&") if item)
            with pytest.raises(BadRequest) as refused:
                await patient.fhir_search(resource_type, **parameters)
            assert refused.value.code == "bad_search"
            assert message in refused.value.message

    run(scenario())


def test_unsigned_and_unknown_are_operation_outcomes(real_node: RealNode) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            for path, status, issue in (
                (f"/fhir/Consent/{'ab' * 32}", 401, "login"),
                ("/fhir/Basic/1", 404, "not-found"),
                ("/fhir/metadata", 405, "not-supported"),
            ):
                method = "POST" if status == 405 else "GET"
                async with session.request(method, f"{real_node.url}{path}") as response:
                    assert response.status == status, path
                    assert response.content_type == FHIR_JSON
                    outcome = await response.json(content_type=FHIR_JSON)
                validated(outcome)
                assert outcome["issue"][0]["code"] == issue

    run(scenario())
    cast = real_node.cast()

    async def unknown_id() -> None:
        async with EmrClient(real_node.url, cast.auditor) as auditor:
            with pytest.raises(NotFound):
                await auditor.fhir_read("DocumentReference", "cd" * 32)
            with pytest.raises(NotFound):
                await auditor.fhir_read("Organization", "no-such-organisation")

    run(unknown_id())


def test_patient_wide_searches_follow_the_listing_rules(real_node: RealNode) -> None:
    cast = real_node.cast()
    patient_hex = cast.patient_id.hex()

    async def scenario() -> None:
        async with EmrClient(real_node.url, cast.clinician) as clinician:
            first = await clinician.store_fhir_resource(OBSERVATION, cast.patient_id)
            second = await clinician.put_record(
                b"a note", cast.patient_id, RecordType.CLINICAL_NOTE
            )
        ids = [first.record_id.hex(), second.record_id.hex()]
        async with EmrClient(real_node.url, cast.patient) as patient:
            bundle = await patient.fhir_search("DocumentReference", patient=patient_hex)
            assert [item["id"] for item in entries(bundle)] == ids and bundle["total"] == 2
            page = await patient.fhir_search("DocumentReference", subject=patient_hex, _count="1")
            assert [item["id"] for item in entries(page)] == ids[:1] and page["total"] == 2
            typed = await patient.fhir_search("Provenance", patient=patient_hex, _count="5")
            assert [item["id"] for item in entries(typed)] == ids
            none = await patient.fhir_search(
                "DocumentReference", patient=patient_hex, date="lt2000-01-01"
            )
            assert entries(none) == [] and none["total"] == 0
            today = await patient.fhir_search(
                "DocumentReference", patient=patient_hex, status="current", date="ge2000-01-01"
            )
            assert [item["id"] for item in entries(today)] == ids
            grant = await patient.grant(
                record_id=first.record_id, grantee_member=cast.outsider.member_key
            )
            await patient.revoke(grant.tx_id)
            organisation = await patient.grant(
                patient_id=cast.patient_id, grantee_organization=real_node.clinic_b.organization_id
            )
            revoked = entries(
                await patient.fhir_search("Consent", patient=patient_hex, status="inactive")
            )
            assert [item["id"] for item in revoked] == [grant.tx_id.hex()]
            assert revoked[0]["meta"]["tag"][0]["code"] == "revoked"
            validated(await patient.fhir_read("Consent", grant.tx_id.hex()))  # ended, still read
            active = entries(
                await patient.fhir_search("Consent", patient=patient_hex, status="active")
            )
            assert [item["id"] for item in active] == [organisation.tx_id.hex()]
        async with EmrClient(real_node.url, cast.outsider) as outsider:
            # A patient-scope grant to its organisation lets clinic-b's clinician list the
            # records (GET /patients/{id}/records agrees), not the grants or the trail.
            listed = entries(await outsider.fhir_search("DocumentReference", patient=patient_hex))
            assert [item["id"] for item in listed] == ids
            assert len((await outsider.patient_records(cast.patient_id))["records"]) == 2
            with pytest.raises(NotFound):
                await outsider.fhir_search("Consent", patient=patient_hex)
        async with EmrClient(real_node.url, cast.clinician) as author:
            # The author reads its records, but lists nothing of the patient without a grant.
            with pytest.raises(NotFound):
                await author.fhir_search("DocumentReference", patient=patient_hex)
            with pytest.raises(NotFound):
                await author.patient_records(cast.patient_id)
        async with EmrClient(real_node.url, real_node.clinic_b.admin) as other_admin:
            # An admin lists its own organisation's records of the patient only: none here.
            bundle = await other_admin.fhir_search("DocumentReference", patient=patient_hex)
            assert entries(bundle) == []

    run(scenario())


def test_an_amended_observation_through_fhir(real_node: RealNode) -> None:
    cast = real_node.cast()
    corrected = {**OBSERVATION, "valueQuantity": {**OBSERVATION["valueQuantity"], "value": 6.3}}

    async def scenario() -> None:
        async with EmrClient(real_node.url, cast.clinician) as clinician:
            first = await clinician.store_fhir_resource(OBSERVATION, cast.patient_id)
            second = await clinician.amend_record(
                encode_resource(corrected),
                cast.patient_id,
                RecordType.LAB_RESULT,
                first.record_id,
                AmendmentReason.CORRECTION,
                "wrong calibration",
            )
        old, new = first.record_id.hex(), second.record_id.hex()
        async with EmrClient(real_node.url, cast.patient) as patient:
            replaced = await patient.fhir_read("DocumentReference", old)
            validated(replaced)
            assert replaced["status"] == "superseded" and "relatesTo" not in replaced
            current = await patient.fhir_read("DocumentReference", new)
            validated(current)
            assert current["status"] == "current"
            assert current["relatesTo"] == [
                {"code": "replaces", "target": {"reference": f"DocumentReference/{old}"}}
            ]
            provenance = await patient.fhir_read("Provenance", new)
            assert provenance["entity"][0]["what"] == {"reference": f"DocumentReference/{old}"}
            superseded = entries(
                await patient.fhir_search(
                    "DocumentReference", patient=cast.patient_id.hex(), status="superseded"
                )
            )
            assert [item["id"] for item in superseded] == [old]
            # Both versions stay readable; each comes back as it was stored.
            assert await patient.read_attachment(replaced) == OBSERVATION
            assert await patient.read_attachment(current) == corrected

    run(scenario())
