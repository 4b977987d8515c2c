"""How the per-kind transaction rules plug into the block pipeline (`pipeline.py`).

A `Handler` is the rule of one kind; an application is a table `TxKind -> Handler` that the
pipeline runs (the EMR table: `emrchain/state/emr/handlers.py`). `BlockContext` is what a
handler may know of its block, `ApplicationRules` the chain parameters every node shares, and
`AcceptPath` the compiled shortcut for the kind that dominates a busy chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from emrchain.schema.codec import DecodedTransaction
from emrchain.state.result import TxResult
from emrchain.state.validators import MAX_OPEN_PROPOSALS_CEILING
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.limits import Limits
from emrchain.types.validator import ValidatorSet


class BlockExecutionError(ValueError):
    """The block as a whole cannot be executed on this state (wrong chain, wrong height,
    validator sets that disagree with the state). Nothing is produced; the node must not commit."""


class HandlerContractError(RuntimeError):
    """A handler broke its contract with the pipeline (a bug in the rules' code): execution of
    the block stops rather than commit a state the rules do not describe."""


@dataclass(frozen=True, slots=True)
class ApplicationRules:
    """Chain parameters of the application; every node of a chain must use the same values."""

    max_open_validator_proposals: int = 32
    """Open validator-update proposals tracked at once; more are refused."""
    validator_proposal_lifetime_blocks: int = 100_000
    """A proposal not approved within this many blocks after it was opened is dropped."""

    def validate_basic(self) -> None:
        if not 1 <= self.max_open_validator_proposals <= MAX_OPEN_PROPOSALS_CEILING:
            raise ValueError(
                f"max_open_validator_proposals must be within 1..{MAX_OPEN_PROPOSALS_CEILING}"
            )
        if not 1 <= self.validator_proposal_lifetime_blocks <= 1 << 40:
            raise ValueError("validator_proposal_lifetime_blocks must be within 1..2^40")


class BlockContext:
    """What a transaction handler may know about the block it runs in: its height, its header
    time (never a clock), the chain's rules and limits, and the validator set signing it."""

    def __init__(
        self,
        chain_id: bytes,
        height: int,
        time_ms: int,
        rules: ApplicationRules,
        limits: Limits,
        load_validators: Callable[[], ValidatorSet],
    ) -> None:
        self.chain_id = chain_id
        self.height = height
        self.time_ms = time_ms
        self.rules = rules
        self.limits = limits
        self._load_validators = load_validators

    @cached_property
    def validators(self) -> ValidatorSet:
        """The validator set signing this block (loaded on first use)."""
        return self._load_validators()


Handler = Callable[[DecodedTransaction, OverlayStateView, BlockContext], TxResult]
"""Applies one transaction's kind-specific rules, writing into the transaction's own overlay.

Returning a non-zero code discards everything the handler wrote. The envelope (stateless
checks, signature) and the sender's nonce are checked before the handler runs; the nonce is
recorded after the handler ran, whatever it returned (`docs/spec/state.md` §1, step 3).
"""

WRITES_ONLY_WHEN_ACCEPTED = "writes_only_when_accepted"


def writes_only_when_accepted(handler: Handler) -> Handler:
    """Mark `handler` as one that runs every check before its first write, so that a refusal
    has written nothing: the pipeline then runs it straight on the block's overlay, without a
    transaction overlay to create and merge (~8 % of the instructions of an ANCHOR_RECORD,
    BENCHMARKS.md). The pipeline still checks, on every refusal, that the block's overlay did
    not grow, and stops the block if it did (a handler marked wrongly is a bug, not a result)."""
    setattr(handler, WRITES_ONLY_WHEN_ACCEPTED, True)
    return handler


@dataclass(frozen=True, slots=True)
class AcceptPath:
    """A compiled path for the one transaction kind that dominates a busy chain, taken only
    where its rule accepts (`_core.AnchorPath`; anything else goes the general way), and the
    rules' answer to "may this sender take it?" read from the block's state."""

    path: Any
    """A `_core.AnchorPath` for the application's key layout."""
    author_of: Callable[[StateView, bytes], tuple[bytes, bytes] | None]
    """(member id, organisation id bytes) of the sender key when the rule's sender checks
    pass for it on that view, else None."""
    sole_custodian: Callable[[StateView], bool]
    """Whether, on the block's view, every record's custody set is its author's organisation
    alone (k = 1): the only case the path takes anchors in."""
