"""Validation of emitted resources with the maintained pydantic models of `fhir.resources`.

Its R4 models are the R4B package (4.3.0, the closest to R4 4.0.1 in this version of
fhir.resources; docs/spec/fhir.md says why that is enough for the resources emitted). The
models check structure, types, cardinality and formats but not the value sets a code is bound
to, so the codes with a *required* binding that the mapping emits are checked here against
the R4 value sets."""

from __future__ import annotations

import importlib
from typing import Any

REQUIRED_BINDINGS: dict[tuple[str, str], frozenset[str]] = {
    ("DocumentReference", "status"): frozenset({"current", "superseded", "entered-in-error"}),
    ("Consent", "status"): frozenset(
        {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
    ),
    ("AuditEvent", "action"): frozenset({"C", "R", "U", "D", "E"}),
    ("AuditEvent", "outcome"): frozenset({"0", "4", "8", "12"}),
    ("Bundle", "type"): frozenset({"searchset", "collection", "document"}),
    ("CapabilityStatement", "status"): frozenset({"draft", "active", "retired", "unknown"}),
    ("CapabilityStatement", "kind"): frozenset({"instance", "capability", "requirements"}),
}
RELATES_TO_CODES = frozenset({"replaces", "transforms", "signs", "appends"})
ISSUE_SEVERITIES = frozenset({"fatal", "error", "warning", "information"})
PROVISION_TYPES = frozenset({"deny", "permit"})


class BindingError(ValueError):
    """A code outside the value set its element is bound to (required strength)."""


def _check_bindings(resource: dict[str, Any]) -> None:
    resource_type = resource["resourceType"]
    for (bound_type, element), allowed in REQUIRED_BINDINGS.items():
        if bound_type == resource_type and element in resource and resource[element] not in allowed:
            raise BindingError(f"{resource_type}.{element} = {resource[element]!r}")
    for relation in resource.get("relatesTo", ()) if resource_type == "DocumentReference" else ():
        if relation["code"] not in RELATES_TO_CODES:
            raise BindingError(f"DocumentReference.relatesTo.code = {relation['code']!r}")
    if resource_type == "OperationOutcome":
        for issue in resource["issue"]:
            if issue["severity"] not in ISSUE_SEVERITIES:
                raise BindingError(f"OperationOutcome.issue.severity = {issue['severity']!r}")
    if resource_type == "Consent" and resource["provision"]["type"] not in PROVISION_TYPES:
        raise BindingError(f"Consent.provision.type = {resource['provision']['type']!r}")


def validated(resource: dict[str, Any]) -> Any:
    """The R4B model of `resource`; raises pydantic's ValidationError (or BindingError) if it
    is not valid. A Bundle's entries are validated as their own types too."""
    resource_type = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    model = getattr(module, resource_type)
    parsed = model.model_validate(resource)
    _check_bindings(resource)
    if resource_type == "Bundle":
        for entry in resource.get("entry", ()):
            validated(entry["resource"])
    return parsed
