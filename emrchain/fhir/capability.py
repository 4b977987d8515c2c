"""The CapabilityStatement of the node's `/fhir` facade (`GET /fhir/metadata`)."""

from __future__ import annotations

from typing import Any

from emrchain.fhir.resources import FHIR_JSON, FHIR_VERSION
from emrchain.fhir.search import PARAMETER_TYPES, SEARCH_PARAMETERS

READABLE = ("DocumentReference", "Consent", "Provenance", "Patient", "Practitioner", "Organization")
"""Types with `GET /fhir/<type>/<id>`; AuditEvent is searched by patient only."""
PUBLISHED = "2026-12-04"
"""When this statement last changed (a fixed date: the statement is part of the code)."""


def capability_statement(max_count: int) -> dict[str, Any]:
    resource_types = sorted({*READABLE, *SEARCH_PARAMETERS})
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": PUBLISHED,
        "publisher": "emrchain",
        "kind": "instance",
        "software": {"name": "emrchain"},
        "implementation": {
            "description": "emrchain node: the chain's anchors, consent and "
            "access trail as FHIR R4; record content is sealed, the client "
            "decrypts"
        },
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "description": "Every request but this one is signed with a member key "
                    "(X-Emrchain-* headers, docs/spec/rpc.md); access follows the chain's "
                    "consent rules. _count is at most "
                    f"{max_count}."
                },
                "resource": [_resource(name) for name in resource_types],
            }
        ],
    }


def _resource(resource_type: str) -> dict[str, Any]:
    interactions = []
    if resource_type in READABLE:
        interactions.append({"code": "read"})
    parameters = sorted(SEARCH_PARAMETERS.get(resource_type, ()))
    if parameters:
        interactions.append({"code": "search-type"})
    resource: dict[str, Any] = {"type": resource_type, "interaction": interactions}
    if parameters:
        resource["searchParam"] = [
            {"name": name, "type": PARAMETER_TYPES[name]} for name in parameters
        ]
    return resource
