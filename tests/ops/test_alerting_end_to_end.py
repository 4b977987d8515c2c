"""Issue 19 acceptance: the real Prometheus and Alertmanager (Debian's packages) scrape a real
4-validator devnet; killing a validator fires EmrchainNodeDown, which Alertmanager delivers to a
webhook receiver (an aiohttp server here) and an email receiver (an aiosmtpd SMTP sink here);
restarting it sends the resolution to both.

The shipped configs are used, with only what a test must change: the addresses (free loopback
ports), short intervals (scrape and evaluation 1 s, Alertmanager group_wait and group_interval
1 s) and NodeDown's `for` (1 m -> 2 s). Bounds (docs/spec/metrics.md, Alerting): firing is
delivered within scrape 1 s + `for` 2 s + evaluation 1 s + group_wait 1 s + slack, asserted under
FIRING_BOUND_S; the resolution within a scrape, an evaluation and a group_interval, asserted under
RESOLVED_BOUND_S after the node answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller

from emrchain.config.homes import choose_free_ports
from emrchain.devnet.harness import Devnet
from tests.ops.support import REPOSITORY, try_get
from tests.services.fixtures import require_service

pytestmark = pytest.mark.slow

PROMETHEUS_CONFIGS = REPOSITORY / "configs" / "prometheus"
ALERTMANAGER_CONFIG = REPOSITORY / "configs" / "alertmanager" / "alertmanager.yml"
KILLED = 3
FIRING_BOUND_S = 20.0
RESOLVED_BOUND_S = 20.0
START_TIMEOUT_S = 30.0
HOST = "127.0.0.1"


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


# -- receivers ---------------------------------------------------------------------------------


@dataclass
class Inbox:
    """What the receivers got, in arrival order (shared between their threads and the test)."""

    webhooks: list[dict[str, Any]] = field(default_factory=list)
    emails: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def webhook_alerts(self, status: str, alertname: str, instance: str) -> bool:
        with self.lock:
            return any(
                alert["status"] == status
                and alert["labels"].get("alertname") == alertname
                and alert["labels"].get("instance") == instance
                for payload in self.webhooks
                for alert in payload["alerts"]
            )

    def email(self, status_word: str, alertname: str, instance: str) -> bool:
        with self.lock:
            return any(
                subject.startswith(f"[{status_word}") and alertname in subject and instance in body
                for subject, body in self.emails
            )


class WebhookReceiver:
    """A small aiohttp server on its own thread and loop, storing every POSTed payload."""

    def __init__(self, inbox: Inbox, port: int) -> None:
        self._inbox, self.port = inbox, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        payload = await request.json()
        with self._inbox.lock:
            self._inbox.webhooks.append(payload)
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/emrchain/alerts", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class MailSink:
    """aiosmtpd handler: keeps (subject, text) of each message."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.original_content)
        parts = [message] if not message.is_multipart() else list(message.walk())
        text = "".join(
            part.get_payload(decode=True).decode(errors="replace")
            for part in parts
            if part.get_content_type() in ("text/plain", "text/html")
        )
        with self._inbox.lock:
            self._inbox.emails.append((str(message["Subject"]), text))
        return "250 OK"


# -- Prometheus and Alertmanager ---------------------------------------------------------------


