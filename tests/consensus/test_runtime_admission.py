"""What a received proposal or vote must pass before the runtime keeps anything of it
(docs/spec/consensus.md §4.7): junk cannot take an honest proposal's slot, wrong parties are
reported by source, and the future-height buffer is a budget per source peer.

Four validators of power 1 with the simulator's blocks; we are validator 0, and the proposer of
(height 1, round r) is validator (1 + r) mod 4 (tests/consensus/support.py's layout).
"""

from __future__ import annotations

import hashlib

from emrchain.consensus.runtime import (
    BLOCKS_PER_ROUND,
    Broadcast,
    PeerFault,
    ReportPeer,
    RuntimeLimits,
)
from emrchain.consensus.state_machine import TendermintCore
from emrchain.crypto.keys import Ed25519Signer
from emrchain.sim.application import block_id_of, make_block
from emrchain.types.vote import Proposal, Vote, VoteType
from tests.consensus.support import Runtime
from tests.consensus.test_runtime_invariants import CHAIN_ID, runtime_of

EVIL, HONEST = "evil-peer", "honest-peer"


def started(limits: RuntimeLimits | None = None):
    return runtime_of(TendermintCore, limits)


def signed(signer, height: int, round_number: int, variant: int = 0, *, valid: bool = True):
    block = make_block(height, round_number, signer.public_key, variant=variant, valid=valid)
    proposal = Proposal.create(signer, CHAIN_ID, height, round_number, -1, block_id_of(block))
    return proposal, block


def forged(signer, height: int, round_number: int, variant: int):
    """A proposal naming `signer` with a random signature."""
    proposal, block = signed(signer, height, round_number, variant)
    junk = hashlib.sha512(b"junk %d" % variant).digest()
    return Proposal(height, round_number, -1, proposal.block_id, signer.public_key, junk), block


def faults(actions) -> list[tuple[object, PeerFault]]:
    return [(a.source, a.fault) for a in actions if isinstance(a, ReportPeer)]


def prevoted(actions, block_id: bytes) -> bool:
    return any(
        isinstance(a, Broadcast)
        and isinstance(a.message, Vote)
        and a.message.type == VoteType.PREVOTE
        and a.message.block_id == block_id
        for a in actions
    )


def test_junk_proposals_cannot_take_the_proposers_slot() -> None:
    runtime, signers = started()
    for variant in range(1, 9):
        # random signatures in the proposer's name, then valid ones from a validator that is
        # not the proposer of round 0
        actions = runtime.on_proposal(*forged(signers[1], 1, 0, variant), source=EVIL)
        assert faults(actions) == [(EVIL, PeerFault.INVALID_SIGNATURE)]
        actions = runtime.on_proposal(*signed(signers[3], 1, 0, variant), source=EVIL)
        assert faults(actions) == [(EVIL, PeerFault.WRONG_PROPOSER)]
        actions = runtime.on_proposal(*signed(signers[3], 2, 0, variant), source=EVIL)
        assert faults(actions) == [(EVIL, PeerFault.WRONG_PROPOSER)]
    proposal, block = signed(signers[1], 1, 0)
    actions = runtime.on_proposal(proposal, block, source=HONEST)
    assert faults(actions) == []
    assert prevoted(actions, proposal.block_id)
    assert list(runtime._blocks[1]) == [proposal.block_id]


def test_a_proposer_gets_two_blocks_per_round_and_a_third_is_a_flood() -> None:
    runtime, signers = started()
    for variant in range(BLOCKS_PER_ROUND):
        assert faults(runtime.on_proposal(*signed(signers[1], 1, 0, variant), source=EVIL)) == []
    actions = runtime.on_proposal(*signed(signers[1], 1, 0, 7), source=EVIL)
    assert faults(actions) == [(EVIL, PeerFault.FLOOD)]
    assert len(runtime._blocks[1]) == BLOCKS_PER_ROUND
    # the proposer of round 1 still has its own slots
    proposal, block = signed(signers[2], 1, 1)
    assert faults(runtime.on_proposal(proposal, block, source=HONEST)) == []
    assert proposal.block_id in runtime._blocks[1]


