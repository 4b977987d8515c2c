"""Issue 17, "memory": validator 3 (real keys) floods the honest nodes with large proposals it
validly signed, for heights h+2..h+4 (beyond the core's window, so the runtime keeps them for
later). Before the fix they were buffered unchecked, up to 2,048 messages (~34 GB possible; 64
junk proposals took a node from 73 to 752 MiB).

Bound (docs/spec/consensus.md §4.7): what a peer can make the runtime keep for later is at most
`max_future_bytes_per_peer` (64 MiB by default) plus bookkeeping; beyond it the peer is reported
for a flood (banned at the 10th report). The test measures every honest process's VmRSS before
and during the flood and asks that it grow by at most FLOOD_RSS_BOUND_MIB, and that every honest
node commits 6 more heights within 60 s (the flood takes no slot of the current heights)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from emrchain import _core
from emrchain.devnet.byzantine import ByzantinePeer
from emrchain.devnet.harness import Devnet
from emrchain.types.block import tx_ids
from tests.byzantine.runtime_support import (
    BYZANTINE,
    HONEST,
    all_running,
    banned_by,
    junk_block,
    log_of,
    proposal_message,
    rss_kib,
)

TX_BYTES = 4_096  # limits.max_tx_bytes
TXS_PER_BLOCK = 1_024  # 4 MiB blocks
ROUNDS_PER_HEIGHT = 20  # 60 proposals, 240 MiB: four times the budget
FLOOD_HEIGHTS = (2, 3, 4)  # above the honest nodes' height
FLOOD_RSS_BOUND_MIB = 140
"""The per-peer budget (64 MiB) plus decoding and the P2P receive path's transient buffers.
Measured on this branch: ~100 MiB of growth; ~170 MiB with the budget check removed."""
HEIGHTS_AFTER = 6
STALL_BOUND_S = 60.0
# Heights every ~3 s, so that the flood arrives while its heights are still 2..4 above.
CONSENSUS = {"create_empty_blocks": True, "timeout_commit_ms": 3_000}


def test_a_future_height_flood_is_bounded_in_memory_and_banned(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 4, consensus=CONSENSUS) as network:
        for index in HONEST:
            network.start(index)
        with ByzantinePeer(network, BYZANTINE) as peer:
            peer.wait_connected(HONEST, 60.0)
            network.wait_for_height(3, HONEST, 90.0)
            template = peer.wait_for(peer.latest_proposal, 30.0, "an honest proposal").block
            txs = tuple(
                hashlib.sha256(b"tx-%d" % i).digest() * (TX_BYTES // 32)
                for i in range(TXS_PER_BLOCK)
            )
            ids = tx_ids(txs)
            baseline = {index: rss_kib(network, index) for index in HONEST}
            peak = dict(baseline)
            base = max(network.height(index) for index in HONEST)
            for round_number in range(ROUNDS_PER_HEIGHT):
                current = max(network.height(index) for index in HONEST) + 1
                flood = []
                for above in FLOOD_HEIGHTS:
                    block = junk_block(peer, template, current + above, round_number)
                    header = dataclasses.replace(
                        block.header, tx_root=_core.merkle_root(ids), tx_count=len(txs)
                    )
                    block = dataclasses.replace(block, header=header, txs=txs)
                    signed = peer.proposal(current + above, round_number, block.block_id)
                    flood.append(proposal_message(signed, block))
                peer.send(None, *flood)
                for index in HONEST:
                    peak[index] = max(peak[index], rss_kib(network, index))

            def committed_on_all() -> bool:
                for index in HONEST:
                    peak[index] = max(peak[index], rss_kib(network, index))
                return all(network.height(index) >= base + HEIGHTS_AFTER for index in HONEST)

            network.wait_for(committed_on_all, STALL_BOUND_S, f"height {base + HEIGHTS_AFTER}")
            network.wait_for(
                lambda: all(banned_by(network, index, peer) for index in HONEST),
                30.0,
                "every honest node to ban validator 3 for the flood",
            )
            growth_mib = {index: (peak[index] - baseline[index]) / 1024 for index in HONEST}
            print(f"VmRSS baseline KiB {baseline}, peak KiB {peak}, growth MiB {growth_mib}")
            assert max(growth_mib.values()) <= FLOOD_RSS_BOUND_MIB, growth_mib
            for index in HONEST:
                assert "consensus: flood from peer" in log_of(network, index)
            assert all_running(network)
