"""Vote counting by power and equivocation evidence (issue #3 item 5)."""

from __future__ import annotations

from emrchain.consensus import ReportEvidence, VoteReceived
from emrchain.consensus.vote_tally import HeightVotes
from emrchain.types.evidence import DuplicateVoteEvidence
from emrchain.types.vote import Vote
from tests.consensus.support import NIL, PREVOTE, A, B, C, Runtime

CHAIN = b"tally-test"


def test_one_validator_counts_once_in_the_total_and_once_per_block() -> None:
    runtime = Runtime()
    keys = runtime.keys
    votes = HeightVotes()
    assert votes.add(Vote(PREVOTE, 1, 0, A, keys[0]), 2, 5) == (True, None)
    assert votes.add(Vote(PREVOTE, 1, 0, A, keys[0]), 2, 5) == (False, None)  # duplicate
    counted, earlier = votes.add(Vote(PREVOTE, 1, 0, B, keys[0]), 2, 5)
    assert counted and earlier.block_id == A
    assert votes.total_power(0, PREVOTE) == 2
    assert (votes.power_for(0, PREVOTE, A), votes.power_for(0, PREVOTE, B)) == (2, 2)


def test_blocks_counted_per_equivocating_validator_are_bounded() -> None:
    keys = Runtime().keys
    votes = HeightVotes()
    for block_id in (A, B, C):
        votes.add(Vote(PREVOTE, 1, 0, block_id, keys[1]), 1, 2)
    assert votes.power_for(0, PREVOTE, C) == 0


def signed_runtime() -> tuple[Runtime, list]:
    runtime = Runtime()
    runtime.start()
    return runtime, runtime.signers


def test_conflicting_votes_become_verifiable_evidence_once() -> None:
    runtime, signers = signed_runtime()
    first = Vote.create(signers[2], CHAIN, PREVOTE, 1, 0, A)
    second = Vote.create(signers[2], CHAIN, PREVOTE, 1, 0, NIL)
    third = Vote.create(signers[2], CHAIN, PREVOTE, 1, 0, B)
    runtime.feed(VoteReceived(first))
    effects = runtime.feed(VoteReceived(second))
    [report] = [effect for effect in effects if isinstance(effect, ReportEvidence)]
    evidence = report.evidence
    assert evidence.validator == runtime.keys[2]
    evidence.verify(CHAIN, runtime.validator_set)
    assert DuplicateVoteEvidence.decode(evidence.encode()) == evidence
    effects = runtime.feed(VoteReceived(third))
    assert not [effect for effect in effects if isinstance(effect, ReportEvidence)]


def test_an_equivocators_other_vote_still_counts_towards_a_polka() -> None:
    # Validator 3 sent us nil first; its prevote for A (relayed with a proposal's polka)
    # must still count, or a correct node could never see that polka.
    runtime = Runtime()
    runtime.start()
    runtime.vote(3, PREVOTE, 0, NIL)
    runtime.propose(0, A)
    runtime.vote(1, PREVOTE, 0, A)
    assert runtime.core.state().locked_round == -1
    runtime.vote(3, PREVOTE, 0, A)
    assert runtime.core.state().locked_round == 0


def test_non_members_are_ignored() -> None:
    runtime = Runtime()
    runtime.start()
    stranger = bytes(range(32))
    assert runtime.feed(VoteReceived(Vote(PREVOTE, 1, 0, A, stranger))) == []
    assert runtime.core.drop_counts["not_a_validator"] == 1


def test_reported_evidence_goes_into_a_block_and_verifies_from_it() -> None:
    from emrchain import _core
    from emrchain.types.block import Block, BlockHeader, evidence_root

    runtime, signers = signed_runtime()
    runtime.feed(VoteReceived(Vote.create(signers[1], CHAIN, PREVOTE, 1, 0, A)))
    effects = runtime.feed(VoteReceived(Vote.create(signers[1], CHAIN, PREVOTE, 1, 0, B)))
    evidence = next(effect.evidence for effect in effects if isinstance(effect, ReportEvidence))
    header = BlockHeader(
        chain_id=CHAIN,
        height=1,
        time_ms=0,
        previous_block_id=bytes(32),
        last_commit_hash=bytes(32),
        tx_root=_core.merkle_root([]),
        tx_count=0,
        app_hash=bytes(32),
        validators_hash=runtime.validator_set.hash,
        next_validators_hash=runtime.validator_set.hash,
        evidence_hash=evidence_root((evidence,)),
        proposer=runtime.keys[1],
    )
    block = Block(header, (), None, (evidence,))
    decoded = Block.decode(block.encode())  # decoding runs validate_basic
    [carried] = decoded.evidence
    carried.verify(CHAIN, runtime.validator_set)
    assert carried.validator == runtime.keys[1]
