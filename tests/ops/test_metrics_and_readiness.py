"""Issue 19: /metrics on a running 4-validator devnet matches docs/spec/metrics.md exactly, and
/ready is 503 while a node's Redis is down or while it catches up, 200 otherwise.

One devnet for the module (real processes on 127.0.0.1); node 0 keeps its ciphertext cache in a
private redis-server on a unix socket, which the Redis test kills and restarts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain.devnet.harness import Devnet
from tests.ops.support import (
    METRICS_DOC,
    documented_metrics,
    exposed_metrics,
    get,
    mismatches,
    try_get,
)
from tests.services.fixtures import RedisServer, started_redis

pytestmark = pytest.mark.slow

CATCH_UP_GAP_BLOCKS = 40
"""How far node 3 falls behind before it restarts: block sync then takes long enough (tens of
blocks, each verified and written with fsync) for /ready to be seen answering 503."""


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from started_redis(tmp_path_factory)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> Iterator[Devnet]:
    devnet = Devnet(tmp_path_factory.mktemp("ops") / "net", 4)
    devnet.configure(
        0,
        {
            "records": {"cache_backend": "redis", "redis_url": f"unix://{redis.unix_socket}"},
            "instrumentation": {"dependency_timeout_ms": 500},
        },
    )
    try:
        devnet.start_all()
        devnet.wait_for_height(2, [0, 1, 2, 3], timeout_s=60)
        yield devnet
    finally:
        devnet.stop_all()


def scrape(network: Devnet, index: int) -> str:
    status, body = get(network.instrumentation_url(index) + "/metrics")
    assert status == 200
    return body


def sample(exposition: str, name: str, **labels: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                return item.value
    return None


def test_metrics_reply_lists_exactly_the_documented_metrics(network: Devnet) -> None:
    # Traffic that the event metrics observe: a served route, a refused signed request, and a
    # readiness probe of node 0's Redis.
    assert get(network.rpc_urls[0] + "/status")[0] == 200
    assert get(network.instrumentation_url(0) + "/ready")[0] == 200
    exposition = scrape(network, 0)
    documented = documented_metrics(METRICS_DOC.read_text())
    assert len(documented) >= 50
    assert mismatches(documented, exposed_metrics(exposition)) == []
    # Values come from the running node, not placeholders.
    assert sample(exposition, "emrchain_consensus_height") >= 2
    assert sample(exposition, "emrchain_p2p_peers") == 3
    assert sample(exposition, "emrchain_consensus_validators") == 4
    assert sample(exposition, "emrchain_p2p_peers_needed_for_quorum") == 2
    # An honest devnet bans nobody; each connected peer has a strike gauge (/status "p2p").
    assert sample(exposition, "emrchain_p2p_bans_in_force") == 0
    strikes_by_peer = get(network.rpc_urls[0] + "/status")[1]["p2p"]["peers"]
    assert len(strikes_by_peer) == 3
    for peer_id in strikes_by_peer:
        assert sample(exposition, "emrchain_p2p_peer_strikes", peer=peer_id[:16]) is not None
    assert sample(exposition, "emrchain_store_write_seconds_count") >= 2
    assert (
        sample(
            exposition,
            "emrchain_rpc_request_duration_seconds_count",
            route="/status",
            method="GET",
            status="200",
        )
        >= 1
    )
    assert (
        sample(
            exposition,
            "emrchain_dependency_call_duration_seconds_count",
            dependency="redis",
            operation="ping",
        )
        >= 1
    )
    assert sample(exposition, "process_open_fds") > 0


def test_clients_cannot_mint_label_values(network: Devnet) -> None:
    import urllib.error
    import urllib.request

    for method in ("FROB", "XYZZY"):
        request = urllib.request.Request(network.rpc_urls[0] + "/status", method=method)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=5)
    # aiohttp's parser refuses unknown methods before any middleware; the observer maps what
    # it does get outside the known set to "other" anyway.
    exposition = scrape(network, 0)
    assert "FROB" not in exposition and "XYZZY" not in exposition


def test_the_doc_check_notices_a_missing_or_undocumented_metric() -> None:
    documented = {"a_total": "counter", "b": "gauge"}
    assert mismatches(documented, {"a_total": "counter", "b": "gauge"}) == []
    assert mismatches(documented, {"a_total": "counter"}) == ["b is documented but not exposed"]
    assert mismatches(documented, {**documented, "c": "gauge"}) == [
        "c is exposed but not documented"
    ]
    assert mismatches(documented, {"a_total": "counter", "b": "histogram"}) == [
        "b is a histogram, documented as a gauge"
    ]


def test_metrics_are_off_unless_enabled(tmp_path: Path) -> None:
    from emrchain.config.node import NodeConfig

    assert NodeConfig(home=tmp_path).instrumentation.enabled is False


def wait_for_status(url: str, wanted: int, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = try_get(url)
        if last is not None and last[0] == wanted:
            return last[1]
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer {wanted} within {timeout_s} s; last {last}")


def test_ready_is_503_while_redis_is_down(network: Devnet, redis: RedisServer) -> None:
    url = network.instrumentation_url(0) + "/ready"
    body = wait_for_status(url, 200, 30)
    assert body["checks"]["redis"]["ok"] is True
    assert get(network.instrumentation_url(0) + "/health")[0] == 200
    redis.kill()
    try:
        body = wait_for_status(url, 503, 10)
        assert body["ready"] is False
        assert body["checks"]["redis"]["ok"] is False
        assert body["checks"]["caught_up"]["ok"] is True
        # Only readiness: the node is alive and still commits.
        assert get(network.instrumentation_url(0) + "/health")[0] == 200
        height = network.height(0)
        network.wait_for_height(height + 1, [0], timeout_s=30)
    finally:
        redis.start()
    body = wait_for_status(url, 200, 10)
    assert body["checks"]["redis"]["ok"] is True
    # Nodes without Redis configured have no redis check.
    assert "redis" not in get(network.instrumentation_url(1) + "/ready")[1]["checks"]


def test_ready_is_503_while_a_node_catches_up(network: Devnet) -> None:
    network.stop(3)
    stopped_at = max(network.height(index) for index in range(3))
    network.wait_for_height(stopped_at + CATCH_UP_GAP_BLOCKS, [0, 1, 2], timeout_s=120)
    url = network.instrumentation_url(3) + "/ready"
    network.start(3)
    seen_catching_up = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = try_get(url)
        if reply is not None and reply[0] == 503 and not reply[1]["checks"]["caught_up"]["ok"]:
            seen_catching_up = reply[1]
            break
        time.sleep(0.005)
    assert seen_catching_up is not None, "node 3 never answered 503 caught_up=false"
    assert "behind" in seen_catching_up["checks"]["caught_up"]["detail"]
    body = wait_for_status(url, 200, 60)
    assert body["checks"]["caught_up"]["ok"] and body["checks"]["peers_for_quorum"]["ok"]


def test_a_taken_instrumentation_port_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    import socket

    from emrchain.config.address import Address

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with Devnet(tmp_path / "net", 1) as devnet:
            address = Address("127.0.0.1", port)
            devnet.configure(0, {"instrumentation": {"listen_address": address}})
            devnet.start(0)
            devnet.wait_for(lambda: not devnet.is_running(0), 30, "the node to exit")
            assert devnet.processes[0].returncode != 0
            log = devnet.log_path(0).read_text()
            assert f"[instrumentation] listen_address 127.0.0.1:{port}: cannot listen" in log
