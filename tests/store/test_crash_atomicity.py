"""Kill a committing process with SIGKILL, many times: the store always holds exactly a prefix
of complete blocks, with the app hash and state of that height, and resumes from there."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from emrchain.devnet.workload import anchor_transactions
from emrchain.store import layout, reconcile
from tests.state.chain import CHAIN_ID, ChainBuilder
from tests.store.conftest import initialized_store, open_store
from tests.store.crash_writer import write_records

REPO = Path(__file__).resolve().parents[2]
BLOCKS = 80
TXS_PER_BLOCK = 120
"""About 100 KB per block batch: more than LevelDB's 64 KB log buffer, so one batch takes several
write calls and a kill can fall between them."""
KILLS = 24


def expected_states(chain: ChainBuilder) -> list[dict[bytes, bytes]]:
    """Application state after each height (index 0 = genesis), replayed from the results."""
    state = {key: value for key, value in chain.genesis.writes.items() if value is not None}
    states = [dict(state)]
    for built in chain.built:
        for key, value in built.result.writes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        states.append(dict(state))
    return states


def stored_state(store) -> dict[bytes, bytes]:
    return {key[1:]: value for key, value in store.database.db.iterator(prefix=layout.STATE)}


def test_sigkill_during_commits_leaves_a_prefix_of_complete_blocks(tmp_path: Path) -> None:
    chain = ChainBuilder()
    chain.register_workload(senders=50)  # height 1, so that the anchors apply
    txs = anchor_transactions(BLOCKS * TXS_PER_BLOCK, chain_id=CHAIN_ID, senders=50)
    for height in range(BLOCKS):
        chain.add_block(txs[height * TXS_PER_BLOCK : (height + 1) * TXS_PER_BLOCK])
    states = expected_states(chain)
    blocks_file = tmp_path / "blocks.bin"
    write_records(blocks_file, [(b.block.encode(), b.commit.encode()) for b in chain.built])
    home = tmp_path / "node"
    initialized_store(home, chain).database.close()

    heights_seen = []
    for attempt in range(KILLS):
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.store.crash_writer",
                str(home),
                CHAIN_ID.decode(),
                str(blocks_file),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        # Let it commit a varying number of blocks, then kill at a varying moment.
        reported = 0
        for _ in range(1 + attempt % 3):
            line = child.stdout.readline().strip()
            if line.isdigit():
                reported = int(line)
        time.sleep((attempt * 7 % 24) / 1000)  # spread over a whole execute + commit cycle
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()

        store = open_store(home)
        height = store.last_height()
        status = reconcile(store, full=attempt == KILLS - 1)
        assert status.consistent, status.describe()
        assert height >= reported  # a reported commit was synced, so it survived
        assert store.last_app_hash() == chain.built[height - 1].result.app_hash
        assert store.last_block_id() == chain.built[height - 1].block.block_id
        assert stored_state(store) == states[height]
        assert store.block(height + 1) is None and store.commit(height + 1) is None
        if height < len(chain.built):
            following = chain.built[height].block.txs
            assert all(store.tx_location(hashlib.sha256(tx).digest()) is None for tx in following)
        last_txs = chain.built[height - 1].block.txs
        assert store.tx_location(hashlib.sha256(last_txs[-1]).digest()) == (
            height,
            len(last_txs) - 1,
        )
        store.database.close()
        heights_seen.append(height)
    assert heights_seen == sorted(heights_seen) and heights_seen[-1] > heights_seen[0]
