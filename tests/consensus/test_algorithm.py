"""One test (or a few) per rule of Algorithm 1 (arXiv:1807.04938); names cite its lines.

Four validators of power 1 unless stated: 2f+1 is 3 votes, f+1 is 2. We are validator 0; the
proposer of (height 1, round r) is validator (1 + r) mod 4, so round 3 is ours.
"""

from __future__ import annotations

from dataclasses import replace

from emrchain.consensus import ConsensusConfig, ProposalReceived, Step
from emrchain.types.vote import Proposal
from tests.consensus.support import (
    CONFIG,
    NIL,
    PRECOMMIT,
    PREVOTE,
    A,
    B,
    C,
    Runtime,
    decisions,
    own_votes,
    proposals,
    timeouts,
)


def started(**kwargs) -> Runtime:
    runtime = Runtime(**kwargs)
    runtime.start()
    return runtime


def lock_on_a_in_round_0(runtime: Runtime) -> None:
    runtime.propose(0, A)
    runtime.votes([1, 2], PREVOTE, 0, A)
    state = runtime.core.state()
    assert (state.locked_round, state.locked_block_id) == (0, A)


def move_to_round(runtime: Runtime, round_number: int) -> None:
    while runtime.core.round < round_number:
        runtime.timeout(Step.PRECOMMIT)  # lines 65-67 start the next round unconditionally


def test_proposer_layout_assumed_by_these_tests() -> None:
    runtime = started()
    assert [runtime.proposer_index(r) for r in range(4)] == [1, 2, 3, 0]


# ---------------------------------------------------------------- lines 11-21 (StartRound)


def test_lines_16_17_proposer_without_valid_value_asks_for_a_value_and_proposes_it() -> None:
    runtime = Runtime(own=1)
    effects = runtime.start()
    assert [(p.round, p.pol_round, p.block_id) for p in proposals(effects)] == [(0, -1, C)]


def test_line_19_non_proposer_schedules_propose_timeout_growing_with_round() -> None:
    runtime = started()
    assert [(t.round, t.duration_ms) for t in timeouts(runtime.effects, Step.PROPOSE)] == [(0, 300)]
    effects = runtime.timeout(Step.PRECOMMIT)
    assert [(t.round, t.duration_ms) for t in timeouts(effects, Step.PROPOSE)] == [(1, 350)]


# ------------------------------------------------------------------ lines 22-27


def test_line_24_prevote_for_a_valid_fresh_proposal() -> None:
    runtime = started()
    effects = runtime.propose(0, A)
    assert [(v.round, v.block_id) for v in own_votes(effects, PREVOTE)] == [(0, A)]
    assert runtime.core.round_step == Step.PREVOTE


def test_line_26_prevote_nil_on_an_invalid_value() -> None:
    runtime = started()
    runtime.validity[A] = False
    effects = runtime.propose(0, A)
    assert [v.block_id for v in own_votes(effects, PREVOTE)] == [NIL]


def test_line_22_only_the_rounds_proposer_counts() -> None:
    runtime = started()
    impostor = runtime.keys[2]  # round 0 belongs to validator 1
    effects = runtime.feed(ProposalReceived(Proposal(1, 0, -1, A, impostor)))
    assert own_votes(effects) == []
    assert runtime.core.drop_counts["not_the_proposer"] == 1


def test_line_23_locked_process_prevotes_nil_for_another_fresh_value() -> None:
    runtime = started()
    lock_on_a_in_round_0(runtime)
    move_to_round(runtime, 1)
    effects = runtime.propose(1, B)
    assert [v.block_id for v in own_votes(effects, PREVOTE)] == [NIL]


def test_line_23_locked_process_prevotes_its_locked_value_again() -> None:
    runtime = started()
    lock_on_a_in_round_0(runtime)
    move_to_round(runtime, 1)
    effects = runtime.propose(1, A)
    assert [v.block_id for v in own_votes(effects, PREVOTE)] == [A]


# ------------------------------------------------------------------ lines 28-33


def polka_for_b_in_round_1_that_we_missed(runtime: Runtime) -> None:
    """Round 1: no proposal reaches us; validators 1-3 prevote B; we time out twice."""
    move_to_round(runtime, 1)
    runtime.timeout(Step.PROPOSE)
    runtime.votes([1, 2, 3], PREVOTE, 1, B)
    runtime.timeout(Step.PREVOTE)
    assert runtime.core.round_step == Step.PRECOMMIT


