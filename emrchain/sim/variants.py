"""Deliberately broken cores, used only by the simulator to show the checkers can fail.

Each overrides one hook of `TendermintCore` (the production class is untouched and nothing
outside emrchain/sim imports this module).
"""

from __future__ import annotations

from collections.abc import Callable

from emrchain.consensus.config import ConsensusConfig
from emrchain.consensus.state_machine import TendermintCore


class NoLockCore(TendermintCore):
    """Ignores the lock: prevotes any valid proposal (drops lines 23 and 29's lock clause)."""

    def _may_prevote_fresh(self, block_id: bytes) -> bool:
        return True

    def _may_prevote_with_pol(self, block_id: bytes, pol_round: int) -> bool:
        return True


class HalfThresholdCore(TendermintCore):
    """Counts "2f+1" as more than 1/2 of the voting power instead of more than 2/3."""

    def _is_quorum(self, power: int) -> bool:
        return 2 * power > self.validator_set.total_power


VARIANTS: dict[str, type[TendermintCore]] = {
    "correct": TendermintCore,
    "no-lock": NoLockCore,
    "half-threshold": HalfThresholdCore,
}


def core_factory(variant: str, config: ConsensusConfig) -> Callable[[bytes], TendermintCore]:
    """A constructor of the named core for one validator key."""
    try:
        core_class = VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}"
        ) from None

    def make(own_key: bytes) -> TendermintCore:
        return core_class(config, own_key)

    return make
