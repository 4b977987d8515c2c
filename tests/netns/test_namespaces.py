"""The namespace plumbing itself: what a network creates it deletes, and a sweep removes what a
dead run left behind without touching a live run's namespaces."""

from __future__ import annotations

import os
import subprocess

from emrchain.devnet.netns import NAME_PREFIX, HostNetwork, list_namespaces, sweep_stale
from tests.netns.conftest import require_namespaces


def test_destroy_removes_every_namespace_it_created() -> None:
    require_namespaces()
    network = HostNetwork(2)
    network.create()
    try:
        ours = {name for name in list_namespaces() if name.startswith(network.prefix)}
        assert ours == {network.switch, network.namespace(0), network.namespace(1)}
    finally:
        network.destroy()
    assert not [name for name in list_namespaces() if name.startswith(network.prefix)]


def test_sweep_removes_a_dead_runs_namespaces_only() -> None:
    require_namespaces()
    dead_pid = _a_dead_pid()
    stale = f"{NAME_PREFIX}-{dead_pid}-sweeptest-sw"
    live = f"{NAME_PREFIX}-{os.getpid()}-sweeptest-sw"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        swept = sweep_stale()
        names = list_namespaces()
        assert stale in swept and stale not in names
        assert live in names
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def _a_dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
