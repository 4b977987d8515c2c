"""Issue #22 end to end on a real 4-validator devnet (separate processes, real study workers):
FHIR Observations stored at two hospitals for opted-in and opted-out patients; a study proposed
and approved by both; count, sum, mean and histogram answered with noise from the two workers'
masked contributions; the query that would overspend epsilon refused with
PRIVACY_BUDGET_EXCEEDED on every node; every result anchored and visible in GET /studies/{id};
a contribution refused to anyone but the sponsor. The scenario is `emrchain/devnet/study_demo.py`
(what `scripts/demo-study` runs)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from emrchain.analytics.contribution import QuerySpec, histogram_bin, noise_scales
from emrchain.client.replies import AccessDenied
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital
from emrchain.devnet.study_demo import DELTA, EPSILON, MEASURE, UPPER_MILLI, run_study
from emrchain.schema import QueryType
from emrchain.state.codes import ResultCode

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    net = Devnet(tmp_path_factory.mktemp("studies") / "net", 4)
    try:
        net.start_all()
        net.wait_for_height(1, [0, 1, 2, 3], timeout_s=START_TIMEOUT_S)
        yield net
    finally:
        net.stop_all()


def _bound(spec: QuerySpec, coordinate: int = 0) -> float:
    """Eight standard deviations of the total noise (two participants' shares)."""
    return 8 * noise_scales(spec, 2)[coordinate] * math.sqrt(2)


def test_a_study_end_to_end(devnet: Devnet) -> None:
    started = time.monotonic()
    nodes = list(zip(devnet.rpc_urls, devnet.homes, strict=True))
    outcome = asyncio.run(run_study(nodes))
    elapsed_s = time.monotonic() - started
    releases, refusal, study_id = outcome.releases, outcome.refusal, outcome.study_id
    values = outcome.opted_in_values
    truth_count = len(values)
    clamped = [min(round(value * 1000), UPPER_MILLI) for value in values]
    count = releases["count"].figures["count"]
    total = releases["sum"].figures["sum"]
    mean = releases["mean"].figures
    histogram = releases["histogram"].figures["histogram"]
    count_spec = QuerySpec(QueryType.COUNT, MEASURE, 0, 0, 0, EPSILON, DELTA)
    sum_spec = QuerySpec(QueryType.SUM, MEASURE, 0, UPPER_MILLI, 0, EPSILON, DELTA)
    mean_spec = QuerySpec(QueryType.MEAN, MEASURE, 0, UPPER_MILLI, 0, EPSILON, DELTA)
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
    assert [count, total, *histogram] != [truth_count, sum(clamped) / 1000, *truth_bins]
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
    # A contribution goes to the sponsor only: hospital-b's admin is refused at its own node.
    asyncio.run(_contribution_refused(devnet, study_id, releases["count"].query_id))
    # A node that takes no part lists the study too.
    listed = asyncio.run(_listed(devnet, 3))
    assert study_id.hex() in [item["study_id"] for item in listed["studies"]]


async def _listed(devnet: Devnet, index: int) -> dict[str, Any]:
    hospital = Hospital.from_home(devnet.rpc_urls[index], devnet.homes[index])
    async with EmrClient(hospital.rpc_url, hospital.admin) as admin:
        return await admin.studies()


async def _contribution_refused(devnet: Devnet, study_id: bytes, query_id: bytes) -> None:
    hospital = Hospital.from_home(devnet.rpc_urls[1], devnet.homes[1])
    async with EmrClient(hospital.rpc_url, hospital.admin) as admin:
        with pytest.raises(AccessDenied) as refused:
            await admin.study_contribution(study_id, query_id)
    assert refused.value.code == "not_study_sponsor"


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
