"""Validation of emitted resources with the maintained pydantic models of `fhir.resources`.

Its R4 models are the R4B package (4.3.0, the closest to R4 4.0.1 in this version of
fhir.resources; docs/spec/fhir.md says what differs for the resources used here)."""

from __future__ import annotations

import importlib
from typing import Any


def validated(resource: dict[str, Any]) -> Any:
    """The R4B model of `resource`; raises pydantic's ValidationError if it is not valid. A
    Bundle's entries are validated as their own types too (the model checks them)."""
    resource_type = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    model = getattr(module, resource_type)
    parsed = model.model_validate(resource)
    if resource_type == "Bundle":
        for entry in resource.get("entry", ()):
            validated(entry["resource"])
    return parsed
