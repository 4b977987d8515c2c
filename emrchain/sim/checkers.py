"""The invariants every run is checked against, after every step that can break them.

Numbering is the one of docs/spec/consensus.md §5, which tests cite:
- I1 agreement: no two correct nodes decide different blocks at one height;
- I2 validity: a decided block was proposed by the proposer of some round of its height and
  the application accepts it, its time at most MAX_CLOCK_DRIFT_MS ahead of the decision;
- I3 no correct node signs two different messages for one (height, round, step);
- I4 every decision carries a commit certificate that `verify_commit` accepts;
- I5 liveness: after GST, every correct node decides the next K heights within the bound;
- I6 evidence: what a correct node reports verifies and accuses only a byzantine validator;
- I7 no muted step: a correct node's signing guard never refuses a signature (after a restart
  the runtime says again what it signed instead of asking to sign something else).
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.consensus.proposer import ProposerSelector
from emrchain.sim.application import (
    MAX_CLOCK_DRIFT_MS,
    block_id_of,
    block_time,
    is_valid_block,
)
from emrchain.types.commit import CommitCertificate, CommitError, verify_commit
from emrchain.types.evidence import Evidence, EvidenceError
from emrchain.types.validator import ValidatorSet
from emrchain.types.vote import Proposal, Vote

SAFETY_INVARIANTS = ("I1", "I2", "I3", "I4", "I6")


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    time_ms: int
    detail: str

    @property
    def is_safety(self) -> bool:
        return self.invariant in SAFETY_INVARIANTS


class InvariantChecker:
    """Collects violations; `node_is_correct[i]` says whether node i is held to I1-I4."""

    def __init__(
        self,
        chain_id: bytes,
        validator_set: ValidatorSet,
        keys: list[bytes],
        node_is_correct: list[bool],
    ) -> None:
        self.chain_id = chain_id
        self.validator_set = validator_set
        self._keys = keys
        self._correct = node_is_correct
        self._byzantine_keys = {
            key for key, ok in zip(keys, node_is_correct, strict=True) if not ok
        }
        self._selector = ProposerSelector(validator_set)
        self.violations: list[Violation] = []
        self.decided: dict[int, bytes] = {}  # height -> block id decided by a correct node
        self.node_heights: list[dict[int, bytes]] = [{} for _ in keys]
        self._proposed: set[tuple[int, bytes]] = set()
        self._signed: dict[tuple[bytes, int, int, int], bytes] = {}
        self._commit_memo: dict[bytes, str | None] = {}
        self._evidence_memo: dict[bytes, str | None] = {}

    def _violate(self, invariant: str, time_ms: int, detail: str) -> None:
        self.violations.append(Violation(invariant, time_ms, detail))

    # I3 --------------------------------------------------------------------------
    def _signed_once(
        self, time_ms: int, node: int, position: tuple[int, int, int], signed_bytes: bytes
    ) -> None:
        if not self._correct[node]:
            return
        key = (self._keys[node], *position)
        earlier = self._signed.setdefault(key, signed_bytes)
        if earlier != signed_bytes:
            self._violate(
                "I3",
                time_ms,
                f"node {node} signed two different messages at height {position[0]} "
                f"round {position[1]} step {position[2]}",
            )

    def on_vote_signed(self, time_ms: int, node: int, vote: Vote) -> None:
        self._signed_once(time_ms, node, (vote.height, vote.round, int(vote.type) + 1), vote.body())

    def on_proposal_signed(
        self, time_ms: int, node: int, proposal: Proposal, payload: bytes
    ) -> None:
        if self._selector.proposer(proposal.height, proposal.round) == proposal.proposer:
            self._proposed.add((proposal.height, proposal.block_id))
        self._signed_once(time_ms, node, (proposal.height, proposal.round, 1), proposal.body())

    # I1, I2, I4 ---------------------------------------------------------------------
    def commit_error(self, commit: CommitCertificate, height: int, block_id: bytes) -> str | None:
        """None if `verify_commit` accepts; memoised by the certificate's bytes."""
        memo_key = commit.encode() + block_id + height.to_bytes(8, "big")
        if memo_key not in self._commit_memo:
            try:
                verify_commit(
                    commit, self.validator_set, self.chain_id, height=height, block_id=block_id
                )
                self._commit_memo[memo_key] = None
            except CommitError as error:
                self._commit_memo[memo_key] = str(error)
        return self._commit_memo[memo_key]

    def on_decision(
        self, time_ms: int, node: int, height: int, payload: bytes, commit: CommitCertificate
    ) -> None:
        if not self._correct[node]:
            return
        block_id = block_id_of(payload)
        known = self.node_heights[node].get(height)
        if known is not None:
            if known != block_id:
                self._violate("I1", time_ms, f"node {node} decided height {height} twice")
            return
        self.node_heights[node][height] = block_id
        first = self.decided.setdefault(height, block_id)
        if first != block_id:
            self._violate(
                "I1",
                time_ms,
                f"height {height}: node {node} decided {block_id.hex()[:12]}, another correct "
                f"node decided {first.hex()[:12]}",
            )
        if (height, block_id) not in self._proposed:
            self._violate(
                "I2", time_ms, f"height {height}: node {node} decided an unproposed block"
            )
        if not is_valid_block(payload, height):
            self._violate("I2", time_ms, f"height {height}: node {node} decided an invalid block")
        elif block_time(payload) > time_ms + MAX_CLOCK_DRIFT_MS:
            # BFT time: some correct node prevoted it, so it was not too far ahead of the
            # (shared virtual) clock then, and the clock only moves forward.
            self._violate("I2", time_ms, f"height {height}: node {node} decided a future block")
        error = self.commit_error(commit, height, block_id)
        if error is not None:
            self._violate("I4", time_ms, f"height {height}: node {node}'s certificate: {error}")

    # I6 --------------------------------------------------------------------------
    def on_evidence(self, time_ms: int, node: int, evidence: Evidence) -> None:
        if not self._correct[node]:
            return
        memo_key = evidence.encode()
        if memo_key not in self._evidence_memo:
            try:
                evidence.verify(self.chain_id, self.validator_set)
                self._evidence_memo[memo_key] = None
            except EvidenceError as error:
                self._evidence_memo[memo_key] = str(error)
        refusal = self._evidence_memo[memo_key]
        if refusal is not None:
            self._violate("I6", time_ms, f"node {node} reported unverifiable evidence: {refusal}")
        elif evidence.validator not in self._byzantine_keys:
            self._violate("I6", time_ms, f"node {node} accused a correct validator")

    # I5 --------------------------------------------------------------------------
    def on_liveness_failure(self, time_ms: int, detail: str) -> None:
        self._violate("I5", time_ms, detail)

    # I7 --------------------------------------------------------------------------
    def on_signatures_refused(self, time_ms: int, node: int, refused: int) -> None:
        """At the end of a run: `refused` signatures the guard of node `node` refused."""
        if self._correct[node] and refused:
            self._violate(
                "I7", time_ms, f"node {node}'s signing guard refused {refused} signatures"
            )

    @property
    def agreement_violated(self) -> bool:
        return any(violation.invariant == "I1" for violation in self.violations)

    @property
    def safety_violations(self) -> list[Violation]:
        return [violation for violation in self.violations if violation.is_safety]
