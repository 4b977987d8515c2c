"""Helpers of the operations tests: HTTP against a node's instrumentation port, the metrics
table of docs/spec/metrics.md, and the exposition's metric names."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REPOSITORY = Path(__file__).resolve().parents[2]
METRICS_DOC = REPOSITORY / "docs" / "spec" / "metrics.md"
_TABLE_ROW = re.compile(r"^\| `([a-z0-9_]+)` \| (gauge|counter|histogram) ")


def documented_metrics(text: str) -> dict[str, str]:
    """Metric name -> type, from the tables of docs/spec/metrics.md (rows `| `name` | type`)."""
    documented: dict[str, str] = {}
    for line in text.splitlines():
        match = _TABLE_ROW.match(line)
        if match:
            name, kind = match.groups()
            if name in documented:
                raise AssertionError(f"{name} is documented twice")
            documented[name] = kind
    return documented


def exposed_metrics(exposition: str) -> dict[str, str]:
    """Metric name -> type in a /metrics reply, names as exposed (counters with `_total`)."""
    exposed = {}
    for family in text_string_to_metric_families(exposition):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        exposed[name] = family.type
    return exposed


def mismatches(documented: dict[str, str], exposed: dict[str, str]) -> list[str]:
    """Every way the doc and the exposition disagree (empty when they match)."""
    problems = [f"{name} is documented but not exposed" for name in documented.keys() - exposed]
    problems += [f"{name} is exposed but not documented" for name in exposed.keys() - documented]
    problems += [
        f"{name} is a {exposed[name]}, documented as a {documented[name]}"
        for name in documented.keys() & exposed.keys()
        if documented[name] != exposed[name]
    ]
    return sorted(problems)


def get(url: str, timeout_s: float = 5.0) -> tuple[int, Any]:
    """(status, body) of a GET; JSON bodies decoded, others as text."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status, raw, kind = (
                response.status,
                response.read(),
                response.headers.get_content_type(),
            )
    except urllib.error.HTTPError as error:
        status, raw, kind = error.code, error.read(), error.headers.get_content_type()
    text = raw.decode()
    return status, json.loads(text) if kind == "application/json" else text


def try_get(url: str, timeout_s: float = 2.0) -> tuple[int, Any] | None:
    """`get`, or None while nothing listens (a node starting or stopped)."""
    try:
        return get(url, timeout_s)
    except OSError:
        return None
