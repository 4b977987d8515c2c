"""The evidence pool and the block rules for evidence on a real (in-process) node:
verified on entry, persisted across a restart, bounded, proposed by our own blocks, removed
once committed; a block carrying the same evidence twice, or evidence already committed, is
invalid (docs/spec/consensus.md §1.4)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

from emrchain.node.evidence_pool import EvidencePool
from emrchain.node.node import Node
from emrchain.types import Block, DuplicateVoteEvidence, Vote, VoteType
from emrchain.types.block import evidence_root
from tests.node.in_process import commit_own_block, single_validator_node


def double_sign(node: Node, height: int, round_number: int = 0) -> DuplicateVoteEvidence:
    votes = [
        Vote.create(
            node.validator_key,
            node.chain_id,
            VoteType.PREVOTE,
            height,
            round_number,
            hashlib.sha256(label).digest(),
        )
        for label in (b"a", b"b")
    ]
    return DuplicateVoteEvidence.from_votes(*votes)


def with_evidence(node: Node, evidence: tuple[DuplicateVoteEvidence, ...]) -> Block:
    """Our next block with exactly `evidence` in it (as another proposer could build it)."""
    chain = node.chain
    built = chain.build_block(chain.height + 1, node.validator_key.public_key)
    header = dataclasses.replace(built.header, evidence_hash=evidence_root(evidence))
    return Block(header, built.txs, built.last_commit, evidence)


def test_evidence_is_verified_proposed_committed_and_then_refused(tmp_path: Path) -> None:
    with single_validator_node(tmp_path) as node:
        commit_own_block(node)
        commit_own_block(node)
        pool = node.evidence_pool
        evidence = double_sign(node, 1)
        forged = dataclasses.replace(
            evidence, vote_b=dataclasses.replace(evidence.vote_b, signature=bytes(64))
        )
        assert pool.add(forged) == "a vote signature does not verify"
        assert pool.add(double_sign(node, 9)) == "evidence of height 9 is above our next height 3"
        assert pool.add(evidence) is None
        assert pool.add(evidence) is None  # already pending: nothing happens
        assert pool.pending() == [evidence]

        twice = node.chain.validate_block(with_evidence(node, (evidence, evidence)))
        assert (twice.valid, twice.reason) == (
            False,
            "the same evidence appears twice in the block",
        )
        block = node.chain.build_block(3, node.validator_key.public_key)
        assert block.evidence == (evidence,)
        assert node.chain.validate_block(block).valid
        commit_own_block(node)
        assert node.chain.store.block(3).evidence == (evidence,)
        assert pool.pending() == []
        assert pool.committed() == [(3, evidence)]
        # Committed once: a block carrying it again is invalid, and the pool refuses it.
        again = node.chain.validate_block(with_evidence(node, (evidence,)))
        assert (again.valid, again.reason) == (
            False,
            "evidence 0: this evidence was committed already",
        )
        assert pool.add(evidence) == "this evidence was committed already"
        # The last validator is not jailed: the chain must keep a validator.
        assert node.validator_key.public_key in node.chain.validator_set(5)
        assert node.chain.build_block(4, node.validator_key.public_key).evidence == ()


def test_pending_evidence_survives_a_restart(tmp_path: Path) -> None:
    with single_validator_node(tmp_path) as node:
        commit_own_block(node)
        evidence = double_sign(node, 1)
        assert node.evidence_pool.add(evidence) is None
        home = node.config.home
    reopened = Node.open(home)
    try:
        assert reopened.evidence_pool.pending() == [evidence]
        assert reopened.chain.build_block(2, reopened.validator_key.public_key).evidence == (
            evidence,
        )
    finally:
        asyncio.run(reopened.records.close())
        reopened._database.close()


def test_the_pool_is_bounded_and_keeps_the_newest(tmp_path: Path) -> None:
    with single_validator_node(tmp_path) as node:
        for _ in range(3):
            commit_own_block(node)
        pool = EvidencePool(node._database, node.chain, max_pending=2)
        old, middle, new = (double_sign(node, height) for height in (1, 2, 3))
        assert pool.add(middle) is None
        assert pool.add(new) is None
        assert pool.add(old) == "the evidence pool is full (2 items) of newer evidence"
        assert pool.pending() == [middle, new]
        newest = double_sign(node, 3, round_number=1)
        assert pool.add(newest) is None  # the oldest (height 2) goes
        assert middle not in pool.pending() and len(pool.pending()) == 2
