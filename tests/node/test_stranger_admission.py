"""Issue 15 acceptance, "no block space for strangers", on real validator processes: properly
signed transactions from unregistered keys are refused at admission with `not_a_member` —
10,000 through `POST /txs` (5,000 JSON, 5,000 binary) and more in gossip batches from a
validator peer — and the blocks committed meanwhile stay empty, while a registered member's
transaction is still admitted and committed (`docs/spec/state.md` §6).

Validators 0-2 of a 4-validator devnet run (3 of 4 is a quorum); this test takes validator 3's
P2P identity from its home and speaks to them as that peer, so its batches arrive the way a
peer's gossip does."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.request
from pathlib import Path

from emrchain.config.node import load_node_config
from emrchain.crypto.keys import Ed25519Signer
from emrchain.devnet.harness import Devnet
from emrchain.devnet.workload import anchor_fields, anchor_transactions
from emrchain.keystore.file import load_key_file
from emrchain.node import messages
from emrchain.p2p import P2PConfig, PeerManager
from emrchain.rpc.binary import CONTENT_TYPE, encode_batch
from emrchain.types import Transaction, TxKind
from tests.node.conftest import assert_no_equivocation, assert_same_chain, chain_id

RUNNING = [0, 1, 2]
IMPERSONATED = 3
BATCH = 1_000
RPC_STRANGERS = 10_000
GOSSIP_STRANGERS = 3_000
MEMBER_SEED = 31


def strangers(count: int, label: str, chain: bytes) -> list[bytes]:
    """`count` anchors, each signed by its own never-registered key (valid signatures)."""
    txs = []
    for index in range(count):
        key = Ed25519Signer(hashlib.sha256(b"stranger/%s/%d" % (label.encode(), index)).digest())
        fields = anchor_fields(MEMBER_SEED, index, 1)  # a registered patient, even
        txs.append(Transaction.create(key, chain, TxKind.ANCHOR_RECORD, 1, fields).encode())
    return txs


def post_binary(url: str, txs: list[bytes]) -> dict[str, object]:
    request = urllib.request.Request(
        url + "/txs", data=encode_batch(txs), headers={"Content-Type": CONTENT_TYPE}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def refused_not_a_member(network: Devnet, index: int) -> int:
    counters = network.rpc(index, "/status")["counters"]
    return int(counters["refused_txs_by_code"].get("not_a_member", 0))


async def gossip_as_validator_3(
    network: Devnet, batches: list[list[bytes]], expected_refusals: list[int]
) -> None:
    """Connect to validators 0-2 with validator 3's node key, send each of them every batch
    as a mempool gossip message, and stay until their `not_a_member` counters reach
    `expected_refusals`."""
    home = network.homes[IMPERSONATED]
    config = load_node_config(home)
    node_keys = [load_key_file(load_node_config(item).node_key_path) for item in network.homes]
    addresses = []
    for index in RUNNING:
        listen = load_node_config(network.homes[index]).p2p.listen_address
        addresses.append(f"{node_keys[index].public_key.hex()}@{listen.host}:{listen.port}")
    peer = PeerManager(
        P2PConfig(listen_host="127.0.0.1", listen_port=0, persistent_peers=tuple(addresses)),
        load_key_file(config.node_key_path),
        chain_id(network),
        [key.public_key for key in node_keys],
    )
    await peer.start()
    drain = asyncio.create_task(_drain(peer))  # consensus traffic sent to "validator 3"
    try:
        ids = [node_keys[index].public_key.hex() for index in RUNNING]
        deadline = time.monotonic() + 30
        while not all(peer.is_connected(peer_id) for peer_id in ids):
            assert time.monotonic() < deadline, f"connected to {peer.connected_peers()} only"
            await asyncio.sleep(0.1)
        for batch in batches:
            channel, payload = messages.encode(messages.TxsMessage(tuple(batch)))
            for peer_id in ids:
                assert peer.send(peer_id, channel, payload)
        while [refused_not_a_member(network, index) for index in RUNNING] != expected_refusals:
            assert time.monotonic() < deadline + 60, "gossip batches were not all judged"
            await asyncio.sleep(0.2)
    finally:
        drain.cancel()
        await peer.close()


async def _drain(peer: PeerManager) -> None:
    async for _ in peer.messages():
        pass


def test_strangers_are_refused_at_admission_and_blocks_stay_empty(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 4) as network:
        for index in RUNNING:
            network.start(index)
        network.wait_for_height(1, RUNNING, timeout_s=60)
        chain = chain_id(network)
        network.register_workload_members(senders=1, seed=MEMBER_SEED, committed_on=RUNNING)
        first_empty = max(network.height(index) for index in RUNNING) + 1

        # 10,000 through the RPC: JSON to validator 0, binary to validator 1.
        rpc_txs = strangers(RPC_STRANGERS, "rpc", chain)
        half = RPC_STRANGERS // 2
        for start in range(0, half, BATCH):
            batch = rpc_txs[start : start + BATCH]
            reply = network.rpc(0, "/txs", {"txs": [tx.hex() for tx in batch]}, timeout_s=60)
            assert {(item["accepted"], item["code"]) for item in reply["results"]} == {
                (False, "not_a_member")
            }
            assert len(reply["results"]) == len(batch)
        for start in range(half, RPC_STRANGERS, BATCH):
            reply = post_binary(network.rpc_urls[1], rpc_txs[start : start + BATCH])
            refused = reply["refused"]
            assert reply["accepted"] == 0 and len(refused) == BATCH  # type: ignore[arg-type]
            assert {item["code"] for item in refused} == {"not_a_member"}  # type: ignore[union-attr]
        assert refused_not_a_member(network, 0) == half
        assert refused_not_a_member(network, 1) == half

        # More through gossip, from a validator peer, to all three.
        expected = [refused_not_a_member(network, i) + GOSSIP_STRANGERS for i in RUNNING]
        gossip_txs = strangers(GOSSIP_STRANGERS, "gossip", chain)
        batches = [gossip_txs[start : start + BATCH] for start in range(0, GOSSIP_STRANGERS, BATCH)]
        asyncio.run(gossip_as_validator_3(network, batches, expected))

        # The chain went on committing, and not one of those transactions took block space.
        last_empty = max(network.height(index) for index in RUNNING) + 2
        network.wait_for_height(last_empty, RUNNING, timeout_s=60)
        counts = [
            network.rpc(0, f"/blocks/{height}")["header"]["tx_count"]
            for height in range(first_empty, last_empty + 1)
        ]
        assert counts == [0] * len(counts)
        for index in RUNNING:
            status = network.rpc(index, "/status")
            assert status["mempool_txs"] == 0 and status["halt"] is None

        # A member is still admitted and committed right after.
        member = anchor_transactions(1, chain_id=chain, senders=1, seed=MEMBER_SEED)
        accepted = network.submit(member, nodes=[2])
        assert len(accepted) == 1
        network.wait_committed(0, accepted, timeout_s=30)
        assert_same_chain(network, RUNNING)
        assert_no_equivocation(network, RUNNING)
