"""Block sync under attack by a byzantine validator with real keys (issue 17 item 3): the race
that crashed an honest node, the eclipse by a peer claiming height 10^12, and lying responses.
Validators 0, 1, 2 are honest processes; validator 3 is the `ByzantinePeer`.

Bounds these tests hold the nodes to (docs/spec/consensus.md §4.6): a node behind catches up
while a liar claims 10^12 within CATCH_UP_BOUND_S (one request timeout per demotion period is
all the liar costs it); every honest process stays under RSS_BOUND_MIB.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from pathlib import Path

from emrchain.devnet.byzantine import ByzantinePeer
from emrchain.devnet.harness import Devnet
from emrchain.node import messages
from emrchain.types import Block, CommitCertificate, Vote, VoteType
from emrchain.types.vote import NIL_BLOCK_ID

BYZANTINE = 3
HUGE_HEIGHT = 10**12
CATCH_UP_BOUND_S = 30.0
RSS_BOUND_MIB = 200
"""Each honest node measured 74 MiB under these attacks (the issue's junk proposals took one
to 752 MiB)."""
SYNC = {"status_interval_ms": 200, "sync_request_timeout_ms": 600, "sync_demotion_ms": 60_000}


def _devnet(root: Path) -> Devnet:
    return Devnet(root / "net", 4, consensus={"create_empty_blocks": True, **SYNC})


def _decided(peer: ByzantinePeer, height: int) -> tuple[messages.ProposalMessage, list[Vote]]:
    """The honest proposal decided at `height` and the precommits for it (ours added) that
    we heard: a commit for it needs three of them."""
    precommits: dict[tuple[int, bytes], list[Vote]] = defaultdict(list)
    proposals: dict[bytes, messages.ProposalMessage] = {}
    for item in peer.received():
        message = item.message
        if isinstance(message, messages.ProposalMessage) and message.proposal.height == height:
            proposals[message.proposal.block_id] = message
        elif isinstance(message, messages.VoteMessage) and item.sender >= 0:
            vote = message.vote
            wanted = vote.type == VoteType.PRECOMMIT and vote.height == height
            if wanted and vote.block_id != NIL_BLOCK_ID:
                precommits[(vote.round, vote.block_id)].append(vote)
    for (round_number, block_id), votes in precommits.items():
        if len(votes) >= 2 and block_id in proposals:
            own = peer.vote(VoteType.PRECOMMIT, height, round_number, block_id)
            unique = {vote.validator: vote for vote in [*votes, own]}
            return proposals[block_id], list(unique.values())
    raise AssertionError(f"no decided proposal heard at height {height}")


def _status_since(peer: ByzantinePeer, index: int, heard_before: int) -> int | None:
    """The height node `index` announced after the first `heard_before` messages we heard."""
    for item in peer.received()[heard_before:]:
        if item.sender == index and isinstance(item.message, messages.StatusMessage):
            return item.message.height
    return None


def _retimed(block: Block) -> Block:
    """`block` with another time: it decodes, and its id is no longer the one signed."""
    header = dataclasses.replace(block.header, time_ms=block.header.time_ms + 1)
    return dataclasses.replace(block, header=header)


def _rss_mib(network: Devnet, index: int) -> float:
    status = Path(f"/proc/{network.processes[index].pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _assert_alive_and_bounded(network: Devnet, nodes: list[int]) -> None:
    for index in nodes:
        assert network.is_running(index), f"node{index} exited"
        assert network.rpc(index, "/status")["halt"] is None
        rss_mib = _rss_mib(network, index)
        print(f"node{index} VmRSS {rss_mib:.0f} MiB")
        assert rss_mib < RSS_BOUND_MIB


def _log(network: Devnet, index: int) -> str:
    return network.log_path(index).read_text(errors="replace")


def test_precommits_proposal_and_an_unrequested_response_in_one_write_apply_once(
    tmp_path: Path,
) -> None:
    """The crash of the issue: node 2 misses height h's proposal (it is down while the others
    decide h), then gets h's precommits, its proposal and an unrequested block-sync response for
    it in one write from the byzantine validator, its only peer. Consensus decides h and claims
    the height; the response finds it taken. Before the fix: "HALT ... app hash", exit 3."""
    with _devnet(tmp_path) as network:
        for index in (0, 1, 2):
            network.start(index)
        with ByzantinePeer(network, BYZANTINE) as peer:
            peer.wait_connected([0, 1, 2])
            network.wait_for_height(3, [0, 1, 2])
            assert network.stop(2) == 0
            stopped_at = network.height(0)

            def ahead() -> bool:
                peer.follow()  # 0, 1 and our votes are a quorum without node 2
                return min(network.height(index) for index in (0, 1)) >= stopped_at + 3

            peer.wait_for(ahead, 60.0, "heights without node 2")
            network.stop(0)
            network.stop(1)
            heard_before = len(peer.received())
            network.start(2)
            peer.wait_connected([2])
            height = 1 + peer.wait_for(
                lambda: _status_since(peer, 2, heard_before), 30.0, "node 2's status"
            )
            proposal, precommits = _decided(peer, height)
            commit = CommitCertificate.from_precommits(precommits)
            peer.send(
                2,
                *(messages.VoteMessage(vote) for vote in precommits),
                proposal,
                messages.BlockResponse(proposal.block, commit),
            )
            network.wait_for(lambda: network.height(2) >= height, 30.0, "node 2 decides h")
            _assert_alive_and_bounded(network, [2])
            # Applied once, by consensus; the response was not needed and counted against us.
            assert network.rpc(2, "/status")["blocks_synced"] == 0
            assert "HALT" not in _log(network, 2)
            network.start(0)
            network.start(1)
            target = network.height(2) + 5
            network.wait_for_height(target, [0, 1, 2], timeout_s=60.0)
            _assert_alive_and_bounded(network, [0, 1, 2])


def test_a_peer_claiming_height_ten_to_the_twelve_cannot_eclipse_a_node_behind(
    tmp_path: Path,
) -> None:
    """Node 2 starts late, behind 0 and 1. The byzantine validator tells it, again and again,
    that it is at height 10^12 and never answers a request: node 2 still catches up from 0 and
    1 within CATCH_UP_BOUND_S, the three go on committing, and each timeout counts against the
    liar until node 2 bans it. Before: `candidates[height % n]` picked the liar again after
    every timeout, for good."""
    with _devnet(tmp_path) as network:
        # Demoted for 1 s only, so that the liar is asked (and times out) again and again: at
        # the third timeout node 2 bans it.
        network.configure(
            2, {"consensus": {"sync_demotion_ms": 1_000}, "p2p": {"misbehaviour_ban_threshold": 3}}
        )
        network.start(0)
        network.start(1)
        with ByzantinePeer(network, BYZANTINE) as peer:
            peer.wait_connected([0, 1])

            def far_enough() -> bool:
                peer.follow()
                return min(network.height(index) for index in (0, 1)) >= 12

            peer.wait_for(far_enough, 90.0, "height 12 without node 2")
            # From here on it only lies: 0 and 1 wait for node 2 to make a quorum.
            lie = messages.StatusMessage(HUGE_HEIGHT, bytes(32))
            network.start(2)
            peer.wait_connected([2])
            started = time.monotonic()
            target = min(network.height(index) for index in (0, 1))

            def caught_up() -> bool:
                peer.send(2, lie)
                return network.height(2) >= target

            peer.wait_for(caught_up, CATCH_UP_BOUND_S, "node 2 catching up past the liar")
            caught_up_s = time.monotonic() - started
            network.wait_for_height(target + 3, [0, 1, 2], timeout_s=60.0)
            _assert_alive_and_bounded(network, [0, 1, 2])
            requests_to_us = sum(
                isinstance(item.message, messages.BlockRequest) and item.sender == 2
                for item in peer.received()
            )
            print(f"caught up {target} heights in {caught_up_s:.1f} s; asked us {requests_to_us}")
            # We were asked (the claim looked best) and were demoted after the timeout.
            assert requests_to_us >= 1
            assert "did not answer a block request in time" in _log(network, 2)

            def banned() -> bool:
                peer.send(2, lie)
                return "after sync_timeout" in _log(network, 2)

            peer.wait_for(banned, 20.0, "node 2 banning the liar after three timeouts")
            peer.wait_for(lambda: 2 not in peer.connected(), 20.0, "node 2 disconnecting us")
            network.wait_for_height(network.height(2) + 2, [0, 1, 2], timeout_s=60.0)


def test_lying_sync_responses_are_reported_until_the_liar_is_banned(tmp_path: Path) -> None:
    """Responses whose commit is for another block, or whose block is not the one its commit
    names: node 2 applies nothing, reports each (BAD_SYNC_RESPONSE) and bans the liar at the
    threshold (3 here); the honest nodes keep committing."""
    with _devnet(tmp_path) as network:
        network.configure(2, {"p2p": {"misbehaviour_ban_threshold": 3}})
        for index in (0, 1, 2):
            network.start(index)
        with ByzantinePeer(network, BYZANTINE) as peer:
            peer.wait_connected([0, 1, 2])
            network.wait_for_height(4, [0, 1, 2])
            latest = peer.wait_for(
                lambda: peer.latest_proposal(network.height(2) + 1), 20.0, "a fresh proposal"
            )
            decided, precommits = _decided(peer, latest.proposal.height - 1)
            commit = CommitCertificate.from_precommits(precommits)
            lies = [
                # A real block with the commit of the height before.
                messages.BlockResponse(latest.block, commit),
                # Blocks that decode but are not the ones their commit names.
                messages.BlockResponse(_retimed(latest.block), commit),
                messages.BlockResponse(_retimed(decided.block), commit),
            ]
            peer.send(2, *lies)
            peer.wait_for(
                lambda: "after bad_sync_response" in _log(network, 2), 20.0, "node 2 banning us"
            )
            peer.wait_for(lambda: 2 not in peer.connected(), 20.0, "node 2 disconnecting us")
            target = network.height(2) + 3
            network.wait_for_height(target, [0, 1, 2], timeout_s=60.0)
            # Banned: it is refused at the handshake and not dialled, and /status says so.
            assert 2 not in peer.connected()
            standing = network.rpc(2, "/status")["p2p"]
            assert standing["bans_in_force"] == 1 and standing["bans"] == 1
            assert len(standing["peers"]) == 2  # the honest two, the liar gone
            _assert_alive_and_bounded(network, [0, 1, 2])
