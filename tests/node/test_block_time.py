"""BFT time in a real node's chain (docs/spec/consensus.md §4.8): a proposed block's time must be
after the previous block's and at most `max_clock_drift_ms` ahead of our clock. The two dates of
issue 17 (2^63 - 1, now + 10 years) are refused; a block refused for being early is judged
again later (never remembered), so once our clock catches up it is valid: validity is monotone
in local time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain.node.consensus_driver import ChainBlocks
from emrchain.node.node import Node
from emrchain.types import Block
from tests.node.in_process import commit_own_block, single_validator_node

TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with single_validator_node(tmp_path) as opened:
        commit_own_block(opened)
        yield opened


def dated(node: Node, time_ms: int) -> Block:
    built = node.chain.build_block(node.chain.height + 1, node.validator_key.public_key)
    return dataclasses.replace(built, header=dataclasses.replace(built.header, time_ms=time_ms))


def test_extreme_times_are_refused_and_the_honest_time_is_accepted(node: Node) -> None:
    chain = node.chain
    own = chain.build_block(chain.height + 1, node.validator_key.public_key)
    assert chain.validate_block(own).valid
    for time_ms in ((1 << 63) - 1, own.header.time_ms + TEN_YEARS_MS):
        verdict = chain.validate_block(dated(node, time_ms))
        assert not verdict.valid and verdict.may_become_valid
        assert "max_clock_drift_ms" in verdict.reason
    stale = chain.validate_block(dated(node, chain._previous_time_ms()))
    assert not stale.valid and not stale.may_become_valid


def test_a_block_early_by_our_clock_becomes_valid_when_the_clock_catches_up(node: Node) -> None:
    chain = node.chain
    now_ms = chain._previous_time_ms() + 1_000
    chain._clock_ms = lambda: now_ms  # the clock is the chain's input
    early = dated(node, now_ms + chain.max_clock_drift_ms + 1)
    blocks = ChainBlocks(chain, node.validator_key.public_key)
    assert not blocks.validate(early.height, early)
    now_ms += 1
    assert blocks.validate(early.height, early)
    assert chain.validate_block(dated(node, now_ms + chain.max_clock_drift_ms)).valid
