"""`consensus.create_empty_blocks = false` on four real validators (`docs/spec/config.md`): an
idle chain makes no blocks, a transaction given to one validator starts the next height on all
of them, one more block carries the app hash of its execution, and the chain is idle again; a
restarted validator wakes the others with its proposal or votes.

With the default (true) and timeout_commit 10 ms the chain commits dozens of empty blocks a
second, so waiting for it to go idle fails there."""

from __future__ import annotations

import time
from pathlib import Path

from emrchain.devnet.harness import Devnet
from emrchain.devnet.workload import anchor_transactions
from tests.node.conftest import assert_no_equivocation, assert_same_chain, chain_id

NODES = [0, 1, 2, 3]


def idle_height(network: Devnet, quiet_s: float, timeout_s: float) -> int:
    """Wait until no node's height has moved for `quiet_s`; their common height then."""
    deadline = time.monotonic() + timeout_s
    heights = [network.height(index) for index in NODES]
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = [network.height(index) for index in NODES]
        if now != heights:
            heights, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            assert len(set(heights)) == 1, f"idle at different heights: {heights}"
            return heights[0]
    raise AssertionError(f"the chain never went idle: heights {heights}")


def test_an_idle_chain_makes_no_blocks_and_one_transaction_wakes_it(tmp_path: Path) -> None:
    consensus = {"timeout_commit_ms": 10, "create_empty_blocks": False}
    with Devnet(tmp_path / "net", 4, consensus=consensus) as network:
        network.start_all()
        network.wait_for_height(1, NODES, timeout_s=60)
        network.register_workload_members(senders=1, seed=11)  # admission refuses strangers
        idle = idle_height(network, quiet_s=1.0, timeout_s=30)
        time.sleep(1.5)  # 150 timeout_commits: not one block more
        assert [network.height(index) for index in NODES] == [idle] * 4

        tx = anchor_transactions(1, chain_id=chain_id(network), senders=1, seed=11)
        accepted = network.submit(tx, nodes=[2])  # one validator holds it, maybe not the proposer
        assert len(accepted) == 1
        network.wait_committed(0, accepted, timeout_s=30)
        after = idle_height(network, quiet_s=1.0, timeout_s=30)

        assert network.rpc(0, f"/txs/{accepted[0]}")["height"] == idle + 1
        assert after == idle + 2, "the block with the transaction, then the one with its app hash"
        proof_block = network.rpc(1, f"/blocks/{idle + 2}")["header"]
        assert proof_block["tx_count"] == 0

        # A restarted validator starts the next height at once (it cannot tell an idle chain
        # from one it fell behind), so the idle ones must join it when its proposal or its
        # prevote arrives: they make one empty block and are idle again.
        network.stop(3)
        network.start(3)
        network.wait_for_height(after + 1, NODES, timeout_s=60)
        assert idle_height(network, quiet_s=1.5, timeout_s=30) == after + 1
        assert_same_chain(network, NODES)
        assert_no_equivocation(network, NODES)