@contextlib.contextmanager
def running(command: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_until(
                lambda: process.poll() is None and (try_get(ready_url) or (0,))[0] == 200,
                START_TIMEOUT_S,
                f"{command[0]} ready (log: {log})",
            )
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def alertmanager_config(webhook_port: int, smtp_port: int) -> dict[str, Any]:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["global"].update(
        smtp_smarthost=f"{HOST}:{smtp_port}", smtp_require_tls=False, resolve_timeout="10s"
    )
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"http://{HOST}:{webhook_port}/emrchain/alerts"
        for email in receiver.get("email_configs", []):
            email["to"] = "oncall@emrchain.test"
    return config


def prometheus_config(
    directory: Path,
    targets: list[str],
    alertmanager_port: int,
    shortened: tuple[str, str] = ('expr: up{job="emrchain"} == 0\n        for: 1m', "1m"),
) -> dict[str, Any]:
    """The shipped Prometheus config for this test's ports and intervals, with one rule's `for`
    (`shortened`: the rule's expression and `for` line as shipped, and the duration in it) cut
    to 2 s."""
    config = yaml.safe_load((PROMETHEUS_CONFIGS / "prometheus-devnet.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="900ms", evaluation_interval="1s")
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"{HOST}:{alertmanager_port}"
    ]
    config["scrape_configs"][0]["static_configs"][0]["targets"] = targets
    rules = (PROMETHEUS_CONFIGS / "emrchain-alerts.yml").read_text()
    rule, duration = shortened
    assert rules.count(rule) == 1
    (directory / "emrchain-alerts.yml").write_text(
        rules.replace(rule, rule.replace(f"for: {duration}", "for: 2s"))
    )
    config["rule_files"] = [str(directory / "emrchain-alerts.yml")]
    return config


def prometheus_targets_up(port: int, count: int) -> bool:
    url = f"http://{HOST}:{port}/api/v1/query?query=sum(up%7Bjob%3D%22emrchain%22%7D)"
    with urllib.request.urlopen(url, timeout=5) as response:
        result = json.loads(response.read())["data"]["result"]
    return bool(result) and float(result[0]["value"][1]) == count


def wait_delivered(inbox: Inbox, status: str, instance: str, since: float, bound_s: float) -> float:
    """Until NodeDown of `instance` in `status` reached both receivers, within `bound_s` of
    `since`; returns the seconds it took."""
    wait_until(
        lambda: inbox.webhook_alerts(status, "EmrchainNodeDown", instance),
        bound_s,
        f"NodeDown {status} at the webhook",
    )
    wait_until(
        lambda: inbox.email(status.upper(), "EmrchainNodeDown", instance),
        max(bound_s - (time.monotonic() - since), 0.1),
        f"NodeDown {status} by email",
    )
    return time.monotonic() - since


def test_node_down_is_delivered_to_webhook_and_email_then_resolved(tmp_path: Path) -> None:
    require_service("prometheus")
    require_service("alertmanager")
    inbox = Inbox()
    webhook_port, smtp_port, alertmanager_port, prometheus_port, cluster_port = choose_free_ports(
        HOST, 5
    )
    webhook = WebhookReceiver(inbox, webhook_port)
    mail = Controller(MailSink(inbox), hostname=HOST, port=smtp_port)
    devnet = Devnet(tmp_path / "net", 4)
    targets = [devnet.instrumentation_url(index).removeprefix("http://") for index in range(4)]
    (tmp_path / "alertmanager.yml").write_text(
        yaml.safe_dump(alertmanager_config(webhook_port, smtp_port))
    )
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(prometheus_config(tmp_path, targets, alertmanager_port))
    )
    webhook.start()
    mail.start()
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0, 1, 2, 3], timeout_s=60)
        with (
            running(
                alertmanager_command(tmp_path, alertmanager_port, cluster_port),
                tmp_path / "alertmanager.log",
                f"http://{HOST}:{alertmanager_port}/-/ready",
            ),
            running(
                prometheus_command(tmp_path, prometheus_port),
                tmp_path / "prometheus.log",
                f"http://{HOST}:{prometheus_port}/-/ready",
            ),
        ):
            wait_until(
                lambda: prometheus_targets_up(prometheus_port, 4), 30, "all 4 targets scraped up"
            )
            killed = targets[KILLED]
            devnet.kill(KILLED)
            killed_at = time.monotonic()
            fired_s = wait_delivered(inbox, "firing", killed, killed_at, FIRING_BOUND_S)
            devnet.start(KILLED)
            wait_until(
                lambda: try_get(devnet.instrumentation_url(KILLED) + "/health"),
                30,
                "the restarted node to answer",
            )
            answered_at = time.monotonic()
            resolved_s = wait_delivered(inbox, "resolved", killed, answered_at, RESOLVED_BOUND_S)
            print(f"NodeDown delivered {fired_s:.1f} s after the kill, resolved {resolved_s:.1f} s")
            # Only the killed node was reported down.
            with inbox.lock:
                down = {
                    alert["labels"]["instance"]
                    for payload in inbox.webhooks
                    for alert in payload["alerts"]
                    if alert["labels"].get("alertname") == "EmrchainNodeDown"
                }
            assert down == {killed}
    finally:
        devnet.stop_all()
        mail.stop()
        webhook.stop()


