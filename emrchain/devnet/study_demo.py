"""A whole study on a running devnet (`scripts/demo-study`, `tests/analytics/test_study_devnet.py`):
two hospitals store HbA1c Observations for patients who opted in to research and for one who
did not; a clinician of the first proposes a study, both admins approve, the sponsor runs a
count, a sum, a mean and a histogram, then one query too many, which the chain refuses."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrchain.analytics.aggregator import StudyRelease, run_query
from emrchain.client import transactions
from emrchain.client.replies import TransactionRefusedError
from emrchain.client.rpc import EmrClient
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import QueryType, Role

MEASURE = "4548-4"  # HbA1c, LOINC
OPTED_IN_VALUES = ([6.5, 7.0, 8.25], [5.5, 9.0, 7.5, 11.0])
OPTED_OUT_VALUE = 14.0
EPSILON = 3_000_000
"""Per query, in millionths (3.0: a demo's handful of patients needs a loose budget to show
figures near the truth; noise scales as 1/epsilon)."""
DELTA = 1_000_000
"""Per query, in 10^-12 (1e-6)."""
UPPER_MILLI = 12_000
HISTOGRAM = {"lower_milli": 4_000, "upper_milli": 12_000, "bins": 4}


@dataclass(frozen=True, slots=True)
class StudyOutcome:
    study_id: bytes
    releases: dict[str, StudyRelease]
    refusal: TransactionRefusedError
    """The overspending query's refusal (its tx id and code)."""
    opted_in_values: list[float]
    sponsor: MemberIdentity


def observation(value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": MEASURE}]},
        "valueQuantity": {"value": value, "unit": "%"},
    }


async def _populate(hospital: Hospital, values: list[float]) -> MemberIdentity:
    """Register a clinician and patients; the patients opt in, but one, who keeps the default
    (out) and whose extreme value must never show; store one Observation each."""
    patients = [(MemberIdentity.generate(), secrets.token_bytes(32)) for _ in values]
    outsider = (MemberIdentity.generate(), secrets.token_bytes(32))
    clinician = MemberIdentity.generate()
    members = [(clinician, Role.CLINICIAN, transactions.NO_KEY)]
    members += [(identity, Role.PATIENT, patient_id) for identity, patient_id in patients]
    members.append((outsider[0], Role.PATIENT, outsider[1]))
    await _register(hospital, members)
    for identity, _ in patients:
        async with EmrClient(hospital.rpc_url, identity) as patient:
            await patient.research_consent(True)
    async with EmrClient(hospital.rpc_url, clinician) as author:
        for (_, patient_id), value in zip(patients, values, strict=True):
            await author.store_fhir_resource(observation(value), patient_id)
        await author.store_fhir_resource(observation(OPTED_OUT_VALUE), outsider[1])
    return clinician


async def run_study(
    nodes: Sequence[tuple[str, Path]], output: Callable[[str], object] = print
) -> StudyOutcome:
    """The study on the first two `(rpc_url, home)` nodes; figures printed through `output`."""
    a, b = (Hospital.from_home(url, Path(home)) for url, home in nodes[:2])
    sponsor = await _populate(a, OPTED_IN_VALUES[0])
    await _populate(b, OPTED_IN_VALUES[1])
    urls = {a.organization_id: a.rpc_url, b.organization_id: b.rpc_url}
    study_id = secrets.token_bytes(32)
    common: dict[str, Any] = {"epsilon": EPSILON, "delta": DELTA}
    async with EmrClient(a.rpc_url, sponsor) as client:
        await client.propose_study(
            study_id=study_id,
            purpose="HbA1c across two hospitals",
            query_types=list(QueryType),
            epsilon_total=4 * EPSILON + EPSILON // 2,
            delta_total=5 * DELTA,
            participants=list(urls),
            expires_at_ms=time.time_ns() // 1_000_000 + 3_600_000,
        )
        output(f"study {study_id.hex()[:16]} proposed; participants {sorted(urls)}")
        for hospital in (a, b):
            async with EmrClient(hospital.rpc_url, hospital.admin) as admin:
                await admin.approve_study(study_id)
        total = (4 * EPSILON + EPSILON // 2) / 1e6
        output(f"approved by both; epsilon {total:g} in all, {EPSILON / 1e6:g} per query")
        releases: dict[str, StudyRelease] = {}
        for name, query_type, bounds in (
            ("count", QueryType.COUNT, {}),
            ("sum", QueryType.SUM, {"upper_milli": UPPER_MILLI}),
            ("mean", QueryType.MEAN, {"upper_milli": UPPER_MILLI}),
            ("histogram", QueryType.HISTOGRAM, HISTOGRAM),
        ):
            release = await run_query(
                client, urls, study_id, query_type, MEASURE, **bounds, **common
            )
            releases[name] = release
            output(f"{name}: {release.figures} (anchored {release.result_sha256.hex()[:16]})")
        output(f"exact, for comparison (known to the demo, never released): {_exact()}")
        try:
            await run_query(client, urls, study_id, QueryType.COUNT, MEASURE, **common)
        except TransactionRefusedError as refusal:
            output(f"a fifth query: refused by the chain, {refusal.code_name}")
            status = await client.study(study_id)
            output(
                f"budget: epsilon spent {status['epsilon_spent'] / 1e6}, left "
                f"{status['epsilon_left'] / 1e6}; results anchored {status['result_count']}"
            )
            values = OPTED_IN_VALUES[0] + OPTED_IN_VALUES[1]
            return StudyOutcome(study_id, releases, refusal, values, sponsor)
    raise AssertionError("the overspending query was accepted")


def _exact() -> dict[str, Any]:
    """The figures without noise over the opted-in patients' values."""
    values = [min(round(value * 1000), UPPER_MILLI) for value in OPTED_IN_VALUES[0]]
    values += [min(round(value * 1000), UPPER_MILLI) for value in OPTED_IN_VALUES[1]]
    width = (HISTOGRAM["upper_milli"] - HISTOGRAM["lower_milli"]) // HISTOGRAM["bins"]
    bins = [0] * HISTOGRAM["bins"]
    for value in values:
        index = (max(value, HISTOGRAM["lower_milli"]) - HISTOGRAM["lower_milli"]) // width
        bins[min(index, HISTOGRAM["bins"] - 1)] += 1
    total = sum(values) / 1000
    return {
        "count": len(values),
        "sum": total,
        "mean": round(total / len(values), 3),
        "histogram": bins,
    }


def main(nodes: Sequence[tuple[str, Path]]) -> StudyOutcome:
    return asyncio.run(run_study(nodes))
