"""One gate applies a decided block, whoever delivers it (issue #17): consensus claims the
height when it decides, before its write starts, so a block-sync response handled in between
(the crash the issue reports: the same block applied twice, "HALT ... app hash") does nothing;
and a block sync applied first makes consensus's own delivery a no-op."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from emrchain.node.blocksync import BlockSync, SyncLimits
from emrchain.node.chain import ChainHaltError
from emrchain.node.messages import BlockResponse
from emrchain.node.node import Node
from emrchain.node.wiring import build
from emrchain.p2p import Misbehaviour
from tests.node.in_process import commit_for, single_validator_node


def _blocksync(node: Node, synced: list[int], reports: list[object]) -> BlockSync:
    return BlockSync(
        node.chain,
        lambda *_: True,
        synced.append,
        lambda peer, kind: reports.append((peer, kind)),
        build(SyncLimits, node.config),
    )


def test_a_sync_response_between_the_decision_and_the_write_is_a_no_op(tmp_path: Path) -> None:
    with single_validator_node(tmp_path) as node:
        chain = node.chain
        height_before = chain.height
        block = chain.build_block(height_before + 1, node.validator_key.public_key)
        commit = commit_for(node, block)
        synced: list[int] = []
        reports: list[object] = []
        blocksync = _blocksync(node, synced, reports)
        # Asked of "peer", so its answer is solicited and not reported.
        blocksync.peers.requested("peer", block.height)

        async def scenario() -> bool:
            # Consensus decides: the height is claimed at the call, the write not yet begun.
            write = chain.apply_block_pipelined(block, commit, chain.own_block_verdict(block))
            assert chain.applying and chain.height == height_before
            # The response in the same loop turn (one write from the peer): nothing happens.
            blocksync.on_response("peer", BlockResponse(block, commit))
            assert synced == [] and chain.height == height_before
            return await write

        assert asyncio.run(scenario()) is True
        chain.close()
        assert chain.height == height_before + 1 and not chain.applying
        assert reports == []
        # The same response again, now stale: refused and reported, never applied twice.
        blocksync.on_response("peer", BlockResponse(block, commit))
        assert chain.height == height_before + 1
        assert reports == [("peer", Misbehaviour.BAD_SYNC_RESPONSE)]


def test_consensus_delivering_a_block_sync_applied_first_is_a_no_op(tmp_path: Path) -> None:
    with single_validator_node(tmp_path) as node:
        chain = node.chain
        block = chain.build_block(chain.height + 1, node.validator_key.public_key)
        commit = commit_for(node, block)
        synced: list[int] = []
        reports: list[object] = []
        blocksync = _blocksync(node, synced, reports)
        blocksync.peers.requested("peer", block.height)
        blocksync.on_response("peer", BlockResponse(block, commit))
        assert synced == [block.height] and reports == []
        assert asyncio.run(chain.apply_block_pipelined(block, commit)) is False
        assert chain.apply_block(block, commit) is False
        assert chain.height == block.height


def test_a_conflicting_block_at_a_claimed_height_halts(tmp_path: Path) -> None:
    """Two verified commits for different blocks at one height: the validators forked."""
    with single_validator_node(tmp_path) as node:
        chain = node.chain
        block = chain.build_block(chain.height + 1, node.validator_key.public_key)
        other = dataclasses.replace(
            block, header=dataclasses.replace(block.header, time_ms=block.header.time_ms + 1)
        )
        write = chain.apply_block_pipelined(block, commit_for(node, block))
        with pytest.raises(ChainHaltError, match="forked"):
            chain.apply_block(other, commit_for(node, other))
        assert asyncio.run(write) is True
        chain.close()
        with pytest.raises(ChainHaltError, match="forked"):
            chain.apply_block(other, commit_for(node, other))


def test_a_lying_response_is_reported_and_nothing_applied(tmp_path: Path) -> None:
    with single_validator_node(tmp_path) as node:
        chain = node.chain
        height_before = chain.height
        block = chain.build_block(height_before + 1, node.validator_key.public_key)
        other = dataclasses.replace(
            block, header=dataclasses.replace(block.header, time_ms=block.header.time_ms + 1)
        )
        synced: list[int] = []
        reports: list[object] = []
        blocksync = _blocksync(node, synced, reports)
        blocksync.peers.claim("liar", 10**12)
        blocksync.peers.requested("liar", block.height)
        # The commit is for another block than the one sent.
        blocksync.on_response("liar", BlockResponse(other, commit_for(node, block)))
        assert chain.height == height_before and synced == []
        assert reports == [("liar", Misbehaviour.BAD_SYNC_RESPONSE)]
        # Demoted: its claim is gone and ignored for the demotion period.
        assert blocksync.peers.claimed_height("liar") is None
        blocksync.peers.claim("liar", 10**12)
        assert blocksync.peers.claimed_height("liar") is None