def test_lines_28_30_unlock_on_a_newer_polka() -> None:
    runtime = started()
    lock_on_a_in_round_0(runtime)
    polka_for_b_in_round_1_that_we_missed(runtime)
    move_to_round(runtime, 2)
    effects = runtime.propose(2, B, pol_round=1)
    # lockedRound 0 <= vr 1: the newer polka releases the lock.
    assert [v.block_id for v in own_votes(effects, PREVOTE)] == [B]
    runtime.votes([1, 2], PREVOTE, 2, B)
    state = runtime.core.state()
    assert (state.locked_round, state.locked_block_id) == (2, B)


def test_line_32_an_older_polka_does_not_unlock() -> None:
    runtime = started()
    # Round 0: we miss the proposal; 1-3 prevote B (a polka we are not part of).
    runtime.timeout(Step.PROPOSE)
    runtime.votes([1, 2, 3], PREVOTE, 0, B)
    runtime.timeout(Step.PREVOTE)
    move_to_round(runtime, 1)
    runtime.propose(1, A)
    runtime.votes([2, 3], PREVOTE, 1, A)
    assert runtime.core.state().locked_round == 1
    move_to_round(runtime, 2)
    effects = runtime.propose(2, B, pol_round=0)
    # lockedRound 1 > vr 0 and lockedValue A != B.
    assert [v.block_id for v in own_votes(effects, PREVOTE)] == [NIL]


def test_line_28_waits_for_the_polka_then_prevotes() -> None:
    runtime = started()
    move_to_round(runtime, 2)
    effects = runtime.propose(2, B, pol_round=1)
    assert own_votes(effects) == []  # no polka for (1, B) known yet
    effects = runtime.votes([1, 2, 3], PREVOTE, 1, B)
    assert [(v.round, v.block_id) for v in own_votes(effects, PREVOTE)] == [(2, B)]


def test_line_32_invalid_value_with_polka_gets_nil() -> None:
    runtime = started()
    runtime.validity[B] = False
    runtime.votes([1, 2, 3], PREVOTE, 0, B)
    move_to_round(runtime, 1)
    effects = runtime.propose(1, B, pol_round=0)
    assert [v.block_id for v in own_votes(effects, PREVOTE)] == [NIL]


# ------------------------------------------------------------------ lines 34-35


def test_line_34_any_2f_plus_1_prevotes_schedule_the_prevote_timeout_once() -> None:
    runtime = started()
    runtime.timeout(Step.PROPOSE)  # we prevote nil
    effects = runtime.vote(1, PREVOTE, 0, A) + runtime.vote(2, PREVOTE, 0, B)
    scheduled = timeouts(effects, Step.PREVOTE)
    assert [(t.round, t.duration_ms) for t in scheduled] == [(0, 100)]
    assert timeouts(runtime.vote(3, PREVOTE, 0, A), Step.PREVOTE) == []


# ------------------------------------------------------------------ lines 36-43


def test_lines_36_41_polka_while_prevoting_locks_and_precommits() -> None:
    runtime = started()
    runtime.propose(0, A)
    effects = runtime.votes([1, 2], PREVOTE, 0, A)
    assert [v.block_id for v in own_votes(effects, PRECOMMIT)] == [A]
    state = runtime.core.state()
    assert (state.locked_round, state.locked_block_id) == (0, A)
    assert (state.valid_round, state.valid_block_id) == (0, A)


def test_lines_42_43_polka_after_precommitting_updates_only_the_valid_value() -> None:
    runtime = started()
    runtime.timeout(Step.PROPOSE)
    runtime.votes([1, 2], PREVOTE, 0, A)
    runtime.timeout(Step.PREVOTE)  # precommit nil: step is now precommit
    runtime.propose(0, A)
    effects = runtime.vote(3, PREVOTE, 0, A)
    assert own_votes(effects) == []
    state = runtime.core.state()
    assert (state.valid_round, state.valid_block_id) == (0, A)
    assert state.locked_round == -1