def test_a_block_that_is_not_the_proposed_one_and_an_invalid_block_are_reported() -> None:
    runtime, signers = started()
    proposal, _ = signed(signers[1], 1, 0)
    other = make_block(1, 0, signers[1].public_key, variant=3)
    actions = runtime.on_proposal(proposal, other, source=EVIL)
    assert faults(actions) == [(EVIL, PeerFault.BLOCK_MISMATCH)]
    assert 1 not in runtime._blocks or not runtime._blocks[1]
    invalid = signed(signers[1], 1, 0, 4, valid=False)
    assert faults(runtime.on_proposal(*invalid, source=EVIL)) == [(EVIL, PeerFault.INVALID_BLOCK)]


def test_votes_from_outside_the_set_or_badly_signed_are_reported() -> None:
    runtime, signers = started()
    outsider = Ed25519Signer(hashlib.sha256(b"outsider").digest())
    vote = Vote.create(outsider, CHAIN_ID, VoteType.PREVOTE, 1, 0, bytes(32))
    assert faults(runtime.on_vote(vote, source=EVIL)) == [(EVIL, PeerFault.NOT_A_VALIDATOR)]
    good = Vote.create(signers[2], CHAIN_ID, VoteType.PREVOTE, 1, 0, bytes(32))
    bad = Vote(good.type, 1, 0, good.block_id, good.validator, bytes(64))
    assert faults(runtime.on_vote(bad, source=EVIL)) == [(EVIL, PeerFault.INVALID_SIGNATURE)]
    assert faults(runtime.on_vote(good, source=HONEST)) == []


def test_proposals_beyond_the_round_window_are_dropped_unreported() -> None:
    runtime, signers = started(RuntimeLimits(proposal_rounds_ahead=2))
    far = signed(signers[(1 + 5) % 4], 1, 5)
    assert faults(runtime.on_proposal(*far, source=HONEST)) == []
    assert runtime.proposals_beyond_window == 1
    assert not runtime._blocks.get(1)


def test_the_future_buffer_is_a_budget_per_source() -> None:
    vote_bytes = len(
        Vote.create(Runtime().signers[3], CHAIN_ID, VoteType.PREVOTE, 3, 0, bytes(32)).encode()
    )
    limits = RuntimeLimits(max_future_bytes_per_source=4 * vote_bytes)
    runtime, signers = started(limits)
    reports = []
    for round_number in range(10):
        vote = Vote.create(signers[3], CHAIN_ID, VoteType.PREVOTE, 3, round_number, bytes(32))
        reports += faults(runtime.on_vote(vote, source=EVIL))
    assert reports == [(EVIL, PeerFault.FLOOD)] * 6
    # a forged one is refused before it costs anything; an unknown signer is just dropped
    junk = Vote(VoteType.PREVOTE, 3, 0, bytes(32), signers[2].public_key, bytes(64))
    assert faults(runtime.on_vote(junk, source=EVIL)) == [(EVIL, PeerFault.INVALID_SIGNATURE)]
    outsider = Ed25519Signer(hashlib.sha256(b"outsider").digest())
    stranger = Vote.create(outsider, CHAIN_ID, VoteType.PREVOTE, 3, 0, bytes(32))
    assert faults(runtime.on_vote(stranger, source=EVIL)) == []
    # the evil peer's full budget leaves an honest peer's untouched
    honest = Vote.create(signers[2], CHAIN_ID, VoteType.PREVOTE, 3, 0, bytes(32))
    assert faults(runtime.on_vote(honest, source=HONEST)) == []
    assert runtime._future_usage == {EVIL: [4, 4 * vote_bytes], HONEST: [1, vote_bytes]}
    # once height 2 starts, height 3's messages are replayed and the budgets freed
    runtime.start_height(2, runtime.core.validator_set)
    assert runtime._future_usage == {}