def test_an_open_break_glass_review_alerts_until_an_auditor_closes_it(tmp_path: Path) -> None:
    """EmrchainBreakGlassReviewsOpen (its `for` cut from 24 h to 2 s) reaches the webhook once
    a clinician breaks the glass, one alert for the chain (not per node), and resolves once an
    auditor closed the review (CLOSE_REVIEW)."""
    from emrchain.client.rpc import EmrClient
    from emrchain.client.transactions import NO_KEY
    from emrchain.devnet.story import Hospital, _register
    from emrchain.keystore.member import MemberIdentity
    from emrchain.schema import ReviewOutcome, Role

    require_service("prometheus")
    require_service("alertmanager")
    inbox = Inbox()
    webhook_port, smtp_port, alertmanager_port, prometheus_port, cluster_port = choose_free_ports(
        HOST, 5
    )
    webhook = WebhookReceiver(inbox, webhook_port)
    mail = Controller(MailSink(inbox), hostname=HOST, port=smtp_port)
    devnet = Devnet(tmp_path / "net", 4)
    targets = [devnet.instrumentation_url(index).removeprefix("http://") for index in range(4)]
    (tmp_path / "alertmanager.yml").write_text(
        yaml.safe_dump(alertmanager_config(webhook_port, smtp_port))
    )
    rule = "expr: max without (instance) (emrchain_reviews_open) > 0\n        for: 24h"
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            prometheus_config(tmp_path, targets, alertmanager_port, shortened=(rule, "24h"))
        )
    )

    def delivered(status: str) -> list[dict[str, Any]]:
        with inbox.lock:
            return [
                alert
                for payload in inbox.webhooks
                for alert in payload["alerts"]
                if alert["status"] == status
                and alert["labels"].get("alertname") == "EmrchainBreakGlassReviewsOpen"
            ]

    webhook.start()
    mail.start()
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0, 1, 2, 3], timeout_s=60)
        hospital = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
        clinician, auditor = MemberIdentity.generate(), MemberIdentity.generate()
        patient, patient_id = MemberIdentity.generate(), bytes(range(32))

        async def register_and_break_glass() -> bytes:
            await _register(
                hospital,
                [
                    (clinician, Role.CLINICIAN, NO_KEY),
                    (auditor, Role.AUDITOR, NO_KEY),
                    (patient, Role.PATIENT, patient_id),
                ],
            )
            async with EmrClient(hospital.rpc_url, clinician) as client:
                opened = await client.break_glass(
                    patient_id, "collapsed in the waiting room", 60_000
                )
            return opened.tx_id

        async def close(review_id: bytes) -> None:
            async with EmrClient(hospital.rpc_url, auditor) as client:
                await client.close_review(review_id, ReviewOutcome.JUSTIFIED)

        with (
            running(
                alertmanager_command(tmp_path, alertmanager_port, cluster_port),
                tmp_path / "alertmanager.log",
                f"http://{HOST}:{alertmanager_port}/-/ready",
            ),
            running(
                prometheus_command(tmp_path, prometheus_port),
                tmp_path / "prometheus.log",
                f"http://{HOST}:{prometheus_port}/-/ready",
            ),
        ):
            wait_until(
                lambda: prometheus_targets_up(prometheus_port, 4), 30, "all 4 targets scraped up"
            )
            review_id = asyncio.run(register_and_break_glass())
            opened_at = time.monotonic()
            wait_until(lambda: delivered("firing"), FIRING_BOUND_S, "the review alert firing")
            fired_s = time.monotonic() - opened_at
            firing = delivered("firing")
            assert {alert["labels"].get("instance") for alert in firing} == {None}
            assert firing[0]["labels"]["severity"] == "warning"
            asyncio.run(close(review_id))
            closed_at = time.monotonic()
            wait_until(lambda: delivered("resolved"), RESOLVED_BOUND_S, "the alert resolved")
            resolved_s = time.monotonic() - closed_at
            print(f"review alert delivered {fired_s:.1f} s after the break-glass committed,")
            print(f"resolved {resolved_s:.1f} s after the review was closed")
    finally:
        devnet.stop_all()
        mail.stop()
        webhook.stop()


def alertmanager_command(directory: Path, port: int, cluster_port: int) -> list[str]:
    return [
        "prometheus-alertmanager",
        f"--config.file={directory / 'alertmanager.yml'}",
        f"--storage.path={directory / 'alertmanager-data'}",
        f"--web.listen-address={HOST}:{port}",
        f"--cluster.listen-address={HOST}:{cluster_port}",
        "--cluster.advertise-address=127.0.0.1:1",
    ]


def prometheus_command(directory: Path, port: int) -> list[str]:
    return [
        "prometheus",
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'prometheus-data'}",
        f"--web.listen-address={HOST}:{port}",
    ]