def test_lines_14_15_valid_value_is_carried_over_to_our_next_proposal() -> None:
    runtime = started()
    runtime.timeout(Step.PROPOSE)
    runtime.votes([1, 2], PREVOTE, 0, A)
    runtime.timeout(Step.PREVOTE)
    runtime.propose(0, A)
    runtime.vote(3, PREVOTE, 0, A)
    effects = []
    while runtime.core.round < 3:
        effects = runtime.timeout(Step.PRECOMMIT)
    assert [(p.round, p.pol_round, p.block_id) for p in proposals(effects)] == [(3, 0, A)]


def test_polka_for_an_invalid_value_neither_locks_nor_becomes_valid() -> None:
    runtime = started()
    runtime.validity[A] = False
    runtime.propose(0, A)
    runtime.votes([1, 2, 3], PREVOTE, 0, A)
    state = runtime.core.state()
    assert (state.locked_round, state.valid_round) == (-1, -1)


# ------------------------------------------------------------------ lines 44-46


def test_line_44_2f_plus_1_nil_prevotes_precommit_nil() -> None:
    runtime = started()
    runtime.timeout(Step.PROPOSE)
    effects = runtime.votes([1, 2], PREVOTE, 0, NIL)
    assert [v.block_id for v in own_votes(effects, PRECOMMIT)] == [NIL]


# ------------------------------------------------------------------ lines 47-48


def test_line_47_any_2f_plus_1_precommits_schedule_the_precommit_timeout_once() -> None:
    runtime = started()
    effects = (
        runtime.vote(1, PRECOMMIT, 0, A)
        + runtime.vote(2, PRECOMMIT, 0, NIL)
        + runtime.vote(3, PRECOMMIT, 0, B)
    )
    assert [(t.round, t.duration_ms) for t in timeouts(effects, Step.PRECOMMIT)] == [(0, 100)]
    assert timeouts(runtime.vote(0, PRECOMMIT, 0, NIL), Step.PRECOMMIT) == []


# ------------------------------------------------------------------ lines 49-54


def test_line_49_decide_with_proposal_and_2f_plus_1_precommits() -> None:
    runtime = started()
    runtime.propose(0, A)
    effects = runtime.votes([1, 2, 3], PRECOMMIT, 0, A)
    [decision] = decisions(effects)
    assert (decision.height, decision.round, decision.block_id) == (1, 0, A)
    signers = {entry.validator for entry in decision.commit.signatures}
    assert signers == {runtime.keys[1], runtime.keys[2], runtime.keys[3]}
    assert runtime.core.round_step == Step.COMMIT
    assert runtime.vote(0, PREVOTE, 0, A) == []  # the height is over


def test_line_49_decides_an_earlier_round_when_its_proposal_arrives_last() -> None:
    runtime = started()
    move_to_round(runtime, 2)
    assert decisions(runtime.votes([1, 2, 3], PRECOMMIT, 0, A)) == []
    [decision] = decisions(runtime.propose(0, A))
    assert (decision.round, decision.block_id) == (0, A)


def test_line_50_never_decides_an_invalid_value() -> None:
    runtime = started()
    runtime.validity[A] = False
    runtime.propose(0, A)
    assert decisions(runtime.votes([1, 2, 3], PRECOMMIT, 0, A)) == []


def test_line_49_needs_more_than_two_thirds_of_power_not_of_heads() -> None:
    # Powers 3, 1, 1, 1 (total 6): validators 1, 2, 3 hold only 3 of 6.
    runtime = started(own=1, powers=[3, 1, 1, 1])
    runtime.propose(0, A)
    assert decisions(runtime.votes([1, 2, 3], PRECOMMIT, 0, A)) == []
    assert decisions(runtime.vote(0, PRECOMMIT, 0, A))


# ------------------------------------------------------------------ lines 55-56


def test_line_55_f_plus_1_messages_from_a_higher_round_skip_to_it() -> None:
    runtime = started()
    runtime.vote(1, PREVOTE, 5, A)
    assert runtime.core.round == 0  # one validator: power 1 is not more than 1/3 of 4
    runtime.vote(2, PRECOMMIT, 5, NIL)
    assert runtime.core.round == 5
    assert runtime.core.round_step == Step.PROPOSE


