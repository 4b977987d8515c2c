"""docs/spec/consensus.md §4.2-4.4 on real processes: a validator killed between persisting its
signature and sending it re-sends that message from its WAL after restart.

Three of four validators run (node2 never starts), so every height needs all three of them.
node3 carries the test-only fault hook: it exits right after its prevote of (height 3, round
0) is durable in its WAL and signing state, before the broadcast. node0 and node1 then hold two
of the four prevotes of round 0 and wait: leaving round 0 takes 2f+1 = 3 of its prevotes (to
precommit, or to start the prevote timeout) or messages of a higher round from f+1 = 2
validators, and node3 alone is one. So height 3 completes only once node0 or node1 has node3's
round-0 prevote, the one it died before sending (the guard lets node3 sign no other at that
position). The restarted node3 logs that it re-sent it; the height then completes with node3's
precommit in the commit (round 0 if a running validator proposes it, a later round if node2,
which never runs, is round 0's proposer).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from emrchain.devnet.harness import Devnet
from emrchain.node.consensus_driver import FAULT_ENVIRONMENT_VARIABLE, FAULT_EXIT_STATUS
from tests.node.conftest import assert_no_equivocation, assert_same_chain

HEIGHT = 3
RUNNING = (0, 1, 3)
RESENT_LINE = f"resumed height {HEIGHT}: re-sent"


def test_killed_between_persisting_and_sending_its_prevote_it_resends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = Devnet(tmp_path / "net", 4)
    try:
        began = time.monotonic()
        network.start(0)
        network.start(1)
        monkeypatch.setenv(FAULT_ENVIRONMENT_VARIABLE, f"{HEIGHT}/0/PREVOTE")
        network.start(3)
        monkeypatch.delenv(FAULT_ENVIRONMENT_VARIABLE)
        network.wait_for(
            lambda: not network.is_running(3), timeout_s=90, what="node3 to exit at its hook"
        )
        exited = time.monotonic()
        assert network.processes[3].returncode == FAULT_EXIT_STATUS
        log = network.log_path(3).read_text()
        assert "TEST FAULT HOOK ARMED" in log
        assert f"at height {HEIGHT} round 0 step PREVOTE, before sending" in log
        # Without node3's prevote the others cannot finish the height.
        assert [network.height(index) for index in (0, 1)] == [HEIGHT - 1, HEIGHT - 1]

        network.start(3)
        network.wait_for_height(HEIGHT, list(RUNNING), timeout_s=90)
        completed = time.monotonic()
        assert RESENT_LINE in network.log_path(3).read_text()
        node3 = network.rpc(3, "/status")["validator"]
        commit = network.rpc(0, f"/blocks/{HEIGHT}")["commit"]
        assert node3 in commit["signers"], commit
        assert_same_chain(network, list(RUNNING))
        assert_no_equivocation(network, list(RUNNING))
        print(
            f"hook fired {exited - began:.1f} s after start; height {HEIGHT} completed "
            f"{completed - exited:.1f} s after the exit (restart included), "
            f"in round {commit['round']}"
        )
    finally:
        network.stop_all()
