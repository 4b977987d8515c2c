"""The byzantine peer itself (emrchain/devnet/byzantine.py) against real validators: it connects
with validator 3's real node key, hears their messages, and what it signs with validator 3's real
consensus key counts towards their quorums. With only validators 0 and 1 running, the chain moves
only if its votes count (2 of 4 equal powers are not more than two thirds; 3 are)."""

from __future__ import annotations

from pathlib import Path

from emrchain.devnet.byzantine import ByzantinePeer
from emrchain.devnet.harness import Devnet

RUNNING = [0, 1]
BYZANTINE = 3


def test_the_byzantine_peers_votes_complete_a_quorum(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 4, consensus={"create_empty_blocks": True}) as network:
        for index in RUNNING:
            network.start(index)
        with ByzantinePeer(network, BYZANTINE) as peer:
            peer.wait_connected(RUNNING)

            def height_three() -> bool:
                peer.follow()
                return min(network.height(index) for index in RUNNING) >= 3

            peer.wait_for(height_three, 90.0, "height 3 with our votes")
            assert set(peer.peer_heights()) >= set(RUNNING)
            signers = network.rpc(0, "/blocks/2")["commit"]["signers"]
            assert peer.consensus_key.public_key.hex() in signers
