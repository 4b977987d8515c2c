"""Every buffer of the core is bounded, with explicit drop counts (docs/spec/consensus.md §3)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.consensus.support import CONFIG, PREVOTE, A, B, C, Runtime

SMALL = replace(
    CONFIG,
    max_future_messages_per_validator=2,
    max_catchup_rounds_per_validator=2,
    max_proposals_per_round=1,
)


def test_next_height_buffer_is_bounded_per_validator() -> None:
    runtime = Runtime(config=SMALL)
    runtime.start()
    runtime.height = 2
    for round_number in range(3):
        runtime.vote(1, PREVOTE, round_number, A)
    assert runtime.core.drop_counts["future_buffer_full"] == 1
    runtime.vote(2, PREVOTE, 0, A)  # another validator has its own allowance
    assert runtime.core.drop_counts["future_buffer_full"] == 1


def test_heights_beyond_the_next_and_stale_heights_are_dropped() -> None:
    runtime = Runtime()
    runtime.start(height=5)
    runtime.height = 7
    runtime.vote(1, PREVOTE, 0, A)
    runtime.height = 4
    runtime.vote(1, PREVOTE, 0, A)
    assert runtime.core.drop_counts == {"far_future_height": 1, "stale_height": 1}


def test_catch_up_rounds_are_bounded_per_validator() -> None:
    runtime = Runtime(config=SMALL)
    runtime.start()
    for round_number in (10, 20, 30):
        runtime.vote(1, PREVOTE, round_number, A)
    assert runtime.core.drop_counts["catchup_rounds_exhausted"] == 1
    runtime.vote(1, PREVOTE, 20, B)  # a round it already opened is fine
    runtime.vote(2, PREVOTE, 30, A)  # validator 2 opens round 30 with its own allowance
    assert runtime.core.drop_counts["catchup_rounds_exhausted"] == 1
    assert runtime.core.round == 0  # one validator per round is not f+1


def test_catch_up_allowance_is_returned_once_we_reach_those_rounds() -> None:
    # A correct validator far ahead must not be muted forever: after we skip to its rounds,
    # its allowance is free again for the rounds it moves on to.
    runtime = Runtime(config=SMALL)
    runtime.start()
    runtime.vote(1, PREVOTE, 10, A)
    runtime.vote(1, PREVOTE, 11, A)
    runtime.vote(2, PREVOTE, 10, A)  # f+1 in round 10: skip
    assert runtime.core.round == 10
    runtime.vote(1, PREVOTE, 20, A)
    runtime.vote(1, PREVOTE, 21, A)
    assert "catchup_rounds_exhausted" not in runtime.core.drop_counts


def test_proposals_per_round_are_bounded() -> None:
    runtime = Runtime(config=SMALL)
    runtime.start()
    runtime.propose(0, A)
    runtime.propose(0, B)
    runtime.propose(0, C)
    assert runtime.core.drop_counts["proposals_per_round_exceeded"] == 2


def test_config_validation_rejects_nonsense() -> None:
    for bad in (
        replace(CONFIG, timeout_propose_ms=0),
        replace(CONFIG, timeout_delta_ms=-1),
        replace(CONFIG, max_round=-1),
        replace(CONFIG, max_catchup_rounds_per_validator=0),
    ):
        with pytest.raises(ValueError):
            bad.validate()
