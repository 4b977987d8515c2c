"""A real single-validator node opened in-process on a temporary home, driven block by block
without its network loops: the test builds this validator's block from the mempool, signs its
precommit and commits it, exactly the path a running node takes for its own proposal."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emrchain import _core
from emrchain.config.homes import ADMIN_IDENTITY_FILE, create_testnet
from emrchain.config.node import load_node_config, render_node_config
from emrchain.devnet.workload import registration_transactions
from emrchain.keystore.member import load_member_identity
from emrchain.node.node import Node
from emrchain.types import Block, CommitCertificate, Vote
from emrchain.types.block import tx_ids
from emrchain.types.vote import VoteType

CHAIN_ID = "emrchain-devnet"


@contextmanager
def single_validator_node(
    root: Path, records: dict[str, object] | None = None, **rpc_settings: object
) -> Iterator[Node]:
    """Open (not run) the one validator of a new testnet under `root`, with these `[rpc]`
    settings (and `[records]` settings); closed again afterwards."""
    homes, _ = create_testnet(root, validators=1, chain_id=CHAIN_ID, host="127.0.0.1", base_port=0)
    if rpc_settings or records:
        config = load_node_config(homes[0])
        config = dataclasses.replace(
            config,
            rpc=dataclasses.replace(config.rpc, **rpc_settings),
            records=dataclasses.replace(config.records, **(records or {})),
        )
        config.config_path.write_text(render_node_config(config))
    node = Node.open(homes[0])
    try:
        yield node
    finally:
        asyncio.run(node.records.close())
        node._database.close()


def commit_for(node: Node, block: Block) -> CommitCertificate:
    """The commit certificate of `block`: this (only) validator's precommit."""
    key = node.validator_key
    unsigned = Vote(VoteType.PRECOMMIT, block.height, 0, block.block_id, key.public_key, b"")
    signature = key.sign(unsigned.signed_message(node.chain_id))
    vote = Vote(VoteType.PRECOMMIT, block.height, 0, block.block_id, key.public_key, signature)
    return CommitCertificate.from_precommits([vote])


def commit_own_block(node: Node) -> Block:
    """Build this node's block from its mempool and commit it (validated as its own)."""
    chain = node.chain
    block = chain.build_block(chain.height + 1, node.validator_key.public_key)
    verdict = chain.own_block_verdict(block)
    chain.apply_block(block, commit_for(node, block), verdict)
    return block


def proposal_with(node: Node, txs: list[bytes]) -> Block:
    """A block for the next height carrying exactly `txs`, as another validator could propose
    it: this node's own proposal (empty pool or not) with its transactions replaced."""
    chain = node.chain
    built = chain.build_block(chain.height + 1, node.validator_key.public_key)
    header = dataclasses.replace(
        built.header, tx_root=_core.merkle_root(tx_ids(txs)), tx_count=len(txs)
    )
    return Block(header, tuple(txs), built.last_commit, ())


def register_workload_senders(node: Node, *, senders: int, seed: int) -> Block:
    """The home's organisation admin registers the workload's clinicians and patients
    (`emrchain.devnet.workload`), so that their anchors execute under the EMR rules; the block."""
    admin = load_member_identity(node.config.resolve(ADMIN_IDENTITY_FILE))
    txs = registration_transactions(
        admin.signer, node.config.node.organization_id, chain_id=CHAIN_ID.encode(),
        senders=senders, seed=seed,
    )
    assert all(admission.accepted for admission in node.mempool.admit_batch(txs))
    block = commit_own_block(node)
    results = node.chain.store.tx_results(block.height)
    assert results is not None and [result.code for result in results] == [0] * len(txs)
    return block
