"""The console's alerts panel against a real Alertmanager (Debian's `prometheus-alertmanager`):
a firing alert is shown with its severity, and an Alertmanager that stops answering is said in
the panel while the rest of the console keeps working (docs/console.md)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from emrchain.config.homes import choose_free_ports
from emrchain.devnet.harness import Devnet
from tests.ops.support import try_get
from tests.services.fixtures import require_service

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
ALERTMANAGER_CONFIG = """\
route: {receiver: console-test, group_wait: 1s, group_interval: 1s}
receivers: [{name: console-test}]
"""


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    require_service("alertmanager")
    port, cluster_port = choose_free_ports(HOST, 2)
    (tmp_path / "alertmanager.yml").write_text(ALERTMANAGER_CONFIG)
    url = f"http://{HOST}:{port}"
    with (tmp_path / "alertmanager.log").open("wb") as log:
        process = subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'alertmanager-data'}",
                f"--web.listen-address={HOST}:{port}",
                f"--cluster.listen-address={HOST}:{cluster_port}",
                "--cluster.advertise-address=127.0.0.1:1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while (try_get(url + "/-/ready") or (0,))[0] != 200:
                assert process.poll() is None, "alertmanager exited"
                assert time.monotonic() < deadline, "alertmanager not ready"
                time.sleep(0.1)
            yield url, process
        finally:
            process.terminate()
            process.wait(10)


def fire(alertmanager_url: str) -> None:
    """What Prometheus does when a rule fires: post the alert to Alertmanager's API."""
    alert = {
        "labels": {"alertname": "EmrchainNodeDown", "severity": "critical", "instance": "node3"},
        "annotations": {"summary": "node3 has not been scraped for 1 minute"},
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    request = urllib.request.Request(
        alertmanager_url + "/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_console_shows_a_firing_alert_then_an_unreachable_alertmanager(
    alertmanager: tuple[str, subprocess.Popen[bytes]], page: Page, tmp_path: Path
) -> None:
    url, process = alertmanager
    devnet = Devnet(tmp_path / "net", 1, settings={"instrumentation": {"alertmanager_url": url}})
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        page.goto(devnet.instrumentation_url(0) + "/console")
        alerts = page.locator("#alerts-table tbody")
        expect(alerts).to_contain_text("No alert is firing.")
        fire(url)
        row = page.locator('#alerts-table tr[data-key="EmrchainNodeDown/node3"]')
        expect(row).to_contain_text("critical", timeout=20_000)
        expect(row).to_contain_text("node3 has not been scraped for 1 minute")
        expect(row).to_have_class("bad")
        expect(page.locator("#alerts-table caption")).to_contain_text(": 1")
        process.terminate()
        process.wait(10)
        expect(alerts).to_contain_text("Alertmanager unreachable", timeout=20_000)
        height = int(page.locator('#consensus-table tr[data-key="height"] td').inner_text())
        expect(page.locator('#consensus-table tr[data-key="height"] td')).not_to_have_text(
            str(height), timeout=20_000
        )
    finally:
        devnet.stop_all()
