"""The `/fhir` operations of the OpenAPI document (`openapi.py` merges them in).

Replies and errors are `application/fhir+json`: a resource of the operation's type, a
searchset Bundle, or an OperationOutcome. The query parameters are those of
`emrchain/fhir/search.py`; a combination the schema cannot state (a search without
`patient` or `_id`) is refused with a 400 OperationOutcome.
"""

from __future__ import annotations

from typing import Any

from emrchain.fhir.capability import READABLE
from emrchain.fhir.resources import FHIR_JSON
from emrchain.fhir.search import SEARCH_PARAMETERS, STATUSES

HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
OPERATION_OUTCOME = {"$ref": "#/components/schemas/OperationOutcome"}
OPERATION_OUTCOME_SCHEMA = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code", "diagnostics"],
                "properties": {
                    "severity": {"const": "error"},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                },
            },
        },
    },
}
ERROR_DESCRIPTIONS = {
    400: "an unsupported or malformed search parameter (the message names it)",
    401: "unsigned, stale, replayed, forged or unknown-key request",
    404: "unknown, or not the caller's to see (one answer for both)",
    413: "body over this route's cap",
    429: "rate limited",
    503: "busy, or the request timed out",
}
PATH_IDS = {
    "Organization": {"type": "string", "pattern": "^[a-z0-9._-]{1,64}$"},
}
DATE = {"type": "string", "format": "date"}
PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "_id": HEX32,
    "patient": {"type": "string", "pattern": "^(Patient/)?[0-9a-f]{64}$"},
    "subject": {"type": "string", "pattern": "^(Patient/)?[0-9a-f]{64}$"},
    "target": {"type": "string", "pattern": "^(DocumentReference/)?[0-9a-f]{64}$"},
    "date": DATE,
    "_lastUpdated": DATE,
}


def _resource(resource_type: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["resourceType", *properties],
        "properties": {"resourceType": {"const": resource_type}, **properties},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    responses = {}
    for status in sorted({*statuses, 413, 429, 503}):
        response: dict[str, Any] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {FHIR_JSON: {"schema": OPERATION_OUTCOME}},
        }
        if status == 429:
            response["headers"] = {"Retry-After": {"required": True, "schema": {"type": "string"}}}
        responses[str(status)] = response
    return responses


def _ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "OK", "content": {FHIR_JSON: {"schema": schema}}}}


def _search_parameters(resource_type: str, max_count: int) -> list[dict[str, Any]]:
    parameters = []
    for name in sorted(SEARCH_PARAMETERS[resource_type]):
        if name == "_count":
            schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": max_count}
        elif name == "status":
            schema = {"enum": sorted(STATUSES[resource_type])}
        else:
            schema = PARAMETER_SCHEMAS[name]
        parameters.append(
            {
                "name": name,
                "in": "query",
                # An AuditEvent search is by patient only; the others take patient or _id.
                "required": resource_type == "AuditEvent" and name == "patient",
                "schema": schema,
            }
        )
    return parameters


def fhir_paths(signed: list[dict[str, list[str]]], max_count: int) -> dict[str, Any]:
    """The `/fhir` path items; `signed` is the document's security requirement."""
    paths: dict[str, Any] = {
        "/fhir/metadata": {
            "get": {
                "operationId": "fhirCapabilityStatement",
                "description": "The CapabilityStatement (FHIR R4, fhirVersion 4.0.1).",
                "responses": {
                    **_ok(_resource("CapabilityStatement", fhirVersion={"const": "4.0.1"})),
                    **_errors(),
                },
            }
        }
    }
    bundle = _resource(
        "Bundle", type={"const": "searchset"}, entry={"type": "array", "maxItems": max_count}
    )
    # Left out when a filtered search stopped at [rpc] fhir_max_scan (docs/spec/fhir.md §2).
    bundle["properties"]["total"] = {"type": "integer", "minimum": 0}
    for resource_type in sorted(SEARCH_PARAMETERS):
        paths[f"/fhir/{resource_type}"] = {
            "get": {
                "operationId": f"fhirSearch{resource_type}",
                "security": signed,
                "parameters": _search_parameters(resource_type, max_count),
                "responses": {**_ok(bundle), **_errors(400, 401, 404)},
            }
        }
    for resource_type in READABLE:
        paths[f"/fhir/{resource_type}/{{id}}"] = {
            "get": {
                "operationId": f"fhirRead{resource_type}",
                "security": signed,
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "schema": PATH_IDS.get(resource_type, HEX32),
                    }
                ],
                "responses": {
                    **_ok(_resource(resource_type, id={"type": "string"})),
                    **_errors(401, 404),
                },
            }
        }
    return paths
