"""Helpers for end-to-end tests on real validator processes (127.0.0.1 only)."""

from __future__ import annotations

from emrchain import _core
from emrchain.devnet.harness import Devnet


def chain_id(network: Devnet) -> bytes:
    return network.rpc(0, "/status")["chain_id"].encode()


def assert_same_chain(network: Devnet, nodes: list[int]) -> int:
    """Every node in `nodes` holds identical headers (so block ids and app hashes) at every
    height up to the lowest of their heights; returns that height."""
    common = min(network.height(index) for index in nodes)
    assert common >= 1
    for height in range(1, common + 1):
        headers = [network.rpc(index, f"/blocks/{height}")["header"] for index in nodes]
        assert all(header == headers[0] for header in headers), f"divergence at height {height}"
    return common


def assert_proof(network: Devnet, index: int, tx_id: str) -> None:
    """The tx's inclusion proof from node `index` verifies against its block header."""
    reply = network.rpc(index, f"/txs/{tx_id}")
    assert reply["status"] == "committed", reply
    header, proof = reply["header"], reply["proof"]
    assert proof["total"] == header["tx_count"]
    assert _core.verify_merkle_proof(
        bytes.fromhex(header["tx_root"]),
        bytes.fromhex(tx_id),
        proof["index"],
        proof["total"],
        [bytes.fromhex(item) for item in proof["audit_path"]],
    )


def assert_no_equivocation(network: Devnet, nodes: list[int]) -> None:
    """No node saw two conflicting votes from one validator (evidence comes from the votes
    each node received), and none halted."""
    for index in nodes:
        status = network.rpc(index, "/status")
        assert status["evidence"] == [], f"node{index} saw equivocation"
        assert status["halt"] is None, status["halt"]
