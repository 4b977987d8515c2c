"""Vote relay (docs/spec/consensus.md §1.4): a peer's vote that verifies and is new to us is
relayed once to every peer but its source, so that conflicting votes an equivocating
validator sends to different peers meet at every correct node."""

from __future__ import annotations

import dataclasses

from emrchain.consensus.effects import ReportEvidence
from emrchain.consensus.runtime import Relay, RuntimeLimits
from emrchain.consensus.state_machine import TendermintCore
from emrchain.types.vote import Vote, VoteType
from tests.consensus import test_runtime_invariants as runtime_invariants

CHAIN_ID = runtime_invariants.CHAIN_ID


def runtime_of(limits: RuntimeLimits | None = None):
    return runtime_invariants.runtime_of(TendermintCore, limits)


def relays(actions) -> list[Relay]:
    return [action for action in actions if isinstance(action, Relay)]


def test_a_new_verified_vote_is_relayed_once_except_to_its_source() -> None:
    runtime, signers = runtime_of()
    vote = Vote.create(signers[2], CHAIN_ID, VoteType.PREVOTE, 1, 0, b"\x01" * 32)
    assert relays(runtime.on_vote(vote, source="peer-2")) == [Relay(vote, "peer-2")]
    # The same vote again, from another peer (someone else's relay): not relayed again.
    assert relays(runtime.on_vote(vote, source="peer-3")) == []


def test_a_vote_with_a_bad_signature_is_not_relayed() -> None:
    runtime, signers = runtime_of()
    vote = Vote.create(signers[2], CHAIN_ID, VoteType.PREVOTE, 1, 0, b"\x01" * 32)
    forged = dataclasses.replace(vote, signature=bytes(64))
    assert relays(runtime.on_vote(forged, source="peer-2")) == []
    assert relays(runtime.on_vote(vote, source="peer-2")) == [Relay(vote, "peer-2")]


def test_conflicting_votes_from_two_sources_are_both_relayed_and_reported() -> None:
    runtime, signers = runtime_of()
    first = Vote.create(signers[3], CHAIN_ID, VoteType.PREVOTE, 1, 0, b"\x01" * 32)
    second = Vote.create(signers[3], CHAIN_ID, VoteType.PREVOTE, 1, 0, b"\x02" * 32)
    assert relays(runtime.on_vote(first, source="peer-1")) == [Relay(first, "peer-1")]
    actions = runtime.on_vote(second, source="peer-2")
    assert relays(actions) == [Relay(second, "peer-2")]
    reported = [action.evidence for action in actions if isinstance(action, ReportEvidence)]
    assert len(reported) == 1 and reported[0].validator == signers[3].public_key


def test_past_the_de_duplication_bound_nothing_is_relayed() -> None:
    """Two nodes past the bound would send one vote back and forth for ever."""
    runtime, signers = runtime_of(RuntimeLimits(max_wal_entries_per_height=1))
    first = Vote.create(signers[2], CHAIN_ID, VoteType.PREVOTE, 1, 0, b"\x01" * 32)
    second = Vote.create(signers[3], CHAIN_ID, VoteType.PREVOTE, 1, 0, b"\x01" * 32)
    assert relays(runtime.on_vote(first, source="a")) == [Relay(first, "a")]
    assert relays(runtime.on_vote(second, source="a")) == []
