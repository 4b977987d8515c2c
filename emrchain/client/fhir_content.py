"""FHIR resources as record plaintext (`docs/client.md` §FHIR).

A client stores a FHIR resource (an Observation, a DiagnosticReport, a DocumentReference with
its content, a Bundle) as a record's plaintext, sealed as any record: its canonical JSON
(keys sorted, no whitespace, UTF-8). The record type on the chain is the resource's clinical
category (`RECORD_TYPES`); what makes the plaintext FHIR is the plaintext itself, a JSON
object with a `resourceType`, which only a reader's client sees. `fhir_resource_of` is the one
test both the reader and the patient's export apply.
"""

from __future__ import annotations

import json
import re
from typing import Any

from emrchain.schema import RecordType

RECORD_TYPES = {
    "Observation": RecordType.LAB_RESULT,
    "DiagnosticReport": RecordType.LAB_RESULT,
    "ImagingStudy": RecordType.IMAGING,
    "MedicationRequest": RecordType.PRESCRIPTION,
    "Immunization": RecordType.IMMUNIZATION,
    "ServiceRequest": RecordType.REFERRAL,
    "DocumentReference": RecordType.CLINICAL_NOTE,
    "Composition": RecordType.CLINICAL_NOTE,
}
"""The record type a resource is anchored under unless the caller names one; others: OTHER."""
RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


class NotFhirError(ValueError):
    """A plaintext (or a value to store) that is not a FHIR resource in JSON."""


def encode_resource(resource: dict[str, Any]) -> bytes:
    """The plaintext a resource is stored as; refuses what `fhir_resource_of` would not
    read back."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise NotFhirError("a FHIR resource is a JSON object with a resourceType")
    if not RESOURCE_TYPE.match(resource["resourceType"]):
        raise NotFhirError(f"not a FHIR resource type: {resource['resourceType'][:64]!r}")
    try:
        text = json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise NotFhirError(f"not JSON: {error}") from None
    return text.encode("utf-8")


def record_type_of(resource: dict[str, Any]) -> RecordType:
    return RECORD_TYPES.get(str(resource.get("resourceType")), RecordType.OTHER)


def fhir_resource_of(plaintext: bytes) -> dict[str, Any] | None:
    """The FHIR resource a plaintext holds, or None when it holds something else (a PDF, a
    note, JSON without a resource type)."""
    if not plaintext.lstrip().startswith(b"{"):
        return None
    try:
        value = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    resource_type = value.get("resourceType")
    if not isinstance(resource_type, str) or not RESOURCE_TYPE.match(resource_type):
        return None
    return value
