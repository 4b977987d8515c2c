"""The double-sign guard (issue #3 item 4; docs/spec/consensus.md §4)."""

from __future__ import annotations

import pytest

from emrchain.consensus import (
    DoubleSignError,
    SignedStep,
    SigningState,
    authorize,
    request_for_proposal,
    request_for_vote,
)
from emrchain.types.codec import DecodeError
from emrchain.types.vote import Proposal, Vote
from tests.consensus.support import NIL, PRECOMMIT, PREVOTE, A, B, make_signers

CHAIN = b"guard-test"
KEY = make_signers(1)[0].public_key


def prevote(height: int, round_number: int, block_id: bytes) -> SigningState:
    return request_for_vote(Vote(PREVOTE, height, round_number, block_id, KEY), CHAIN)


def precommit(height: int, round_number: int, block_id: bytes) -> SigningState:
    return request_for_vote(Vote(PRECOMMIT, height, round_number, block_id, KEY), CHAIN)


def proposal(height: int, round_number: int, block_id: bytes, pol_round: int = -1) -> SigningState:
    return request_for_proposal(Proposal(height, round_number, pol_round, block_id, KEY), CHAIN)


def sign_all(*requests: SigningState) -> SigningState:
    state = SigningState()
    for request in requests:
        state = authorize(state, request)
    return state


def test_a_fresh_node_may_sign_anything() -> None:
    state = authorize(SigningState(), prevote(1, 0, A))
    assert (state.height, state.round, state.step, state.block_id) == (1, 0, SignedStep.PREVOTE, A)


def test_later_positions_are_allowed_in_order() -> None:
    state = sign_all(
        proposal(1, 0, A), prevote(1, 0, A), precommit(1, 0, A), prevote(1, 1, B), prevote(2, 0, B)
    )
    assert state.position == (2, 0, int(SignedStep.PREVOTE))


def test_conflicting_vote_at_the_same_position_is_refused() -> None:
    state = sign_all(prevote(1, 0, A))
    with pytest.raises(DoubleSignError):
        authorize(state, prevote(1, 0, B))
    with pytest.raises(DoubleSignError):
        authorize(state, prevote(1, 0, NIL))


def test_the_identical_message_may_be_signed_again() -> None:
    state = sign_all(prevote(1, 0, A))
    assert authorize(state, prevote(1, 0, A)) == state


def test_going_back_is_refused_even_for_an_unsigned_position() -> None:
    state = sign_all(precommit(1, 2, A))
    for request in (prevote(1, 2, A), precommit(1, 1, NIL), prevote(1, 0, A), proposal(1, 2, A)):
        with pytest.raises(DoubleSignError):
            authorize(state, request)


def test_a_proposal_with_another_pol_round_is_a_conflict() -> None:
    state = sign_all(proposal(1, 3, A, pol_round=1))
    with pytest.raises(DoubleSignError):
        authorize(state, proposal(1, 3, A, pol_round=2))
    assert authorize(state, proposal(1, 3, A, pol_round=1)) == state


def test_restart_from_the_encoded_record_keeps_every_rule() -> None:
    before_crash = sign_all(prevote(5, 3, A))
    restarted = SigningState.decode(before_crash.encode())
    assert restarted == before_crash
    assert authorize(restarted, prevote(5, 3, A)) == restarted  # crash before broadcast: resend
    with pytest.raises(DoubleSignError):
        authorize(restarted, prevote(5, 3, B))
    with pytest.raises(DoubleSignError):
        authorize(restarted, proposal(5, 3, A))
    assert authorize(restarted, precommit(5, 3, A)).step == SignedStep.PRECOMMIT


def test_the_record_carries_the_lock_of_its_height() -> None:
    state = sign_all(prevote(1, 0, A), precommit(1, 0, A), prevote(1, 1, NIL), precommit(1, 1, NIL))
    assert state.lock_at(1) == (0, A)
    decoded = SigningState.decode(state.encode())
    assert decoded.lock_at(1) == (0, A)
    state = authorize(state, precommit(1, 2, B))
    assert state.lock_at(1) == (2, B)
    assert state.lock_at(2) == (-1, None)
    state = authorize(state, prevote(2, 0, A))
    assert state.lock_at(2) == (-1, None)  # a new height starts unlocked


def test_nil_precommit_does_not_lock() -> None:
    assert sign_all(precommit(1, 0, NIL)).lock_at(1) == (-1, None)


def test_a_torn_or_corrupted_record_does_not_decode() -> None:
    encoded = sign_all(prevote(1, 0, A)).encode()
    with pytest.raises(DecodeError):
        SigningState.decode(encoded[:-1])
    flipped = bytearray(encoded)
    flipped[12] ^= 1
    with pytest.raises(DecodeError):
        SigningState.decode(bytes(flipped))


def test_the_digest_covers_the_chain_id() -> None:
    vote = Vote(PREVOTE, 1, 0, A, KEY)
    assert (
        request_for_vote(vote, b"one").message_digest
        != request_for_vote(vote, b"two").message_digest
    )
