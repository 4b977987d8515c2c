"""The execution contract between the node and the application logic.

`Application` is what the node and the mempool call; `BlockContext` and `Handler` are how the
per-kind transaction rules plug into an application (a table `TxKind -> Handler`), so the EMR
rules of the next milestone slot in without touching the block pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

from emrchain.schema.codec import DecodedTransaction
from emrchain.state.result import ExecutionResult, TxResult
from emrchain.state.validators import MAX_OPEN_PROPOSALS_CEILING
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.block import Block
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
    """What a transaction handler may know about the block it runs in.

    For admission (`check_tx`) the height is the next block's and `time_ms` the last block's
    time: the real block time is not known yet, and nothing may read a clock.
    """

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


@runtime_checkable
class Application(Protocol):
    """Deterministic application logic: reads state through views, returns writes."""

    def info(self) -> tuple[int, bytes]:
        """(last executed height, app hash after it) of the committed state."""
        ...

    def init_chain(self, validators: ValidatorSet, genesis_time_ms: int) -> ExecutionResult:
        """The genesis state (height 0) for `validators`, the sets of heights 1 and 2.
        Implementations may take further optional keyword arguments (genesis organisations)."""
        ...

    def check_tx(self, tx: DecodedTransaction, view: StateView) -> TxResult:
        """Stateful admission of a statelessly valid, signature-checked transaction."""
        ...

    def execute_block(
        self,
        block: Block,
        view: StateView,
        *,
        signature_verdicts: bytes | None = None,
        stateless_verdicts: bytes | None = None,
    ) -> ExecutionResult:
        """Begin block, deliver every transaction in order, end block; raises
        BlockExecutionError if the block does not fit the state at all. `signature_verdicts`
        and `stateless_verdicts` are the node's own verdicts from validating the proposal
        (else computed here)."""
        ...
