"""Fixtures of the record tests: two swarm-connected IPFS nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.records.ipfs_swarm import SwarmIpfsDaemon
from tests.services.fixtures import require_service


@pytest.fixture(scope="module")
def ipfs_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SwarmIpfsDaemon, ...]]:
    """Two online Kubo nodes on loopback, connected to each other (A dialled B); per module
    (a node takes seconds to start): a test that kills one starts it again."""
    require_service("ipfs")
    daemons = tuple(
        SwarmIpfsDaemon(tmp_path_factory.mktemp(f"ipfs-{name}") / "repo") for name in "ab"
    )
    try:
        for daemon in daemons:
            daemon.start()
        daemons[0].connect(daemons[1])
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()
