"""Timeouts and bounds of the consensus core."""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.consensus.step import Step
from emrchain.types.limits import MAX_ROUND


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsensusConfig:
    """Every duration is in milliseconds of the runtime's clock; the core never reads a clock.

    A timeout grows by `timeout_delta_ms` per round so that, after the global stabilisation
    time, rounds eventually last long enough for correct processes to hear each other
    (the paper's `timeoutX(r)` functions).

    The timeouts and `max_round` are node settings (`[consensus]`, declared with their defaults
    and ranges in `emrchain/config/node.py`): they have no defaults here, the node builds this
    from its config (`node/wiring.py`) and the simulator and tests state theirs.
    """

    timeout_propose_ms: int
    timeout_prevote_ms: int
    timeout_precommit_ms: int
    timeout_delta_ms: int
    # Rounds beyond this are ignored: a process that reaches it stops advancing (safe, not live).
    max_round: int
    # A validator may make us keep state for at most this many rounds above round_p + 1
    # (CometBFT calls them catch-up rounds); this bounds memory against a flood of high rounds.
    max_catchup_rounds_per_validator: int = 2
    # Messages for height + 1 kept per validator until the runtime starts that height.
    max_future_messages_per_validator: int = 64
    # Distinct proposals kept per round (more than one only from an equivocating proposer).
    max_proposals_per_round: int = 4

    def validate(self) -> None:
        """Raise ValueError on a configuration the core cannot run with."""
        for name in ("timeout_propose_ms", "timeout_prevote_ms", "timeout_precommit_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.timeout_delta_ms < 0:
            raise ValueError("timeout_delta_ms must not be negative")
        if not 0 <= self.max_round <= MAX_ROUND:
            raise ValueError(f"max_round must be within 0..{MAX_ROUND}")
        if self.max_catchup_rounds_per_validator < 1:
            raise ValueError("max_catchup_rounds_per_validator must be at least 1")
        if self.max_future_messages_per_validator < 0:
            raise ValueError("max_future_messages_per_validator must not be negative")
        if self.max_proposals_per_round < 1:
            raise ValueError("max_proposals_per_round must be at least 1")

    def timeout_ms(self, step: Step, round_number: int) -> int:
        """The duration of the `step` timeout in `round_number` (base + round × delta)."""
        if step == Step.PROPOSE:
            base = self.timeout_propose_ms
        elif step == Step.PREVOTE:
            base = self.timeout_prevote_ms
        elif step == Step.PRECOMMIT:
            base = self.timeout_precommit_ms
        else:
            raise ValueError(f"no timeout for step {step!r}")
        return base + round_number * self.timeout_delta_ms