def test_line_55_a_proposal_counts_as_a_message_of_its_round() -> None:
    runtime = started()
    proposer = runtime.proposer_index(4)
    runtime.propose(4, A)
    other = next(index for index in runtime.others() if index != proposer)
    runtime.vote(other, PREVOTE, 4, NIL)
    assert runtime.core.round == 4


# ------------------------------------------------------------------ lines 57-65


def test_line_57_propose_timeout_prevotes_nil() -> None:
    runtime = started()
    effects = runtime.timeout(Step.PROPOSE)
    assert [v.block_id for v in own_votes(effects, PREVOTE)] == [NIL]


def test_line_58_stale_timeouts_do_nothing() -> None:
    runtime = started()
    runtime.propose(0, A)  # already prevoted: step is prevote
    assert runtime.timeout(Step.PROPOSE) == []
    move_to_round(runtime, 1)
    assert runtime.timeout(Step.PREVOTE, 0) == []
    assert runtime.timeout(Step.PRECOMMIT, 0) == []
    assert runtime.core.round == 1


def test_line_61_prevote_timeout_precommits_nil() -> None:
    runtime = started()
    runtime.propose(0, A)
    effects = runtime.timeout(Step.PREVOTE)
    assert [v.block_id for v in own_votes(effects, PRECOMMIT)] == [NIL]


def test_line_65_precommit_timeout_starts_the_next_round() -> None:
    runtime = started()
    runtime.timeout(Step.PRECOMMIT)
    assert (runtime.core.round, runtime.core.round_step) == (1, Step.PROPOSE)


def test_timeouts_grow_with_the_round() -> None:
    config = ConsensusConfig(
        timeout_propose_ms=300,
        timeout_prevote_ms=100,
        timeout_precommit_ms=120,
        timeout_delta_ms=7,
        max_round=10,
    )
    assert [config.timeout_ms(Step.PROPOSE, r) for r in (0, 1, 10)] == [300, 307, 370]
    assert [config.timeout_ms(Step.PREVOTE, r) for r in (0, 2)] == [100, 114]
    assert config.timeout_ms(Step.PRECOMMIT, 3) == 141


def test_max_round_bounds_the_rounds() -> None:
    runtime = started(config=replace(CONFIG, max_round=2))
    move_to_round(runtime, 2)
    assert runtime.timeout(Step.PRECOMMIT) == []
    assert runtime.core.round == 2
    assert runtime.vote(1, PREVOTE, 3, A) == []
    assert runtime.core.drop_counts["round_beyond_max"] == 1


# ----------------------------------------------------- restart, observers, next height


def test_resume_after_restart_keeps_the_lock_and_the_round() -> None:
    runtime = Runtime()
    runtime.start(round=2, locked_round=1, locked_block_id=A)
    state = runtime.core.state()
    assert (state.round, state.locked_round, state.locked_block_id) == (2, 1, A)
    assert (state.valid_round, state.valid_block_id) == (1, A)
    effects = runtime.propose(2, B)
    assert [v.block_id for v in own_votes(effects, PREVOTE)] == [NIL]


def test_resume_as_proposer_re_proposes_the_locked_value() -> None:
    runtime = Runtime()
    effects = runtime.start(round=3, locked_round=1, locked_block_id=A)
    assert [(p.round, p.pol_round, p.block_id) for p in proposals(effects)] == [(3, 1, A)]


def test_an_observer_follows_but_never_signs() -> None:
    runtime = started(own=None)
    runtime.propose(0, A)
    runtime.votes([0, 1, 2], PREVOTE, 0, A)
    effects = runtime.votes([0, 1, 2], PRECOMMIT, 0, A)
    assert own_votes(runtime.effects) == []
    assert decisions(effects)


def test_messages_for_the_next_height_are_replayed_when_it_starts() -> None:
    runtime = started()
    runtime.propose(0, A)
    runtime.votes([1, 2, 3], PRECOMMIT, 0, A)
    runtime.height = 2
    assert runtime.proposer_index(0, height=2) != 0
    assert runtime.propose(0, B) == []  # buffered, not acted on at height 1
    effects = runtime.start(height=2)
    assert [(v.height, v.block_id) for v in own_votes(effects, PREVOTE)] == [(2, B)]
