"""FHIR resources as record plaintext (emrchain/client/fhir_content.py): each kind the issue
names round-trips through its canonical JSON, is anchored under its clinical record type, and
anything else is told apart."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from emrchain.client.fhir_content import (
    NotFhirError,
    encode_resource,
    fhir_resource_of,
    record_type_of,
)
from emrchain.schema import RecordType
from tests.fhir.test_fhir_routes import OBSERVATION
from tests.fhir.validate import validated

PATIENT_REFERENCE = {"reference": "Patient/" + "cd" * 32}
DIAGNOSTIC_REPORT: dict[str, Any] = {
    "resourceType": "DiagnosticReport",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
    "subject": PATIENT_REFERENCE,
    "result": [{"reference": "Observation/hba1c-1"}],
    "conclusion": "HbA1c above target: é, 漢字 stay as they are",
}
DOCUMENT_REFERENCE: dict[str, Any] = {
    "resourceType": "DocumentReference",
    "status": "current",
    "subject": PATIENT_REFERENCE,
    "content": [
        {
            "attachment": {
                "contentType": "text/plain",
                "data": base64.b64encode(b"discharge letter").decode(),
            }
        }
    ],
}
BUNDLE: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [{"resource": OBSERVATION}, {"resource": DIAGNOSTIC_REPORT}],
}


@pytest.mark.parametrize(
    ("resource", "record_type"),
    [
        (OBSERVATION, RecordType.LAB_RESULT),
        (DIAGNOSTIC_REPORT, RecordType.LAB_RESULT),
        (DOCUMENT_REFERENCE, RecordType.CLINICAL_NOTE),
        (BUNDLE, RecordType.OTHER),
    ],
)
def test_each_kind_round_trips_identically(
    resource: dict[str, Any], record_type: RecordType
) -> None:
    validated(resource)  # the samples are FHIR
    plaintext = encode_resource(resource)
    assert fhir_resource_of(plaintext) == resource
    assert encode_resource(fhir_resource_of(plaintext) or {}) == plaintext  # canonical
    assert record_type_of(resource) == record_type


def test_the_encoding_is_canonical_utf8() -> None:
    assert encode_resource({"status": "x", "resourceType": "Basic"}) == (
        b'{"resourceType":"Basic","status":"x"}'
    )
    assert "漢字".encode() in encode_resource(DIAGNOSTIC_REPORT)


@pytest.mark.parametrize(
    "value",
    [
        {"status": "final"},
        {"resourceType": 5},
        {"resourceType": "observation"},
        ["a"],
        {"resourceType": "Basic", "x": {1, 2}},
    ],
)
def test_what_is_no_resource_is_not_stored(value: Any) -> None:
    with pytest.raises(NotFhirError):
        encode_resource(value)


@pytest.mark.parametrize(
    "plaintext",
    [
        b"%PDF-1.7 ...",
        b'{"status": "final"}',
        b"[1, 2]",
        b'{"resourceType": "x y"}',
        b"{\xff}",
        b"{" * 100_000,
    ],
)
def test_other_plaintexts_are_not_taken_for_fhir(plaintext: bytes) -> None:
    assert fhir_resource_of(plaintext) is None
