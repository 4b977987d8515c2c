"""The node's event metrics that need the node: consensus step durations and per-block figures.

Both run on the event loop where the event already happens (`ConsensusDriver._execute`, a
commit listener); the declarations are in `emrchain/metrics.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from emrchain import metrics
from emrchain.consensus.step import Step
from emrchain.state.result import TxResult
from emrchain.types import Block, CommitCertificate, ValidatorSet

VALIDATOR_LABEL_HEX_CHARACTERS = 16
"""Validators are labelled by the first 16 hex characters of their public key (as logs are)."""


class StepTimer:
    """Observes how long each (height, round, step) lasted, when the core leaves it."""

    def __init__(self) -> None:
        self._current: tuple[int, int, Step] | None = None
        self._entered_s = 0.0

    def update(self, height: int, round_number: int, step: Step, now_s: float) -> None:
        position = (height, round_number, step)
        if position == self._current:
            return
        if self._current is not None:
            metrics.STEP_DURATION.labels(self._current[2].name.lower()).observe(
                now_s - self._entered_s
            )
        self._current, self._entered_s = position, now_s


class CommitMetrics:
    """Commit listener: block interval, rounds, transactions and missed precommits per block."""

    def __init__(
        self,
        commit_of: Callable[[int], CommitCertificate | None],
        validator_set: Callable[[int], ValidatorSet],
        clock_s: Callable[[], float],
    ) -> None:
        self._commit_of = commit_of
        self._validator_set = validator_set
        self._clock_s = clock_s
        self._last_commit_s: float | None = None

    def on_commit(self, block: Block, tx_ids: Sequence[bytes], results: list[TxResult]) -> None:
        now = self._clock_s()
        if self._last_commit_s is not None:
            metrics.BLOCK_INTERVAL.observe(now - self._last_commit_s)
        self._last_commit_s = now
        metrics.BLOCK_TXS.observe(len(tx_ids))
        certificate = self._commit_of(block.height)
        if certificate is None:
            return
        metrics.BLOCK_ROUNDS.observe(certificate.round + 1)
        signed = {entry.validator for entry in certificate.signatures}
        for validator in self._validator_set(block.height).validators:
            if validator.public_key not in signed:
                label = validator.public_key.hex()[:VALIDATOR_LABEL_HEX_CHARACTERS]
                metrics.MISSED_VOTES.labels(label).inc()
