"""Shared fixtures for the whole test suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain.devnet.harness import Devnet

pytest_plugins = ["tests.services.fixtures", "tests.browser.chromium"]


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    """A running 4-validator devnet of real processes on 127.0.0.1, stopped after the test."""
    network = Devnet(tmp_path / "net", 4)
    try:
        network.start_all()
        network.wait_for_height(1, [0, 1, 2, 3], timeout_s=60)
        yield network
    finally:
        network.stop_all()
