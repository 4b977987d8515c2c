"""Issue 19: the shipped alert rules, scrape config and Alertmanager config are valid, every rule
has `promtool test rules` unit tests that pass, and a broken rule fails them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.support import REPOSITORY
from tests.services.fixtures import require_service

PROMETHEUS_CONFIGS = REPOSITORY / "configs" / "prometheus"
RULES = PROMETHEUS_CONFIGS / "emrchain-alerts.yml"
RULE_TESTS = PROMETHEUS_CONFIGS / "emrchain-alerts.test.yml"
ALERTMANAGER_CONFIG = REPOSITORY / "configs" / "alertmanager" / "alertmanager.yml"


def promtool(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    require_service("prometheus")
    return subprocess.run(
        ["promtool", *arguments], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def alert_names(rules: dict) -> list[str]:
    return [
        rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule
    ]


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=PROMETHEUS_CONFIGS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_has_a_unit_test() -> None:
    rules = alert_names(yaml.safe_load(RULES.read_text()))
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert len(rules) == len(set(rules)) >= 14
    assert set(rules) - tested == set()
    # The list: each concern has a rule.
    for wanted in (
        "EmrchainNodeDown", "EmrchainChainHalted", "EmrchainPeersBelowQuorum",
        "EmrchainRoundsPerHeightHigh", "EmrchainMempoolNearFull", "EmrchainIpfsDown",
        "EmrchainRedisDown", "EmrchainHsmDown", "EmrchainReplicationBacklog",
        "EmrchainErasureBacklog", "EmrchainAuthFailureSpike", "EmrchainEquivocationDetected",
        "EmrchainDiskAlmostFull", "EmrchainDiskFillingUp",
    ):  # fmt: skip
        assert wanted in rules


@pytest.mark.parametrize(
    ("original", "broken", "alert"),
    [
        ("expr: up{job=\"emrchain\"} == 0", "expr: up{job=\"emrchain\"} == 2", "EmrchainNodeDown"),
        ("_bytes < 0.1", "_bytes < 0.01", "EmrchainDiskAlmostFull"),
        ("[5m])) > 100", "[5m])) > 1000", "EmrchainAuthFailureSpike"),
    ],
)  # fmt: skip
def test_a_broken_rule_fails_its_unit_test(
    tmp_path: Path, original: str, broken: str, alert: str
) -> None:
    rules = RULES.read_text()
    assert rules.count(original) == 1
    (tmp_path / RULES.name).write_text(rules.replace(original, broken))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


def test_shipped_configs_are_valid() -> None:
    result = promtool("check", "config", "prometheus-devnet.yml", cwd=PROMETHEUS_CONFIGS)
    assert result.returncode == 0, result.stdout + result.stderr
    require_service("alertmanager")
    checked = subprocess.run(
        ["amtool", "check-config", str(ALERTMANAGER_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    receivers = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())["receivers"]
    assert any(receiver.get("webhook_configs") for receiver in receivers)
    assert any(receiver.get("email_configs") for receiver in receivers)
