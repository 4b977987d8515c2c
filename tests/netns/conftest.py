"""Fixtures for the network-namespace tests: a 4-validator devnet, one host per validator, and a
steady background load. Without root these tests skip (in CI, `CI=true`, they fail instead)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain.devnet.background_load import BackgroundLoad, anchor_stream
from emrchain.devnet.harness import DevnetError
from emrchain.devnet.netns import NetnsDevnet, is_supported, sweep_stale
from tests.ci import running_in_ci

LOAD_SEED = 18
LOAD_SENDERS = 20
"""The load: 20 anchors every 0.2 s (100 per second), spread over the four nodes."""


def require_namespaces() -> None:
    supported, reason = is_supported()
    if supported:
        return
    if running_in_ci():
        pytest.fail(f"network-namespace tests must run in CI: {reason}")
    pytest.skip(reason)


LATENCIES_MS = {"rtt0": 0, "rtt50": 25}
"""Each fault test runs on direct links and on links through the delay proxies (50 ms round
trip), so the proxies are exercised by the same faults as the hosts' own links."""


@pytest.fixture(scope="module", params=list(LATENCIES_MS.values()), ids=list(LATENCIES_MS))
def hosts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NetnsDevnet]:
    """Four validators on four hosts, running, with the load's senders registered."""
    require_namespaces()
    sweep_stale()
    root: Path = tmp_path_factory.mktemp("netns") / "net"
    network = NetnsDevnet(root, 4, latency_ms=request.param)
    try:
        network.start_all()
        network.wait_for_height(1, [0, 1, 2, 3], timeout_s=90)
        network.register_workload_members(senders=LOAD_SENDERS, seed=LOAD_SEED)
        yield network
    finally:
        network.close()


@pytest.fixture(scope="module")
def anchors(hosts: NetnsDevnet) -> Iterator[bytes]:
    """The load's transactions, shared by the module's tests so each sender's nonces go on."""
    chain_id = hosts.rpc(0, "/status")["chain_id"].encode()
    return anchor_stream(chain_id, senders=LOAD_SENDERS, seed=LOAD_SEED)


@pytest.fixture
def loaded(
    hosts: NetnsDevnet, anchors: Iterator[bytes]
) -> Iterator[tuple[NetnsDevnet, BackgroundLoad]]:
    """The hosts under load; afterwards every link is up and the switch whole again."""
    try:
        with BackgroundLoad(hosts, anchors) as load:
            yield hosts, load
    finally:
        hosts.network.heal()
        for host in range(len(hosts.homes)):
            hosts.network.link_up(host)
            hosts.network.clear_rate_limit(host)


def wait_stable(network: NetnsDevnet, quiet_s: float, timeout_s: float) -> list[int]:
    """Heights once no node's height changed for `quiet_s` (a block already in flight when a
    fault began may still commit); fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    heights, since = network.heights(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = network.heights()
        if now != heights:
            heights, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return heights
    raise DevnetError(f"heights never settled within {timeout_s} s: {heights}")
