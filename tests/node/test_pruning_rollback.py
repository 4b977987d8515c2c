"""Issue 20 parts 4 and 5 on real validator processes: pruning under load (RPC 410, block sync
from an archive peer while pruned peers answer `BlockPruned`, kill -9 mid-prune) and rollback
of one validator that then agrees with the network again (`docs/spec/pruning.md`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from emrchain.devnet.background_load import BackgroundLoad, anchor_stream
from emrchain.devnet.harness import Devnet
from emrchain.devnet.workload import anchor_transactions
from emrchain.state.progress import executed_height
from emrchain.store import BlockStore, ChainDatabase, reconcile
from tests.node.conftest import assert_no_equivocation, assert_same_chain, chain_id

RETAIN_BLOCKS = 10
PRUNING = {
    "retain_blocks": RETAIN_BLOCKS,
    "prune_interval_ms": 200,
    "prune_batch_heights": 3,
    # No lagging peer holds these nodes back: the late node must find the blocks elsewhere.
    "prune_peer_lag_max_blocks": 0,
}


def emrchain(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emrchain.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def base_height(network: Devnet, index: int) -> int:
    return int(network.rpc(index, "/status")["base_height"])


def test_a_late_node_syncs_from_the_archive_peer_while_pruned_peers_refuse(
    tmp_path: Path,
) -> None:
    with Devnet(tmp_path / "net", 4, consensus={"create_empty_blocks": True}) as network:
        for index in (0, 1):
            network.configure(index, {"storage": PRUNING})
        for index in (0, 1, 2):
            network.start(index)
        network.wait_for_height(2, [0, 1, 2], timeout_s=90)
        network.register_workload_members(senders=10, seed=5, committed_on=[0, 1, 2])
        accepted = network.submit(
            anchor_transactions(200, chain_id=chain_id(network), senders=10, seed=5),
            nodes=[0, 1, 2],
        )
        network.wait_committed(2, accepted, timeout_s=120)
        first_height = network.rpc(2, f"/txs/{accepted[0]}")["height"]
        network.wait_for(
            lambda: (
                min(base_height(network, 0), base_height(network, 1))
                > max(3 * RETAIN_BLOCKS, first_height)
            ),
            timeout_s=180,
            what="nodes 0 and 1 to prune",
        )
        # Pruned heights: 410 with the base; the archive node still serves them.
        reply = network.rpc(0, "/blocks/1")
        assert reply["http_status"] == 410 and reply["error"]["code"] == "height_pruned"
        assert reply["error"]["base_height"] > 3 * RETAIN_BLOCKS
        assert network.rpc(2, "/blocks/1")["header"]["height"] == 1
        # Its block was pruned with its index entry: 404, saying from where blocks are kept.
        missing = network.rpc(0, f"/txs/{accepted[0]}")
        assert missing["http_status"] == 404 and missing["error"]["code"] == "unknown_tx"
        assert missing["error"]["base_height"] > first_height
        assert network.rpc(2, f"/txs/{accepted[0]}")["status"] == "committed"
        pruned_below = min(base_height(network, 0), base_height(network, 1))
        network.start(3)
        target = network.height(2)
        network.wait_for_height(target, [3], timeout_s=180)
        status = network.rpc(3, "/status")
        sync = status["sync"]
        print(f"node3 synced {status['blocks_synced']} blocks: {sync}")
        assert sync["pruned_answers"] >= 1  # asked a pruned peer, was told, asked elsewhere
        assert sync["timeouts"] == 0 and sync["responses_refused"] == 0
        archive = network.rpc(2, "/status")["node_id"]
        # Only the archive node had the heights below the others' bases.
        assert sync["blocks_by_peer"].get(archive, 0) >= pruned_below - 1
        strikes = network.rpc(3, "/status")["p2p"]["peers"]
        assert all(not entry["strikes"] for entry in strikes.values()), strikes
        network.wait_committed(3, accepted, timeout_s=60)
        network.wait_for_height(network.height(0) + 2, [0, 1, 2, 3], timeout_s=90)
        assert_same_chain(network, [2, 3])
        assert_no_equivocation(network, [0, 1, 2, 3])


def test_kill_9_mid_prune_under_load_leaves_a_consistent_store(tmp_path: Path) -> None:
    settings = {"storage": {**PRUNING, "retain_blocks": 3, "prune_batch_heights": 1}}
    network = Devnet(tmp_path / "net", 1, consensus={"create_empty_blocks": True})
    network.configure(0, settings)
    with network:
        network.start(0)
        network.wait_for_height(1, [0], timeout_s=90)
        network.register_workload_members(senders=10, seed=6)
        stream = anchor_stream(chain_id(network), senders=10, seed=6)
        with BackgroundLoad(network, stream, batch_txs=20, interval_s=0.1) as load:
            for _ in range(3):
                base = base_height(network, 0)
                network.wait_for(
                    lambda base=base: base_height(network, 0) > base + 2,
                    timeout_s=120,
                    what="pruning to go on",
                )
                network.kill(0)  # the pruner deletes one height per batch: likely mid-pass
                network.start(0)  # refuses to start on an inconsistent store
                height = network.height(0)
                network.wait_for(
                    lambda height=height: network.height(0) > height + 2,
                    timeout_s=120,
                    what="the restarted node to commit",
                )
        assert load.accepted > 0
        assert network.rpc(0, "/status")["halt"] is None
        network.stop(0)
    with ChainDatabase.open(network.homes[0]) as database:
        store = BlockStore(database)
        status = reconcile(store, application_height=executed_height, full=True)
        assert status.problems == ()
        assert store.base_height() > 1 and store.block(store.base_height() - 1) is None


def test_a_rolled_back_validator_reexecutes_and_agrees(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 4, consensus={"create_empty_blocks": True}) as network:
        network.start_all()
        network.wait_for_height(2, [0, 1, 2, 3], timeout_s=90)
        network.register_workload_members(senders=10, seed=7)
        accepted = network.submit(
            anchor_transactions(100, chain_id=chain_id(network), senders=10, seed=7)
        )
        network.wait_committed(3, accepted, timeout_s=120)
        home = str(network.homes[3])
        refused = emrchain("rollback", "--home", home)
        assert refused.returncode != 0 and "stop it first" in refused.stderr
        network.stop(3)
        stopped_at = BlockStore(ChainDatabase.open(home))
        height, app_hash = stopped_at.last_height(), stopped_at.last_app_hash()
        stopped_at.database.close()
        for expected in (height - 1, height - 2):  # rolled back twice
            rolled = emrchain("rollback", "--home", home)
            assert rolled.returncode == 0, rolled.stderr
            assert f"head at {expected}," in rolled.stdout
        network.start(3)
        network.wait_for_height(height + 3, [3], timeout_s=120)
        # Re-executed heights height - 1 and height: the network's app hash again.
        header = network.rpc(3, f"/blocks/{height + 1}")["header"]
        assert header["app_hash"] == app_hash.hex()
        network.wait_for_height(network.height(0) + 2, [0, 1, 2, 3], timeout_s=90)
        assert_same_chain(network, [0, 1, 2, 3])
        assert_no_equivocation(network, [0, 1, 2, 3])
        assert network.rpc(3, "/status")["halt"] is None
