"""Issue 4 acceptance, faults on real processes: kill -9 under load and catch-up by block sync,
loss of quorum and recovery, repeated kill -9 during commits, hostile P2P connections."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from emrchain.config.node import load_node_config
from emrchain.crypto.keys import Ed25519Signer
from emrchain.devnet.harness import DEVNET_CONSENSUS, Devnet
from emrchain.devnet.workload import anchor_transactions
from emrchain.p2p import P2PConfig, PeerManager
from tests.node.conftest import assert_no_equivocation, assert_same_chain, chain_id


def signers_of(network: Devnet, index: int, height: int) -> set[str]:
    commit = network.rpc(index, f"/blocks/{height}")["commit"]
    return set(commit["signers"]) if commit else set()


def validator_key(network: Devnet, index: int) -> str:
    return network.rpc(index, "/status")["validator"]


def test_kill_minus_nine_then_catch_up_by_block_sync(devnet: Devnet) -> None:
    chain = chain_id(devnet)
    for seed in (2, 3):
        devnet.register_workload_members(senders=20, seed=seed)
    # Clients talk to the survivors: a transaction accepted by a node that is killed before it
    # gossips it dies with that node's mempool (which is not durable) and must be resubmitted.
    # The acceptance is that nothing *committed* is ever lost.
    first = devnet.submit(
        anchor_transactions(400, chain_id=chain, senders=20, seed=2), nodes=[0, 1, 2]
    )
    devnet.kill(3)  # under load: the first batch is still being committed
    second = devnet.submit(
        anchor_transactions(400, chain_id=chain, senders=20, seed=3), nodes=[0, 1, 2]
    )
    assert len(first) == len(second) == 400
    devnet.wait_committed(0, first + second, timeout_s=120)
    stopped_at = devnet.height(0)
    devnet.wait_for_height(stopped_at + 3, [0, 1, 2], timeout_s=60)  # the others keep going
    devnet.start(3)
    target = devnet.height(0)
    devnet.wait_for_height(target, [3], timeout_s=90)
    assert devnet.rpc(3, "/status")["blocks_synced"] > 0
    devnet.wait_committed(3, first + second, timeout_s=60)  # nothing committed was lost
    # Rejoined consensus: its precommits appear in commits of later heights.
    key = validator_key(devnet, 3)
    devnet.wait_for(
        lambda: key in signers_of(devnet, 0, devnet.height(0)),
        timeout_s=60,
        what="node3's precommit in a new commit certificate",
    )
    assert_same_chain(devnet, [0, 1, 2, 3])
    assert_no_equivocation(devnet, [0, 1, 2, 3])


TIMEOUT_SETTINGS = ("timeout_propose_ms", "timeout_prevote_ms", "timeout_precommit_ms")


def consensus_step(network: Devnet, index: int) -> tuple[int, int, str]:
    """(height, round, step) the node's consensus is working on."""
    state = network.rpc(index, "/status")["consensus"]
    return state["height"], state["round"], state["step"]


def test_two_of_four_stopped_halts_without_divergence_then_resumes(devnet: Devnet) -> None:
    devnet.stop(2)
    devnet.stop(3)
    # A block already in flight may still commit. Both survivors are stuck once each has
    # timed out its proposal at the height after its last block and waits for a prevote
    # quorum that cannot come (without 2f+1 votes of any kind no round timeout starts).
    def stuck(index: int) -> bool:
        height, _, step = consensus_step(devnet, index)
        return height == devnet.height(index) + 1 and step != "PROPOSE"

    devnet.wait_for(lambda: stuck(0) and stuck(1), timeout_s=60, what="both survivors stuck")
    frozen = [devnet.height(0), devnet.height(1)]
    # Nothing is awaited here, so there is no condition to poll for: the claim is that no
    # block commits during three full rounds' worth of the devnet's timeouts, checked all along.
    observe_s = 3 * sum(DEVNET_CONSENSUS[name] for name in TIMEOUT_SETTINGS) / 1000
    deadline = time.monotonic() + observe_s
    while time.monotonic() < deadline:
        assert [devnet.height(0), devnet.height(1)] == frozen, "committed without a quorum"
        time.sleep(0.2)
    devnet.start(2)
    devnet.wait_for_height(max(frozen) + 2, [0, 1, 2], timeout_s=90)
    assert_same_chain(devnet, [0, 1, 2])
    assert_no_equivocation(devnet, [0, 1, 2])


