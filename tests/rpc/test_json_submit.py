"""`POST /txs` with a JSON body goes through the node's admission pipeline, like binary
batches: signatures are verified in its worker thread, once, not on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from emrchain.devnet.workload import anchor_transactions
from emrchain.node.node import Node
from tests.node.in_process import CHAIN_ID, register_workload_senders, single_validator_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with single_validator_node(tmp_path) as opened:
        yield opened


def test_json_batches_are_verified_by_the_admission_worker(node: Node) -> None:
    register_workload_senders(node, senders=3, seed=8)
    good = anchor_transactions(3, chain_id=CHAIN_ID.encode(), senders=3, seed=8)
    forged = good[2][:-1] + bytes([good[2][-1] ^ 1])
    verified_before = node.mempool.stats().signatures_verified

    async def main() -> tuple[list[tuple[bool, str]], dict[str, Any], dict[str, Any]]:
        node.admission.start()
        try:
            async with TestClient(TestServer(node.rpc.app)) as client:
                before = (await (await client.get("/status")).json())["counters"]
                reply = await client.post(
                    "/txs", json={"txs": [tx.hex() for tx in (good[0], good[1], forged)]}
                )
                assert reply.status == 200
                body = await reply.json()
                after = (await (await client.get("/status")).json())["counters"]
        finally:
            await node.admission.stop()
        return [(item["accepted"], item["code"]) for item in body["results"]], before, after

    results, before, after = asyncio.run(main())
    # /status counts what happened, so an operator can see it without a profiler.
    assert after["admitted_txs"] - before["admitted_txs"] == 2
    assert after["refused_txs_by_code"].get("bad_signature", 0) == 1
    assert after["preverified_txs"] - before["preverified_txs"] == 3
    assert after["signatures_verified"] - before["signatures_verified"] == 3
    assert results == [(True, "ok"), (True, "ok"), (False, "bad_signature")]
    # Admission's stateful reads (the senders' committed nonces) went through the state cache.
    lookups = [count["state_cache_hits"] + count["state_cache_misses"] for count in (before, after)]
    assert lookups[1] > lookups[0]
    assert after["state_cache_entries"] >= 1
    assert node.admission.preverified_txs == 3  # the worker verified all three
    assert node.mempool.stats().signatures_verified - verified_before == 3  # and only it
