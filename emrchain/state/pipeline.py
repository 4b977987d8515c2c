"""`BlockPipeline`: how every node executes a block, whatever the rules of each kind.

Begin block (record height and time, rotate the validator sets) → deliver every transaction in
order → end block (validator updates, app hash). Each transaction runs in its own overlay on
top of the block's: envelope and signature verdict, then the sender's nonce (previous + 1, the
first is 1), then the kind's handler from the table the application gives
(`emrchain/state/emr/handlers.py`); a refusal discards the overlay, so a refused transaction
changes nothing but its nonce, and the block still commits (`docs/spec/state.md` §1).

The pipeline keeps no state of its own: everything lives in the state it reads through views
and the writes it returns. What it remembers only saves work and is keyed by the stored bytes,
so it can never be stale: decoded validator sets here, decoded members in
`emrchain/state/emr/memo.py`; within one block it also reads each committed key only once.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import cast

from emrchain import _core
from emrchain.schema import TxKind, codec
from emrchain.schema.codec import DecodedTransaction
from emrchain.schema.verdicts import TxDecodeError, Verdict
from emrchain.state import keys
from emrchain.state.application import (
    WRITES_ONLY_WHEN_ACCEPTED,
    AcceptPath,
    ApplicationRules,
    BlockContext,
    BlockExecutionError,
    Handler,
    HandlerContractError,
)
from emrchain.state.codes import ResultCode
from emrchain.state.evidence import commit_evidence
from emrchain.state.progress import encode_progress, read_progress
from emrchain.state.result import (
    GENESIS_PREVIOUS_APP_HASH,
    ExecutionResult,
    TxResult,
    compute_app_hash,
)
from emrchain.state.validators import StateCorruptionError, validator_set_changes
from emrchain.state.view import (
    CommittedState,
    ImpliedAbsent,
    OverlayStateView,
    PreviousValues,
    ReadOnceView,
    StateView,
    read_u64,
)
from emrchain.types.block import Block
from emrchain.types.codec import DecodeError
from emrchain.types.limits import DEFAULT_LIMITS, Limits
from emrchain.types.validator import ValidatorSet

_U64 = struct.Struct(">Q")
_VALIDATOR_CACHE_ENTRIES = 4
_MAX_TIME_MS = (1 << 63) - 1
_OK = int(ResultCode.OK)


class BlockPipeline:
    """Executes blocks under a handler table: envelope, signature and nonce for every
    transaction, then its kind's handler; validator-set rotation and the app hash per block."""

    def __init__(
        self,
        chain_id: bytes,
        committed: CommittedState,
        *,
        limits: Limits = DEFAULT_LIMITS,
        rules: ApplicationRules | None = None,
        handlers: Mapping[TxKind, Handler],
        signature_threads: int = 0,
        accept_path: AcceptPath | None = None,
        implied_absent: ImpliedAbsent | None = None,
    ) -> None:
        """`handlers`: the rule of every transaction kind. `accept_path`: a compiled path for
        the commonest kind's accepted case (the EMR application passes one for ANCHOR_RECORD);
        without it every transaction goes through `_deliver`. `implied_absent`: the
        application's rule for keys a block writes without reading that were certainly absent
        before it (`PreviousValues`; it spares the store a read per such key)."""
        limits.validate_basic()
        codec.check_arguments(chain_id, limits.max_tx_bytes)
        rules = rules or ApplicationRules()
        rules.validate_basic()
        missing = sorted(kind.name for kind in TxKind if kind not in handlers)
        if missing:
            raise ValueError(f"no handler for transaction kinds {missing}")
        if not 0 <= signature_threads <= 256:
            raise ValueError("signature_threads must be within 0..256 (0 = every core)")
        self._chain_id = chain_id
        self._committed = committed
        self._limits = limits
        self._rules = rules
        self._handlers = dict(handlers)
        self._signature_threads = signature_threads
        self._validator_cache: dict[bytes, ValidatorSet] = {}
        self._accept_path = accept_path
        self._implied_absent = implied_absent
        self.accept_path_hits = 0
        """Transactions delivered by the accept path since this object was made (tests and
        benchmarks read it; it is not state)."""

    @property
    def chain_id(self) -> bytes:
        return self._chain_id

    def check_genesis(self, validators: ValidatorSet, genesis_time_ms: int) -> None:
        """BlockExecutionError unless `validators` and `genesis_time_ms` can start a chain."""
        try:
            validators.validate_basic(self._limits)
        except ValueError as error:
            raise BlockExecutionError(f"genesis validator set is invalid: {error}") from None
        if not isinstance(genesis_time_ms, int) or not 0 <= genesis_time_ms <= _MAX_TIME_MS:
            raise BlockExecutionError("genesis_time_ms must be within 0..2^63-1")

    def init_chain(self, validators: ValidatorSet, genesis_time_ms: int) -> ExecutionResult:
        """Genesis state: progress (0, genesis time) and `validators` for heights 1 and 2. An
        application with genesis entries of its own extends this with keyword-only arguments
        and builds its result with `genesis_result`."""
        return self.genesis_result(validators, genesis_time_ms, MappingProxyType({}))

    def genesis_result(
        self,
        validators: ValidatorSet,
        genesis_time_ms: int,
        application_writes: Mapping[bytes, bytes | None],
    ) -> ExecutionResult:
        """`init_chain`'s state plus the application's own genesis entries
        (`application_writes`: the EMR application's genesis organisations and their admins)."""
        self.check_genesis(validators, genesis_time_ms)
        encoded = validators.encode()
        writes: dict[bytes, bytes | None] = {
            keys.PROGRESS: encode_progress(0, genesis_time_ms),
            keys.VALIDATORS_NEXT: encoded,
            keys.VALIDATORS_AFTER_NEXT: encoded,
        }
        writes.update(application_writes)
        return ExecutionResult(writes, compute_app_hash(GENESIS_PREVIOUS_APP_HASH, 0, writes))

    def execute_block(
        self,
        block: Block,
        view: StateView,
        *,
        signature_verdicts: bytes | None = None,
        stateless_verdicts: bytes | None = None,
    ) -> ExecutionResult:
        """Execute `block` on `view`. `signature_verdicts` (one byte per transaction, 1 =
        valid, as `_core.verify_transactions` returns them) lets a node that already verified
        the proposal skip verifying again; without it every signature is verified here.
        `stateless_verdicts` likewise: the verdicts `_core.check_transactions` gave these
        transactions for this chain id and `limits.max_tx_bytes` (0 = accepted), from the
        node's own validation of the block; without them the batch check runs here. Both
        are pure functions of the transaction bytes, so passing them changes no result.

        The previous app hash of the chain step is `header.app_hash`; committing the result
        (store or MemoryState) refuses a block whose app_hash is not the committed one."""
        header = block.header
        for name, given in (("signature", signature_verdicts), ("stateless", stateless_verdicts)):
            if given is not None and len(given) != len(block.txs):
                raise BlockExecutionError(
                    f"{len(given)} {name} verdicts for {len(block.txs)} transactions"
                )
        if header.chain_id != self._chain_id:
            raise BlockExecutionError("the block is for another chain")
        last_height, _ = read_progress(view)
        if header.height != last_height + 1:
            raise BlockExecutionError(
                f"block height {header.height} does not follow the executed height {last_height}"
            )
        if len(block.txs) > self._limits.max_block_txs:
            raise BlockExecutionError(f"more than {self._limits.max_block_txs} transactions")
        current_raw, current = self._read_raw_set(view, keys.VALIDATORS_NEXT)
        following_raw, following = self._read_raw_set(view, keys.VALIDATORS_AFTER_NEXT)
        if header.validators_hash != current.hash:
            raise BlockExecutionError("validators_hash does not match the state's validator set")
        if header.next_validators_hash != following.hash:
            raise BlockExecutionError(
                "next_validators_hash does not match the state's next validator set"
            )
        # The committed state does not change until this block is committed, after we return.
        reads = ReadOnceView(view)
        block_state = OverlayStateView(reads)
        # Begin block: record progress; the set fixed for height + 1 moves up one slot, and
        # the after-next slot becomes the working copy this block's approved updates change.
        block_state.put(keys.PROGRESS, encode_progress(header.height, header.time_ms))
        if following_raw != current_raw:
            block_state.put(keys.VALIDATORS_NEXT, following_raw)
        context = self._context(header.height, header.time_ms, lambda: current)
        tx_results = self._deliver_all(
            block.txs, block_state, context, signature_verdicts, stateless_verdicts
        )
        # Committed evidence jails its offender from h + 2, after this block's approvals.
        commit_evidence(block.evidence, block_state, header.height, self._limits)
        # End block: whatever the approvals changed in the working copy takes effect at h + 2.
        # The store records the new set as handed over here; it does not apply updates itself.
        after_raw = block_state.get(keys.VALIDATORS_AFTER_NEXT)
        updates = []
        after_next = None
        if after_raw != following_raw:
            after_next = self._read_set(block_state, keys.VALIDATORS_AFTER_NEXT)
            updates = validator_set_changes(following, after_next)
            after_next = after_next if updates else None
        writes = block_state.writes()
        app_hash = compute_app_hash(header.app_hash, header.height, writes)
        return ExecutionResult(
            writes,
            app_hash,
            tx_results,
            updates,
            after_next,
            previous_values=PreviousValues(reads.values_read, self._implied_absent),
        )

    def _deliver_all(
        self,
        txs: tuple[bytes, ...],
        block_state: OverlayStateView,
        context: BlockContext,
        signature_verdicts: bytes | None,
        stateless_verdicts: bytes | None,
    ) -> list[TxResult]:
        results: list[TxResult | None] = [None] * len(txs)
        # One compiled batch check (unless the node's validation of the block already ran it);
        # a refused transaction is decoded the slow way, for its exact verdict message.
        verdicts = stateless_verdicts
        if verdicts is None:
            verdicts, _ = _core.check_transactions(
                list(txs), self._chain_id, self._limits.max_tx_bytes
            )
        checked: list[int] = []
        decoded: dict[int, DecodedTransaction] = {}
        for index, raw in enumerate(txs):
            if not verdicts[index]:
                checked.append(index)
                continue
            try:
                tx = codec.decode_transaction(raw, self._chain_id, self._limits.max_tx_bytes)
            except TxDecodeError as error:
                results[index] = TxResult.make(error.verdict, str(error))
            else:  # the twins agree on every input (tests/core); kept for robustness
                checked.append(index)
                decoded[index] = tx
        if signature_verdicts is None:
            signatures = _core.verify_transactions(
                [txs[index] for index in checked], self._signature_threads
            )
        else:
            signatures = bytes(signature_verdicts[index] for index in checked)
        eligible = bytearray(len(txs))
        for index, valid in zip(checked, signatures, strict=True):
            if valid != 1:
                results[index] = TxResult.make(
                    Verdict.BAD_SIGNATURE, "signature does not verify under the sender key"
                )
            else:
                eligible[index] = 1
        self._deliver_eligible(txs, bytes(eligible), decoded, block_state, context, results)
        return cast(list[TxResult], results)  # every index was filled above

    def _deliver_eligible(
        self,
        txs: tuple[bytes, ...],
        eligible: bytes,
        decoded: dict[int, DecodedTransaction],
        block_state: OverlayStateView,
        context: BlockContext,
        results: list[TxResult | None],
    ) -> None:
        """Deliver, in order, the transactions marked in `eligible` (statelessly valid, with a
        valid signature; `decoded` holds any already decoded): the accept path takes what it
        can, `_deliver` the rest."""
        decode_accepted = _core.decode_accepted

        def deliver(index: int) -> None:
            tx = decoded.get(index)
            if tx is None:
                tx = decode_accepted(txs[index])
            results[index] = self._deliver(tx, block_state, context)

        accept_path = self._accept_path
        if accept_path is None:
            for index, flag in enumerate(eligible):
                if flag:
                    deliver(index)
            return
        author_of = accept_path.author_of
        self.accept_path_hits += accept_path.path.deliver_block(
            txs,
            eligible,
            block_state.pending,
            block_state.max_pending_writes,
            block_state.base.get,
            lambda sender: author_of(block_state, sender),
            deliver,
            results,
            context.height,
            context.time_ms,
            accept_path.sole_custodian(block_state),
        )

    def _deliver(
        self, tx: DecodedTransaction, parent: OverlayStateView, context: BlockContext
    ) -> TxResult:
        nonce = tx.nonce
        nonce_key = keys.nonce_key(tx.sender)
        last_nonce = read_u64(parent, nonce_key)
        if nonce == 0:
            return TxResult.make(ResultCode.NONCE_USED, "nonce 0 is never valid; nonces start at 1")
        if nonce <= last_nonce:
            return TxResult.make(
                ResultCode.NONCE_USED,
                f"nonce {nonce} is already used; the sender's next nonce is {last_nonce + 1}",
            )
        if nonce > last_nonce + 1:
            return TxResult.make(
                ResultCode.NONCE_GAP,
                f"nonce {nonce} is ahead; the sender's next nonce is {last_nonce + 1}",
            )
        handler = self._handlers[tx.kind]
        if getattr(handler, WRITES_ONLY_WHEN_ACCEPTED, False):
            # The block overlay's own dict: len(parent) would add a Python-level call per tx.
            pending = parent._pending
            pending_before = len(pending)
            result = handler(tx, parent, context)
            if result.code != _OK and len(pending) != pending_before:
                raise HandlerContractError(
                    f"the {TxKind(tx.kind).name} handler wrote state and then refused "
                    f"(code {result.code}); it must not be marked writes_only_when_accepted"
                )
        else:
            tx_state = OverlayStateView(parent)
            result = handler(tx, tx_state, context)
            if result.code == _OK:
                tx_state.merge_into(parent)
        # A transaction with the right nonce consumes it even when a rule refuses it (as in
        # Ethereum and Cosmos): otherwise the same signed bytes could be included again and
        # again, each time costing every node block space and verification.
        parent.put(nonce_key, _U64.pack(nonce))
        return result

    def _context(
        self, height: int, time_ms: int, load_validators: Callable[[], ValidatorSet]
    ) -> BlockContext:
        return BlockContext(
            self._chain_id, height, time_ms, self._rules, self._limits, load_validators
        )

    def _read_set(self, view: StateView, key: bytes) -> ValidatorSet:
        """Decode a validator set from state, through a small cache keyed by its bytes."""
        return self._read_raw_set(view, key)[1]

    def _read_raw_set(self, view: StateView, key: bytes) -> tuple[bytes, ValidatorSet]:
        """A validator set's stored bytes and the set they decode to (see `_read_set`)."""
        raw = view.get(key)
        if raw is None:
            raise StateCorruptionError("a validator set is missing from state (no genesis?)")
        cached = self._validator_cache.get(raw)
        if cached is not None:
            return raw, cached
        try:
            validator_set = ValidatorSet.decode(raw, self._limits)
        except DecodeError as error:
            raise StateCorruptionError(f"a stored validator set is undecodable: {error}") from None
        if len(self._validator_cache) >= _VALIDATOR_CACHE_ENTRIES:
            self._validator_cache.clear()
        self._validator_cache[raw] = validator_set
        return raw, validator_set