def test_repeated_kill_minus_nine_during_commits(devnet: Devnet) -> None:
    chain = chain_id(devnet)
    for round_number in range(3):
        devnet.register_workload_members(senders=10, seed=10 + round_number)
    accepted: list[str] = []
    # Three kill moments: as soon as node 1 holds gossiped transactions in its mempool (or has
    # committed a block, if gossip and commit beat the poll), right after it commits the next
    # block, and two blocks later.
    heights_to_wait = (0, 1, 2)
    for round_number, blocks in enumerate(heights_to_wait):
        start_height = devnet.height(1)
        accepted += devnet.submit(
            anchor_transactions(150, chain_id=chain, senders=10, seed=10 + round_number),
            nodes=[0, 2, 3],
        )
        devnet.wait_for(
            lambda blocks=blocks, start_height=start_height: (
                devnet.height(1) >= max(start_height + blocks, start_height + 1)
                or (blocks == 0 and devnet.rpc(1, "/status")["mempool_txs"] > 0)
            ),
            timeout_s=60,
            what=f"kill moment {round_number} on node 1",
            poll_s=0.02,
        )
        devnet.kill(1)
        devnet.start(1)
        devnet.wait_for_height(devnet.height(0) + 1, [0, 1, 2, 3], timeout_s=90)
        health = devnet.rpc(1, "/health")
        assert health["ok"], health
    devnet.wait_committed(1, accepted, timeout_s=90)
    assert_same_chain(devnet, [0, 1, 2, 3])
    assert_no_equivocation(devnet, [0, 1, 2, 3])


def test_unknown_peer_and_garbage_frames_are_refused(devnet: Devnet) -> None:
    config = load_node_config(devnet.homes[0])
    host, port = config.p2p.listen_address.host, config.p2p.listen_address.port
    for payload in (b"\x00" * 64, struct.pack(">I", 0xFFFFFFF0) + b"x" * 16, b"EMRP\x01"):
        with socket.create_connection((host, port), timeout=5) as connection:
            connection.sendall(payload)
            connection.settimeout(10)
            try:
                assert connection.recv(1 << 16) is not None
                connection.recv(1 << 16)  # the node closes the connection: EOF or reset
            except (ConnectionResetError, TimeoutError):
                pass

    node_id = devnet.rpc(0, "/status")["node_id"]

    async def dial_with_unknown_key() -> tuple[list[str], int]:
        # The stranger knows node0 (its key and address); node0 does not know the stranger.
        stranger = PeerManager(
            P2PConfig(
                listen_host="127.0.0.1",
                listen_port=0,
                persistent_peers=(f"{node_id}@{host}:{port}",),
            ),
            Ed25519Signer.generate(),
            chain_id(devnet),
            [bytes.fromhex(node_id)],
        )
        await stranger.start()
        deadline = time.monotonic() + 30
        while not (failures := sum(stranger.stats().handshake_failures.values())):
            assert time.monotonic() < deadline, "node0 never refused the stranger's handshake"
            await asyncio.sleep(0.05)
        peers = stranger.connected_peers()
        await stranger.close()
        return peers, failures

    height = devnet.height(0)
    peers, failures = asyncio.run(dial_with_unknown_key())
    assert peers == []
    assert failures >= 1
    devnet.wait_for_height(height + 3, [0, 1, 2, 3], timeout_s=30)
    assert len(devnet.rpc(0, "/status")["peers"]) == 3
