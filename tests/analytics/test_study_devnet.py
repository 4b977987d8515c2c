"""Issue #22 end to end on a real 4-validator devnet (separate processes, real study workers):
FHIR Observations stored at two hospitals for opted-in and opted-out patients; a study proposed
and approved by both; count, sum, mean and histogram answered with noise from the two workers'
masked contributions; the query that would overspend epsilon refused with
PRIVACY_BUDGET_EXCEEDED on every node; every result anchored and visible in GET /studies/{id}."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from emrchain.analytics.aggregator import StudyRelease, run_query
from emrchain.analytics.contribution import QuerySpec, histogram_bin, noise_scales
from emrchain.client import transactions
from emrchain.client.replies import TransactionRefusedError
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import QueryType, Role
from emrchain.state.codes import ResultCode

pytestmark = pytest.mark.slow

NO_KEY = transactions.NO_KEY
START_TIMEOUT_S = 120.0
MEASURE = "4548-4"  # HbA1c
OPTED_IN_VALUES = {"a": [6.5, 7.0, 8.25], "b": [5.5, 9.0, 7.5, 11.0]}
OPTED_OUT_VALUE = 14.0  # would move every statistic if it entered
EPSILON = 1_500_000  # 1.5 per query
DELTA = 1_000_000  # 1e-6 per query


def observation(value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": MEASURE}]},
        "valueQuantity": {"value": value, "unit": "%"},
    }


@dataclass
class Site:
    hospital: Hospital
    clinician: MemberIdentity
    opted_in: list[tuple[MemberIdentity, bytes]]
    opted_out: tuple[MemberIdentity, bytes]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    net = Devnet(tmp_path_factory.mktemp("studies") / "net", 4)
    try:
        net.start_all()
        net.wait_for_height(1, [0, 1, 2, 3], timeout_s=START_TIMEOUT_S)
        yield net
    finally:
        net.stop_all()


async def _site(devnet: Devnet, index: int, values: list[float]) -> Site:
    hospital = Hospital.from_home(devnet.rpc_urls[index], devnet.homes[index])
    patients = [(MemberIdentity.generate(), secrets.token_bytes(32)) for _ in values]
    outsider = (MemberIdentity.generate(), secrets.token_bytes(32))
    clinician = MemberIdentity.generate()
    members = [(clinician, Role.CLINICIAN, NO_KEY)]
    members += [(identity, Role.PATIENT, patient_id) for identity, patient_id in patients]
    members.append((outsider[0], Role.PATIENT, outsider[1]))
    await _register(hospital, members)
    for identity, _ in patients:  # the outsider never opts in (the default is out)
        async with EmrClient(hospital.rpc_url, identity) as patient:
            await patient.research_consent(True)
    async with EmrClient(hospital.rpc_url, clinician) as author:
        for (_, patient_id), value in zip(patients, values, strict=True):
            await author.store_fhir_resource(observation(value), patient_id)
        await author.store_fhir_resource(observation(OPTED_OUT_VALUE), outsider[1])
    return Site(hospital, clinician, patients, outsider)


def _bound(spec: QuerySpec, coordinate: int = 0) -> float:
    """Eight standard deviations of the total noise (two participants' shares)."""
    return 8 * noise_scales(spec, 2)[coordinate] * math.sqrt(2)


def test_a_study_end_to_end(devnet: Devnet) -> None:
    values = OPTED_IN_VALUES["a"] + OPTED_IN_VALUES["b"]
    started = time.monotonic()

    async def scenario() -> tuple[dict[str, StudyRelease], TransactionRefusedError, bytes]:
        a = await _site(devnet, 0, OPTED_IN_VALUES["a"])
        b = await _site(devnet, 1, OPTED_IN_VALUES["b"])
        urls = {a.hospital.organization_id: a.hospital.rpc_url}
        urls[b.hospital.organization_id] = b.hospital.rpc_url
        study_id = secrets.token_bytes(32)
        async with EmrClient(a.hospital.rpc_url, a.clinician) as sponsor:
            await sponsor.propose_study(
                study_id=study_id,
                purpose="HbA1c across two hospitals",
                query_types=list(QueryType),
                epsilon_total=4 * EPSILON + EPSILON // 2,
                delta_total=5 * DELTA,
                participants=list(urls),
                expires_at_ms=time.time_ns() // 1_000_000 + 3_600_000,
            )
            for site in (a, b):
                async with EmrClient(site.hospital.rpc_url, site.hospital.admin) as admin:
                    await admin.approve_study(study_id)
            common = {"epsilon": EPSILON, "delta": DELTA}
            releases = {
                "count": await run_query(
                    sponsor, urls, study_id, QueryType.COUNT, MEASURE, **common
                ),
                "sum": await run_query(
                    sponsor, urls, study_id, QueryType.SUM, MEASURE, upper_milli=12_000, **common
                ),
                "mean": await run_query(
                    sponsor, urls, study_id, QueryType.MEAN, MEASURE, upper_milli=12_000, **common
                ),
                "histogram": await run_query(
                    sponsor,
                    urls,
                    study_id,
                    QueryType.HISTOGRAM,
                    MEASURE,
                    lower_milli=4_000,
                    upper_milli=12_000,
                    bins=4,
                    **common,
                ),
            }
            # 0.75 of epsilon is left after four queries of 1.5: a fifth of 1.5 would overspend.
            with pytest.raises(TransactionRefusedError) as refused:
                await run_query(sponsor, urls, study_id, QueryType.COUNT, MEASURE, **common)
        return releases, refused.value, study_id

    releases, refusal, study_id = asyncio.run(scenario())
    elapsed_s = time.monotonic() - started
    truth_count = len(values)
    clamped = [min(round(value * 1000), 12_000) for value in values]
    count = releases["count"].figures["count"]
    total = releases["sum"].figures["sum"]
    mean = releases["mean"].figures
    histogram = releases["histogram"].figures["histogram"]
    count_spec = QuerySpec(QueryType.COUNT, MEASURE, 0, 0, 0, EPSILON, DELTA)
    sum_spec = QuerySpec(QueryType.SUM, MEASURE, 0, 12_000, 0, EPSILON, DELTA)
    mean_spec = QuerySpec(QueryType.MEAN, MEASURE, 0, 12_000, 0, EPSILON, DELTA)
    histogram_spec = QuerySpec(QueryType.HISTOGRAM, MEASURE, 4_000, 12_000, 4, EPSILON, DELTA)
    truth_bins = [0] * 4
    for value in clamped:
        truth_bins[histogram_bin(value, histogram_spec)] += 1
    print(
        f"\nstudy figures after {elapsed_s:.0f} s: count {count} (exact {truth_count}), sum "
        f"{total} (exact {sum(clamped) / 1000}), mean {mean} (exact "
        f"{sum(clamped) / 1000 / truth_count:.3f}), histogram {histogram} (exact {truth_bins}); "
        f"noise sd count {_bound(count_spec) / 8:.2f}, sum {_bound(sum_spec) / 8000:.2f}"
    )
    assert abs(count - truth_count) <= _bound(count_spec)
    assert abs(total * 1000 - sum(clamped)) <= _bound(sum_spec)
    assert abs(mean["sum"] * 1000 - sum(clamped)) <= _bound(mean_spec, 0)
    assert abs(mean["count"] - truth_count) <= _bound(mean_spec, 1)
    for noisy, exact in zip(histogram, truth_bins, strict=True):
        assert abs(noisy - exact) <= _bound(histogram_spec)
    # Noise was added: not every released figure equals its exact value.
    exact_figures = [truth_count, sum(clamped) / 1000, *truth_bins]
    assert [count, total, *histogram] != exact_figures
    # The overspending query: refused by execution, the same on every node.
    assert refusal.code == ResultCode.PRIVACY_BUDGET_EXCEEDED
    for index in range(4):
        devnet.wait_for(
            lambda index=index: _tx_code(devnet, index, refusal.tx_id) is not None,
            60.0,
            f"node {index} to hold the refused query",
        )
        assert _tx_code(devnet, index, refusal.tx_id) == ResultCode.PRIVACY_BUDGET_EXCEEDED
    # Every result anchored, visible on every node, budget spent exactly as the accountant says.
    anchored = {
        release.query_id.hex(): release.result_sha256.hex() for release in releases.values()
    }
    for index in range(4):
        devnet.wait_for(
            lambda index=index: _study(devnet, index, study_id)["result_count"] == 4,
            60.0,
            f"node {index} to hold the four results",
        )
        study = _study(devnet, index, study_id)
        assert study["status"] == "active"
        assert (study["epsilon_spent"], study["epsilon_left"]) == (4 * EPSILON, EPSILON // 2)
        assert {query["query_id"]: query["result_sha256"] for query in study["queries"]} == anchored


def _tx_code(devnet: Devnet, index: int, tx_id: bytes) -> int | None:
    try:
        reply = devnet.rpc(index, f"/txs/{tx_id.hex()}")
    except Exception:  # not there yet
        return None
    return reply.get("result_code") if reply.get("status") == "committed" else None


def _study(devnet: Devnet, index: int, study_id: bytes) -> dict[str, Any]:
    """GET /studies/{id} at node `index`, signed by that node's admin."""

    async def read() -> dict[str, Any]:
        hospital = Hospital.from_home(devnet.rpc_urls[index], devnet.homes[index])
        async with EmrClient(hospital.rpc_url, hospital.admin) as admin:
            return await admin.study(study_id)

    return asyncio.run(read())
