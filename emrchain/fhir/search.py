"""FHIR search parameters: which apply to which resource type, parsing with bounds, and
matching a mapped resource.

Supported (`docs/spec/fhir.md`): `_id`, `patient` / `subject` (a patient id, or
`Patient/<id>`), `target` (Provenance: `DocumentReference/<id>`), `date` and `_lastUpdated`
(with the prefixes eq, ge, gt, le, lt over a day `YYYY-MM-DD` or an instant), `status`, and
`_count` (1..the node's `[rpc] fhir_max_count`). Anything else is refused with a message that
names it: a parameter a server silently ignores returns more than the client asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emrchain.fhir.resources import instant_ms

SEARCH_PARAMETERS: dict[str, frozenset[str]] = {
    "DocumentReference": frozenset(
        {"_id", "patient", "subject", "date", "status", "_lastUpdated", "_count"}
    ),
    "Consent": frozenset({"_id", "patient", "date", "status", "_lastUpdated", "_count"}),
    "AuditEvent": frozenset({"patient", "date", "_lastUpdated", "_count"}),
    "Provenance": frozenset({"_id", "patient", "target", "_lastUpdated", "_count"}),
}
"""The search parameters of each searchable resource type (`CapabilityStatement` lists them)."""
PARAMETER_TYPES = {
    "_id": "token",
    "patient": "reference",
    "subject": "reference",
    "target": "reference",
    "date": "date",
    "status": "token",
    "_lastUpdated": "date",
    "_count": "number",
}
DATE_PATHS = {
    "DocumentReference": "date",
    "Consent": "dateTime",
    "AuditEvent": "recorded",
    "Provenance": "recorded",
}
"""The element each type's `date` parameter compares."""
STATUSES = {
    "DocumentReference": frozenset({"current", "superseded", "entered-in-error"}),
    "Consent": frozenset({"active", "inactive"}),
}
MAX_DATE_VALUES = 2
"""A range is two bounds (`date=ge...&date=lt...`); more adds nothing but work."""
MAX_PARAMETER_CHARACTERS = 128
FHIR_ID = re.compile(r"^[0-9a-f]{64}$")
DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:\d{2})$")
DAY_MS = 86_400_000
PREFIXES = ("eq", "ge", "gt", "le", "lt")


class SearchError(ValueError):
    """A search the node refuses (400, an OperationOutcome with this message)."""


@dataclass(frozen=True, slots=True)
class DateBound:
    """`prefix` over the interval [start_ms, end_ms) the value denotes."""

    prefix: str
    start_ms: int
    end_ms: int

    def matches(self, time_ms: int) -> bool:
        if self.prefix == "eq":
            return self.start_ms <= time_ms < self.end_ms
        if self.prefix == "ge":
            return time_ms >= self.start_ms
        if self.prefix == "gt":
            return time_ms >= self.end_ms
        if self.prefix == "le":
            return time_ms < self.end_ms
        return time_ms < self.start_ms  # lt


@dataclass(frozen=True, slots=True)
class Search:
    resource_type: str
    count: int
    resource_id: str | None = None
    patient_id: str | None = None
    target_id: str | None = None
    status: str | None = None
    dates: tuple[DateBound, ...] = ()
    last_updated: tuple[DateBound, ...] = ()

    @property
    def filters(self) -> bool:
        """Whether matching needs the mapped resource (else every listed item matches)."""
        return bool(self.status or self.dates or self.last_updated or self.resource_id)

    def matches(self, resource: Mapping[str, Any]) -> bool:
        """Whether a mapped resource passes the filters the mapping decides (status and
        dates); ids and the patient select what is mapped in the first place."""
        if self.resource_id is not None and resource.get("id") != self.resource_id:
            return False
        if self.status is not None and resource.get("status") != self.status:
            return False
        if self.dates:
            date_ms = instant_ms(resource[DATE_PATHS[self.resource_type]])
            if not all(bound.matches(date_ms) for bound in self.dates):
                return False
        if self.last_updated:
            updated_ms = instant_ms(resource["meta"]["lastUpdated"])
            if not all(bound.matches(updated_ms) for bound in self.last_updated):
                return False
        return True


