"""The node holds what a peer sends it wrong against that peer (issue 17 item 4): a real node,
opened in-process with its p2p layer and receive loop running, and a real peer with the other
validator's node key over TCP."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import jsonschema_rs

from emrchain.config.homes import create_testnet
from emrchain.config.node import load_node_config, render_node_config
from emrchain.keystore.file import load_key_file
from emrchain.node.node import Node
from emrchain.node.rpc_view import NodeRpcView
from emrchain.p2p import CloseReason, Misbehaviour, P2PConfig, PeerManager
from emrchain.rpc.openapi_schemas import STATUS
from emrchain.rpc.server import status_json
from tests.node.in_process import CHAIN_ID
from tests.p2p.helpers import run, wait_until

UNUSED_CHANNEL = 200  # no node message lives there: whatever arrives on it does not decode


def test_an_undecodable_message_is_reported_until_the_sender_is_banned(tmp_path: Path) -> None:
    homes, _ = create_testnet(
        tmp_path, validators=2, chain_id=CHAIN_ID, host="127.0.0.1", base_port=0
    )
    config = load_node_config(homes[0])
    p2p = dataclasses.replace(config.p2p, misbehaviour_ban_threshold=3)
    config.config_path.write_text(render_node_config(dataclasses.replace(config, p2p=p2p)))
    node = Node.open(homes[0])
    peer_key = load_key_file(load_node_config(homes[1]).node_key_path)

    def p2p_status() -> Any:
        """`/status` "p2p" as the RPC builds it, checked against the documented schema."""
        status = status_json(NodeRpcView(node))
        jsonschema_rs.validate(STATUS, status)
        return status["p2p"]

    async def scenario() -> None:
        await node.p2p.start()
        receiving = asyncio.create_task(node._receive_loop())
        peer = PeerManager(
            P2PConfig(
                listen_host="127.0.0.1",
                listen_port=0,
                persistent_peers=(node.p2p.address,),
            ),
            peer_key,
            CHAIN_ID.encode(),
            [bytes.fromhex(node.p2p.node_id)],
        )
        try:
            await peer.start()
            await wait_until(lambda: node.p2p.is_connected(peer.node_id), 10.0, "connected")
            for _ in range(2):
                assert peer.send(node.p2p.node_id, UNUSED_CHANNEL, b"junk")
            reports = Misbehaviour.PROTOCOL_VIOLATION
            await wait_until(lambda: node.p2p.stats().misbehaviour[reports] == 2, 5.0, "reports")
            assert node.undecodable_messages == 2 and node.p2p.is_connected(peer.node_id)
            assert p2p_status() == {
                "peers": {peer.node_id: {"strikes": {"protocol_violation": 2}}},
                "bans_in_force": 0,
                "bans": 0,
                "unknown_peer_refusals": 0,
            }
            assert peer.send(node.p2p.node_id, UNUSED_CHANNEL, b"junk")
            await wait_until(lambda: not node.p2p.is_connected(peer.node_id), 5.0, "the ban")
            stats = node.p2p.stats()
            assert stats.bans == 1 and stats.disconnects[CloseReason.BANNED] == 1
            assert peer.node_id in node.p2p.banned_peers()
            assert p2p_status() == {
                "peers": {},
                "bans_in_force": 1,
                "bans": 1,
                "unknown_peer_refusals": 0,
            }
        finally:
            receiving.cancel()
            await peer.close()
            await node.p2p.close()
            await node.records.close()

    try:
        run(scenario(), deadline_s=30)
    finally:
        node._database.close()
