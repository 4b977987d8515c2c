"""Issue 18 item 4 on real processes: a validator started late catches up by block sync,
fetching ahead from several peers at once (`[consensus] sync_window_blocks`), and its
`/status` sync counters say which peers served it."""

from __future__ import annotations

from pathlib import Path

from emrchain.devnet.harness import Devnet
from emrchain.devnet.workload import anchor_transactions
from tests.node.conftest import assert_no_equivocation, assert_same_chain, chain_id

BEHIND_BLOCKS = 40


def test_a_node_started_late_catches_up_from_several_peers(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 4, consensus={"create_empty_blocks": True}) as network:
        for index in (0, 1, 2):
            network.start(index)
        network.wait_for_height(2, [0, 1, 2], timeout_s=90)
        network.register_workload_members(senders=10, seed=4, committed_on=[0, 1, 2])
        chain = chain_id(network)
        accepted = network.submit(
            anchor_transactions(300, chain_id=chain, senders=10, seed=4), nodes=[0, 1, 2]
        )
        network.wait_committed(0, accepted, timeout_s=120)
        network.wait_for_height(BEHIND_BLOCKS, [0, 1, 2], timeout_s=180)
        network.start(3)
        target = network.height(0)
        network.wait_for_height(target, [3], timeout_s=120)
        status = network.rpc(3, "/status")
        sync = status["sync"]
        served = {peer: blocks for peer, blocks in sync["blocks_by_peer"].items() if blocks}
        print(f"node3 synced {status['blocks_synced']} blocks: {sync}")
        assert len(served) >= 2, sync  # the window was spread over several peers
        assert sum(served.values()) == status["blocks_synced"] >= BEHIND_BLOCKS // 2
        assert set(served) <= set(status["peers"])
        network.wait_committed(3, accepted, timeout_s=60)
        # Caught up and voting: the four go on together.
        network.wait_for_height(network.height(0) + 3, [0, 1, 2, 3], timeout_s=90)
        assert_same_chain(network, [0, 1, 2, 3])
        assert_no_equivocation(network, [0, 1, 2, 3])
