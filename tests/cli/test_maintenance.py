"""`emrchain reindex` and `emrchain rollback` on a real node's home: the tx index deleted and
rebuilt, lookups answer again; the refusals leave the store as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from emrchain.devnet.harness import Devnet
from emrchain.devnet.workload import anchor_transactions
from emrchain.store import BlockStore, ChainDatabase, layout
from tests.node.conftest import assert_proof, chain_id


def emrchain(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emrchain.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def delete_tx_index(home: Path) -> int:
    with ChainDatabase.open(home) as database:
        with database.db.iterator(prefix=layout.TX_LOCATION, include_value=False) as keys:
            doomed = list(keys)
        for key in doomed:
            database.db.delete(key)
    return len(doomed)


def test_reindex_rebuilds_the_tx_index_of_a_stopped_node(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 1) as network:
        network.start(0)
        network.wait_for_height(1, [0], timeout_s=90)
        network.register_workload_members(senders=5, seed=8)
        accepted = network.submit(
            anchor_transactions(60, chain_id=chain_id(network), senders=5, seed=8)
        )
        network.wait_committed(0, accepted, timeout_s=120)
        network.stop(0)
        home = network.homes[0]
        assert delete_tx_index(home) >= len(accepted)
        network.start(0)
        network.wait_for_height(1, [0], timeout_s=90)
        assert network.rpc(0, f"/txs/{accepted[0]}")["http_status"] == 404
        refused = emrchain("reindex", "--home", str(home))
        assert refused.returncode != 0 and "stop it first" in refused.stderr
        network.stop(0)

        rebuilt = emrchain("reindex", "--home", str(home))
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "reindexed tx index from heights 1.." in rebuilt.stdout
        network.start(0)
        network.wait_for_height(1, [0], timeout_s=90)
        for tx_id in accepted:
            assert_proof(network, 0, tx_id)


def test_rollback_refusals_change_nothing(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 1, consensus={"create_empty_blocks": True}) as network:
        home = network.homes[0]
        at_genesis = emrchain("rollback", "--home", str(home))
        assert at_genesis.returncode != 0 and "holds no chain" in at_genesis.stderr
        network.configure(0, {"storage": {"undo_heights": 0}})
        network.start(0)
        network.wait_for_height(3, [0], timeout_s=90)
        network.stop(0)
        with ChainDatabase.open(home) as database:
            height = BlockStore(database).last_height()
        refused = emrchain("rollback", "--home", str(home))
        assert refused.returncode != 0 and "no undo record" in refused.stderr
        with ChainDatabase.open(home) as database:
            assert BlockStore(database).last_height() == height
        network.start(0)  # still starts, and goes on
        network.wait_for_height(height + 1, [0], timeout_s=90)