def parse_date(text: str) -> DateBound:
    """`[prefix]YYYY-MM-DD` (that UTC day) or `[prefix]` + an instant with its offset (that
    millisecond)."""
    prefix, value = (text[:2], text[2:]) if text[:2] in PREFIXES else ("eq", text)
    day = DAY.match(value)
    try:
        if day is not None:
            start = datetime(int(day[1]), int(day[2]), int(day[3]), tzinfo=UTC)
            start_ms = instant_ms(start.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
            return DateBound(prefix, start_ms, start_ms + DAY_MS)
        if INSTANT.match(value):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
            start_ms = instant_ms(
                moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
            )
            return DateBound(prefix, start_ms, start_ms + 1)
    except (ValueError, OverflowError):
        pass
    raise SearchError(
        f"date value {text[:40]!r}: expected [eq|ge|gt|le|lt]YYYY-MM-DD or an instant "
        "such as 2026-12-04T10:00:00Z"
    )


def _reference_id(name: str, text: str, resource_type: str) -> str:
    """A patient id or record id, bare or as `Type/<id>`."""
    value = text.removeprefix(f"{resource_type}/")
    if not FHIR_ID.match(value):
        raise SearchError(
            f"{name} must be a {resource_type} id (64 lowercase hex) or {resource_type}/<id>"
        )
    return value


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise SearchError(f"{name} may be given once")
    return values[0]


def _count(text: str | None, max_count: int) -> int:
    if text is None:
        return max_count
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= max_count:
        raise SearchError(f"_count must be an integer 1..{max_count}")
    return int(text)


def _dates(values: list[str] | None, name: str) -> tuple[DateBound, ...]:
    if not values:
        return ()
    if len(values) > MAX_DATE_VALUES:
        raise SearchError(f"{name} may be given at most {MAX_DATE_VALUES} times (a range)")
    return tuple(parse_date(value) for value in values)


def parse_search(resource_type: str, pairs: Iterable[tuple[str, str]], max_count: int) -> Search:
    """The search a query string asks for, or SearchError naming what is wrong."""
    allowed = SEARCH_PARAMETERS[resource_type]
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in allowed:
            supported = ", ".join(sorted(allowed))
            raise SearchError(
                f"search parameter {name[:40]!r} is not supported for {resource_type} "
                f"(supported: {supported})"
            )
        if len(value) > MAX_PARAMETER_CHARACTERS:
            raise SearchError(f"{name} is longer than {MAX_PARAMETER_CHARACTERS} characters")
        query.setdefault(name, []).append(value)
    patient = _single(query, "patient")
    subject = _single(query, "subject")
    if patient is not None and subject is not None and patient != subject:
        raise SearchError("patient and subject name different patients")
    patient_text = patient if patient is not None else subject
    resource_id = _single(query, "_id")
    target = _single(query, "target")
    status = _single(query, "status")
    if status is not None and status not in STATUSES.get(resource_type, frozenset()):
        choices = ", ".join(sorted(STATUSES.get(resource_type, ())))
        raise SearchError(f"status of a {resource_type} is one of: {choices}")
    search = Search(
        resource_type=resource_type,
        count=_count(_single(query, "_count"), max_count),
        resource_id=None
        if resource_id is None
        else _reference_id("_id", resource_id, resource_type),
        patient_id=None
        if patient_text is None
        else _reference_id("patient", patient_text, "Patient"),
        target_id=None if target is None else _reference_id("target", target, "DocumentReference"),
        status=status,
        dates=_dates(query.get("date"), "date"),
        last_updated=_dates(query.get("_lastUpdated"), "_lastUpdated"),
    )
    if search.patient_id is None and search.resource_id is None and search.target_id is None:
        needs = "patient=" if "_id" not in allowed else "patient= or _id="
        raise SearchError(f"a {resource_type} search needs {needs}: results are per patient")
    return search
