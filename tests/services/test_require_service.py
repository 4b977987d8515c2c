"""require_service: skip locally, fail under CI=true, when a service's software is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.services import fixtures


def test_missing_service_fails_in_ci_and_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and redis is not available"):
        fixtures.require_service("redis")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no redis-server binary"):
        fixtures.require_service("redis")


def test_missing_ipfs_install_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The script's cache directory variable moves the expected binary somewhere empty.
    monkeypatch.setenv("EMRCHAIN_CACHE_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"Kubo missing at .*absent"):
        fixtures.require_service("ipfs")


def test_unknown_service_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        fixtures.require_service("postgres")
