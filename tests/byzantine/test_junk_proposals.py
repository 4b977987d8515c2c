"""Issue 17, "permanent halt by junk proposals": validator 3 (real keys) sends, once and in one
write, 8 proposals with random signatures in the round proposer's name and 8 proposals it
validly signed for a round it does not propose, at the honest nodes' current and next heights.
Before the fix 8 junk proposals filled the per-height block slots and every honest proposal of
that height was dropped for good.

Stall bound: none of it takes a block slot (docs/spec/consensus.md §4.7), so no round is lost to
it; the first random signature bans validator 3 (INVALID_SIGNATURE is severe), after which each
height costs at most its rounds whose proposer is validator 3 (timeout_propose + the prevote and
precommit timeouts, about 2.5 s on this devnet). The test asks for 8 more heights on every
honest node within 60 s."""

from __future__ import annotations

from pathlib import Path

from emrchain.consensus.proposer import proposer
from emrchain.devnet.byzantine import ByzantinePeer
from emrchain.devnet.harness import Devnet
from tests.byzantine.runtime_support import (
    BYZANTINE,
    HONEST,
    all_running,
    banned_by,
    forged_proposal,
    junk_block,
    proposal_message,
    round_not_proposed_by,
    validator_set,
)

JUNK_PER_KIND = 8
JUNK_HEIGHTS = 4
"""The current height, the next, and two kept for later (heights advance every ~0.2 s)."""
HEIGHTS_AFTER = 8
STALL_BOUND_S = 60.0


def test_junk_proposals_neither_halt_the_chain_nor_go_unpunished(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 4, consensus={"create_empty_blocks": True}) as network:
        for index in HONEST:
            network.start(index)
        validators = validator_set(network)
        with ByzantinePeer(network, BYZANTINE) as peer:
            peer.wait_connected(HONEST, 60.0)
            network.wait_for_height(3, HONEST, 90.0)
            template = peer.wait_for(peer.latest_proposal, 30.0, "an honest proposal").block
            base = max(network.height(index) for index in HONEST)
            signed_junk, forged_junk = [], []
            for height in range(base + 1, base + 1 + JUNK_HEIGHTS):
                wrong_round = round_not_proposed_by(peer, validators, height)
                for label in range(JUNK_PER_KIND):
                    block = junk_block(peer, template, height, label)
                    signed = peer.proposal(height, wrong_round, block.block_id)
                    signed_junk.append(proposal_message(signed, block))
                    block = junk_block(peer, template, height, 100 + label)
                    named = proposer(validators, height, 0)
                    forged = forged_proposal(block, 0, named, label)
                    forged_junk.append(proposal_message(forged, block))
            # The validly signed ones first: the first forged one gets validator 3 banned, and
            # what it sent after that is never read.
            peer.send(None, *signed_junk, *forged_junk)

            network.wait_for_height(base + HEIGHTS_AFTER, HONEST, STALL_BOUND_S)
            network.wait_for(
                lambda: all(banned_by(network, index, peer) for index in HONEST),
                30.0,
                "every honest node to ban validator 3",
            )
            assert all_running(network)
