"""Block sync with a window of requests over several peers (issue 18 item 4), on real chains:
a fresh follower of a source chain fetches ahead from three peers, answers arrive in a
shuffled order and are applied strictly in height order; an unrequested block is refused; a
peer whose block is not what its commit proves is demoted, reported, and its heights asked of
another peer; a tiny buffer still gets there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from emrchain.node import messages
from emrchain.p2p import Misbehaviour
from tests.node.sync_pair import SyncRun, fill, follower, source_and_fresh_home

PEERS = ("peer-a", "peer-b", "peer-c")


def test_a_fresh_node_catches_up_from_three_peers_out_of_order(tmp_path: Path) -> None:
    with source_and_fresh_home(tmp_path) as (source, home):
        fill(source, blocks=12, txs_per_block=50)
        with follower(home, sync_window_blocks=8, sync_max_requests_per_peer=3) as node:
            run = SyncRun(source, node, PEERS, seed=3)
            run.run()
            chain = node.chain
            assert chain.height == source.chain.height
            assert chain.store.last_app_hash() == source.chain.store.last_app_hash()
            assert run.most_buffered > 0  # blocks did arrive ahead and waited for the gap
            by_peer = run.sync.blocks_synced_by_peer
            assert len(by_peer) == 3 and sum(by_peer.values()) == chain.height
            assert run.sync.blocks_synced == chain.height
            assert run.reports == []


def test_an_unrequested_block_is_refused_and_reported(tmp_path: Path) -> None:
    with source_and_fresh_home(tmp_path) as (source, home):
        fill(source, blocks=2, txs_per_block=10)
        with follower(home) as node:
            run = SyncRun(source, node, PEERS)
            run.sync.on_response("stranger", run.response(1))
            assert node.chain.height == 0 and len(run.sync.buffer) == 0
            assert run.reports == [("stranger", Misbehaviour.BAD_SYNC_RESPONSE)]


def test_a_lying_peer_is_demoted_and_its_heights_asked_of_another(tmp_path: Path) -> None:
    with source_and_fresh_home(tmp_path) as (source, home):
        fill(source, blocks=6, txs_per_block=10)
        with follower(home, sync_window_blocks=6, sync_max_requests_per_peer=3) as node:
            run = SyncRun(source, node, PEERS)
            run.announce()
            lied = next(height for peer, height in run.requests if peer == "peer-b")
            run.requests.remove(("peer-b", lied))
            honest = run.response(lied)
            other = run.response(lied + 1 if lied < source.chain.height else lied - 1)
            # The block of another height under this height's commit.
            run.sync.on_response("peer-b", dataclasses.replace(honest, block=other.block))
            assert run.reports == [("peer-b", Misbehaviour.BAD_SYNC_RESPONSE)]
            assert run.sync.peers.is_demoted("peer-b")
            assert ("peer-b", lied) not in run.requests
            assert any(height == lied for peer, height in run.requests if peer != "peer-b")
            run.requests = [(peer, height) for peer, height in run.requests if peer != "peer-b"]
            run.run()
            assert node.chain.store.last_app_hash() == source.chain.store.last_app_hash()
            assert "peer-b" not in run.sync.blocks_synced_by_peer


def test_a_buffer_smaller_than_a_block_still_catches_up_in_order(tmp_path: Path) -> None:
    """Every block is larger than the buffer: only the next height is ever taken, the others
    are asked for again once the gap below them is filled."""
    with source_and_fresh_home(tmp_path) as (source, home):
        fill(source, blocks=5, txs_per_block=40)
        with follower(home, sync_window_blocks=4, sync_buffer_max_bytes=1_024) as node:
            run = SyncRun(source, node, PEERS, seed=5)
            run.run()
            assert node.chain.height == source.chain.height
            assert run.most_buffered <= 1
            assert run.sync.buffer.size_bytes == 0 and run.reports == []


def test_responses_carry_their_size_for_the_buffer(tmp_path: Path) -> None:
    with source_and_fresh_home(tmp_path) as (source, home):
        fill(source, blocks=1, txs_per_block=10)
        with follower(home) as node:
            response = SyncRun(source, node, PEERS).response(2)
            _, payload = messages.encode(response)
            assert response.size_bytes == len(payload) > 10 * 100


def test_a_pruned_answer_sends_the_height_to_another_peer_and_a_stray_one_is_reported(
    tmp_path: Path,
) -> None:
    with source_and_fresh_home(tmp_path) as (source, home):
        fill(source, blocks=4, txs_per_block=10)
        with follower(home, sync_window_blocks=4, sync_max_requests_per_peer=4) as node:
            run = SyncRun(source, node, PEERS[:2])
            run.sync.on_status("peer-a", messages.StatusMessage(source.chain.height, bytes(32)))
            asked = [height for peer, height in run.requests if peer == "peer-a"]
            assert asked[:2] == [1, 2] and 5 not in asked
            run.requests.clear()
            # Through the wire encoding, as a pruned peer answers.
            channel, payload = messages.encode(messages.BlockPruned(1, base_height=3))
            pruned = messages.decode(channel, payload, node.config.limits, 1)
            assert pruned == messages.BlockPruned(1, 3)
            assert isinstance(pruned, messages.BlockPruned)
            run.sync.on_pruned("peer-a", pruned)
            assert run.reports == [] and run.sync.blocks_pruned_answers == 1
            assert run.requests == []  # nobody else claims height 1 yet
            run.sync.on_status("peer-b", messages.StatusMessage(source.chain.height, bytes(32)))
            assert ("peer-b", 1) in run.requests
            # A pruned answer nobody asked for, or one whose base does not exclude the height.
            run.sync.on_pruned("peer-b", messages.BlockPruned(4, 9))
            run.sync.on_pruned("peer-a", messages.BlockPruned(2, 2))
            assert run.reports == [
                ("peer-b", Misbehaviour.BAD_SYNC_RESPONSE),
                ("peer-a", Misbehaviour.BAD_SYNC_RESPONSE),
            ]
            assert run.sync.counters().pruned_answers == 1
