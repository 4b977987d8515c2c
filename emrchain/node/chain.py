"""The node's view of its chain: build a proposal block, validate a received one, apply a
decided one (execute + store + mempool update) — shared by consensus and block sync.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from emrchain import _core, metrics
from emrchain.mempool import Mempool
from emrchain.schema import TxKind
from emrchain.schema.anchor import KEY_BYTES
from emrchain.state import BlockPipeline, read_progress
from emrchain.state.emr import queries as emr_queries
from emrchain.state.emr.sender_admission import SenderAdmission, SenderJudge
from emrchain.state.evidence import block_evidence_error, evidence_error
from emrchain.state.keys import nonce_key
from emrchain.state.result import ExecutionResult, TxResult
from emrchain.store import BlockStore, PreparedCommit, StoreError
from emrchain.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    CommitError,
    Evidence,
    Limits,
    ValidatorSet,
    envelope,
    verify_commit,
)
from emrchain.types.block import ZERO_HASH, evidence_root
from emrchain.types.envelope import CHAIN_ID_LENGTH_OFFSET, SENDER_END, SENDER_OFFSET

logger = logging.getLogger(__name__)
_U64 = struct.Struct(">Q")


class ChainHaltError(RuntimeError):
    """Our state disagrees with a block the validators committed: continuing would diverge."""


@dataclass(frozen=True, slots=True)
class BlockVerdict:
    """Our validation of a proposed block. A valid one carries the per-transaction verdicts
    validation computed, so that execution does not compute them again."""

    valid: bool
    reason: str = ""
    may_become_valid: bool = False
    """Refused only because the block's time is ahead of our clock (+ max_clock_drift_ms):
    the same block may be valid later, so the verdict must not be remembered."""
    signature_verdicts: bytes | None = None
    stateless_verdicts: bytes | None = None


@dataclass(frozen=True, slots=True)
class _Applied:
    """A decided block, executed, with its commit prepared and not yet written."""

    block: Block
    result: ExecutionResult
    prepared: PreparedCommit
    erasures: list[tuple[int, bytes, bytes]]


class Chain:
    """Store + application + mempool for one node; not thread-safe (one event loop)."""

    def __init__(
        self,
        chain_id: bytes,
        store: BlockStore,
        application: BlockPipeline,
        mempool: Mempool,
        limits: Limits,
        clock_ms: Callable[[], int],
        sender_admission: SenderAdmission | None = None,
        max_clock_drift_ms: int = 10_000,
    ) -> None:
        """`sender_admission`: the sender rule the mempool admits by (`docs/spec/state.md`
        §6); with it, proposals are judged by it too and the mempool rechecks after each
        commit only the senders a block changed."""
        self.chain_id = chain_id
        self.store = store
        self.application = application
        self.mempool = mempool
        self.limits = limits
        self._clock_ms = clock_ms
        self.max_clock_drift_ms = max_clock_drift_ms
        self.sender_admission = sender_admission
        self.commit_listeners: list[Callable[[Block, Sequence[bytes], list[TxResult]], None]] = []
        """Called with (block, its tx ids, its tx results) after each block is durably
        committed (the RPC block stream); a listener must not block or raise."""
        # Called with (record id, binary CID) for each erasure a committed block applied.
        self.erasure_listeners: list[Callable[[bytes, bytes], None]] = []
        self.drop_listeners: list[Callable[[Sequence[bytes]], None]] = []
        """Called after each commit with the ids of pending transactions the mempool dropped
        uncommitted (a nonce the block used for another transaction, or a failed recheck);
        a listener must not block or raise."""
        self._writer: ThreadPoolExecutor | None = None
        # (height, block id) of the decided block being applied, from the moment a caller
        # claims it (before any await) until it is durable or abandoned: consensus and block
        # sync both apply through `_claim`, so a height is applied once whoever delivers it.
        self._claimed: tuple[int, bytes] | None = None
        self.pending_evidence: Callable[[int, int], tuple[Evidence, ...]] = (
            lambda height, max_items: ()
        )
        """(height, most items) -> evidence our block at that height carries: the node's
        evidence pool (`evidence_pool.py`) once it is open; none before."""

    # ------------------------------------------------------------------------ reads

    @property
    def height(self) -> int:
        return self.store.last_height()

    def validator_set(self, height: int) -> ValidatorSet:
        validator_set = self.store.validator_set(height)
        if validator_set is None:
            raise ChainHaltError(f"no validator set stored for height {height}")
        return validator_set

    def committed_nonce(self, sender: bytes) -> int:
        raw = self.store.state_view().get(nonce_key(sender))
        return _U64.unpack(raw)[0] if raw else 0

    def _previous_time_ms(self) -> int:
        """Block time of our last committed block (0 before the first). Read from the progress
        record execution keeps (height, block time), not by decoding that whole block."""
        if not self.height:
            return 0
        height, time_ms = read_progress(self.store.state_view())
        if height != self.height:
            raise ChainHaltError(f"state progress is at {height}, the store at {self.height}")
        return time_ms

    # ------------------------------------------------------------------ proposing

    def build_block(self, height: int, proposer: bytes) -> Block:
        """A block for `height` from the mempool, extending our last committed block."""
        if height != self.height + 1:
            raise ValueError(f"cannot build height {height} on top of {self.height}")
        reaped, reaped_ids = self.mempool.reap_with_ids(
            self.limits.max_block_txs, self.limits.max_block_bytes
        )
        txs, ids = self._admissible(reaped, reaped_ids)
        evidence = self.pending_evidence(height, self.limits.max_evidence_per_block)
        last_commit = self.store.commit(self.height) if self.height else None
        header = BlockHeader(
            chain_id=self.chain_id,
            height=height,
            # The proposer's clock, forced to move forward so block times are monotonic.
            time_ms=max(self._clock_ms(), self._previous_time_ms() + 1),
            previous_block_id=self.store.last_block_id() if self.height else ZERO_HASH,
            last_commit_hash=last_commit.hash if last_commit else ZERO_HASH,
            tx_root=_core.merkle_root(ids),
            tx_count=len(txs),
            app_hash=self.store.last_app_hash(),
            validators_hash=self.validator_set(height).hash,
            next_validators_hash=self.validator_set(height + 1).hash,
            evidence_hash=evidence_root(evidence),
            proposer=proposer,
        )
        return Block.with_known_tx_ids(header, txs, last_commit, evidence, ids)

    def _admissible(
        self, txs: list[bytes], ids: list[bytes]
    ) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """The reaped transactions without those of a sender the sender rule refuses.

        Our proposal must pass every correct validator's `validate_block`, which applies the
        rule to the same committed state. The mempool's recheck after each commit already
        keeps only admissible transactions, so this normally keeps everything; should one
        slip through, its sender leaves the proposal (later nonces would not apply without
        it) and the pool, rather than cost the round."""
        admission = self.sender_admission
        if admission is None:
            return tuple(txs), tuple(ids)
        refused = _refused_senders(admission.judge(), txs)
        if not refused:
            return tuple(txs), tuple(ids)
        dropped = self.mempool.recheck(refused)
        logger.warning(
            "left %d senders the sender rule refuses out of our proposal (%d pending "
            "transactions dropped)",
            len(refused),
            len(dropped),
        )
        kept = [index for index, raw in enumerate(txs) if envelope.sender(raw) not in refused]
        return tuple(txs[index] for index in kept), tuple(ids[index] for index in kept)

    # ----------------------------------------------------------------- validating

    def evidence_error(self, item: Evidence, height: int) -> str | None:
        """Why our block at `height` (at most our height + 1) may not carry `item`, or None."""
        return evidence_error(
            item, height, self.chain_id, self.store.validator_set, self.store.state_view()
        )

    def validate_block(self, block: Block) -> BlockVerdict:
        """The paper's valid(v): does `block` correctly extend our committed chain?"""
        header = block.header
        height = self.height + 1
        try:
            block.validate_basic(self.limits)
        except ValueError as error:
            return BlockVerdict(False, f"malformed: {error}")
        expected = {
            "chain_id": self.chain_id,
            "height": height,
            "previous_block_id": self.store.last_block_id() if self.height else ZERO_HASH,
            "app_hash": self.store.last_app_hash(),
            "validators_hash": self.validator_set(height).hash,
            "next_validators_hash": self.validator_set(height + 1).hash,
        }
        for name, value in expected.items():
            if getattr(header, name) != value:
                return BlockVerdict(False, f"{name} does not extend our chain")
        time_verdict = self._time_verdict(header.time_ms)
        if time_verdict is not None:
            return time_verdict
        if header.proposer not in self.validator_set(height):
            return BlockVerdict(False, "proposer is not a validator")
        if block.last_commit is not None:
            try:
                verify_commit(
                    block.last_commit,
                    self.validator_set(height - 1),
                    self.chain_id,
                    height=height - 1,
                    block_id=header.previous_block_id,
                )
            except CommitError as error:
                return BlockVerdict(False, f"last commit: {error}")
        if block.evidence:
            reason = block_evidence_error(
                block.evidence,
                height,
                self.chain_id,
                self.store.validator_set,
                self.store.state_view(),
            )
            if reason is not None:
                return BlockVerdict(False, reason)
        txs = list(block.txs)
        verdicts, ids = _core.check_transactions(txs, self.chain_id, self.limits.max_tx_bytes)
        if any(verdicts):
            return BlockVerdict(False, "a transaction fails stateless validation")
        signatures = self.signature_verdicts(txs, ids)
        if signatures.count(1) != len(txs):
            return BlockVerdict(False, "a transaction signature does not verify")
        if self.sender_admission is not None:
            refusal = _first_refused_sender(self.sender_admission.judge(), txs)
            if refusal is not None:
                return BlockVerdict(False, refusal)
        return BlockVerdict(
            True, signature_verdicts=bytes(signatures), stateless_verdicts=bytes(verdicts)
        )

    def _time_verdict(self, time_ms: int) -> BlockVerdict | None:
        """BFT time (docs/spec/consensus.md §4.8): previous block time < time_ms <= our clock +
        max_clock_drift_ms. Monotone in our clock: a block valid now stays valid."""
        if time_ms <= self._previous_time_ms():
            return BlockVerdict(False, "time_ms does not increase")
        latest_ms = self._clock_ms() + self.max_clock_drift_ms
        if time_ms > latest_ms:
            return BlockVerdict(
                False,
                f"time_ms {time_ms} is more than max_clock_drift_ms ahead of our clock",
                may_become_valid=True,
            )
        return None

    def signature_verdicts(self, txs: list[bytes], ids: list[bytes]) -> bytearray:
        """1/0 per transaction: is its signature valid? Each signature is verified once per
        node: those the mempool already verified (admission, or an earlier proposal) are taken
        from it, only the rest are verified here, in one batch, and remembered."""
        verdicts = self.mempool.verified_signatures(ids)
        unknown = [index for index, known in enumerate(verdicts) if not known]
        if unknown:
            outcome = _core.verify_transactions([txs[index] for index in unknown])
            for index, valid in zip(unknown, outcome, strict=True):
                verdicts[index] = valid
            self.mempool.remember_signatures([ids[index] for index in unknown], outcome)
        return verdicts

    def own_block_verdict(self, block: Block) -> BlockVerdict:
        """The verdict of a block we built: its transactions were reaped from the mempool,
        which holds only admitted ones: the batch check accepted them (with our chain id and
        `limits.max_tx_bytes`, which the node gives the mempool) and their signatures
        verified."""
        count = len(block.txs)
        return BlockVerdict(
            True, signature_verdicts=b"\x01" * count, stateless_verdicts=bytes(count)
        )

    # ------------------------------------------------------------------- applying

    def _erasure_targets(self, block: Block) -> list[tuple[int, bytes, bytes]]:
        """(index, record id, binary CID) of each ERASE_RECORD in `block`, read before
        execution: the erasure clears the CID from state, and every node must delete the blob."""
        targets = []
        view = self.store.state_view()
        for index, tx in enumerate(block.txs):
            if envelope.kind(tx) != TxKind.ERASE_RECORD:
                continue
            record_id_at = envelope.payload_offset(tx)  # the payload's first field
            record_id = tx[record_id_at : record_id_at + KEY_BYTES]
            stored = emr_queries.record(view, record_id)
            targets.append((index, record_id, stored.cid if stored else b""))
        return targets

    @property
    def applying(self) -> bool:
        """A decided block is claimed and not yet durable (`apply_block_pipelined`, from the
        call on); until it is, the chain takes no other block."""
        return self._claimed is not None

    def is_applied_or_applying(self, height: int, block_id: bytes) -> bool:
        """This block is committed at `height`, or is the one being applied there."""
        return self._claimed == (height, block_id) or (
            height <= self.height and self.store.height_of(block_id) == height
        )

    def _claim(self, block: Block) -> bool:
        """Reserve the block's height for it: the one gate both consensus and block sync pass.

        False if this very block is committed or being applied already (a second delivery:
        nothing to do). A different block at a height committed or being applied is a verified
        fork, which correct validators never produce: ChainHaltError. Any other block goes on
        to the store's own checks (next height, extends our head)."""
        height, block_id = block.height, block.block_id
        if self.is_applied_or_applying(height, block_id):
            return False
        claimed = self._claimed
        if height <= self.height or (claimed is not None and claimed[0] == height):
            raise ChainHaltError(
                f"a decided block {block_id.hex()[:16]} at height {height} conflicts with the "
                "block committed or being applied there: the validators forked; halting"
            )
        if claimed is not None:
            raise StoreError(
                f"a block commit is already in flight (height {claimed[0]}); "
                f"block {height} must wait for it"
            )
        self._claimed = (height, block_id)
        return True

    def apply_block(
        self, block: Block, commit: CommitCertificate, verdict: BlockVerdict | None = None
    ) -> bool:
        """Execute and durably commit a decided block, then update the mempool. `verdict` is
        our validation of it (None from block sync: the block was not validated here).

        False (and nothing done) if this block is already committed or being applied.
        Raises ChainHaltError if the block does not fit our state although the validators
        committed it: our application state has diverged and the node must stop.
        """
        if not self._claim(block):
            return False
        started = time.perf_counter()
        with self._releasing_claim():
            applied = self._execute_decided(block, commit, verdict)
            with self._abandoned_on_failure(applied):
                self._write(applied.prepared)
            self._finish_apply(applied)
        metrics.BLOCK_COMMIT.observe(time.perf_counter() - started)
        return True

    def apply_block_pipelined(
        self, block: Block, commit: CommitCertificate, verdict: BlockVerdict | None = None
    ) -> Coroutine[None, None, bool]:
        """`apply_block`, with the durable write in the chain's writer thread: the event loop
        goes on admitting transactions and serving RPC while LevelDB writes and fsyncs the
        block (and while a write waits for a memtable flush). The head, the mempool and the
        listeners move only after the write, on the loop, so every reader on the loop sees
        the old height until the new block is durable.

        The height is claimed at the call, not when the returned coroutine first runs: a
        block-sync response handled in between finds the height taken (the crash of issue
        #17, a block applied twice). The caller must await the coroutine."""
        claimed = self._claim(block)
        return self._apply_claimed_pipelined(block, commit, verdict, claimed=claimed)

    async def _apply_claimed_pipelined(
        self,
        block: Block,
        commit: CommitCertificate,
        verdict: BlockVerdict | None,
        *,
        claimed: bool,
    ) -> bool:
        if not claimed:
            return False
        started = time.perf_counter()
        with self._releasing_claim():
            applied = self._execute_decided(block, commit, verdict)
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-write")
            loop = asyncio.get_running_loop()
            with self._abandoned_on_failure(applied):
                # Shielded: a cancelled caller (shutdown) must not leave the head behind a
                # write that still completes in the thread; close() waits for it.
                await asyncio.shield(
                    loop.run_in_executor(self._writer, self._write, applied.prepared)
                )
            self._finish_apply(applied)
        metrics.BLOCK_COMMIT.observe(time.perf_counter() - started)
        return True

    @contextmanager
    def _releasing_claim(self) -> Iterator[None]:
        try:
            yield
        finally:
            self._claimed = None

    @contextmanager
    def _abandoned_on_failure(self, applied: _Applied) -> Iterator[None]:
        """A failed write leaves the store's head where it was (and the block appliable
        again); a cancelled caller does not fail the write, which goes on in the thread."""
        try:
            yield
        except asyncio.CancelledError:
            raise
        except BaseException:
            self.store.abandon_commit(applied.prepared)
            raise

    def _write(self, prepared: PreparedCommit) -> None:
        started = time.perf_counter()
        self.store.write_prepared(prepared)
        metrics.STORE_WRITE.observe(time.perf_counter() - started)

    def close(self) -> None:
        """Wait for a block write in flight, then stop the writer thread (before the database
        closes)."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _execute_decided(
        self, block: Block, commit: CommitCertificate, verdict: BlockVerdict | None
    ) -> _Applied:
        if block.header.app_hash != self.store.last_app_hash():
            raise ChainHaltError(
                f"block {block.height} was committed with app hash "
                f"{block.header.app_hash.hex()[:16]}, ours is "
                f"{self.store.last_app_hash().hex()[:16]}: our state diverged; halting"
            )
        if verdict is None or verdict.signature_verdicts is None:
            # Block sync: not validated through consensus.
            signature_verdicts = bytes(self.signature_verdicts(list(block.txs), list(block.tx_ids)))
            stateless_verdicts = None
        else:
            signature_verdicts = verdict.signature_verdicts
            stateless_verdicts = verdict.stateless_verdicts
        erasures = self._erasure_targets(block) if self.erasure_listeners else []
        started = time.perf_counter()
        result = self.application.execute_block(
            block,
            self.store.state_view(),
            signature_verdicts=signature_verdicts,
            stateless_verdicts=stateless_verdicts,
        )
        prepared = self.store.prepare_commit(block, commit, result)
        metrics.BLOCK_EXECUTION.observe(time.perf_counter() - started)
        return _Applied(block, result, prepared, erasures)

    def _finish_apply(self, applied: _Applied) -> None:
        self.store.finish_commit(applied.prepared)
        block, result = applied.block, applied.result
        for index, record_id, cid in applied.erasures:
            if result.tx_results[index].code == 0:
                for erasure_listener in self.erasure_listeners:
                    erasure_listener(record_id, cid)
        ids = block.tx_ids
        # envelope.sender, inlined: one call per transaction of every block costs ~20 %.
        senders = {
            tx[SENDER_OFFSET + tx[CHAIN_ID_LENGTH_OFFSET] : SENDER_END + tx[CHAIN_ID_LENGTH_OFFSET]]
            for tx in block.txs
        }
        # The block's writes hold the new nonce of every sender it moved (all but senders
        # whose every transaction had a wrong nonce): no store read for those.
        writes = result.writes
        nonces = {}
        for sender in senders:
            written = writes.get(nonce_key(sender))
            nonces[sender] = _U64.unpack(written)[0] if written else self.committed_nonce(sender)
        admission = self.sender_admission
        recheck = None if admission is None else admission.recheck_senders(block, result.tx_results)
        dropped = self.mempool.update(ids, nonces, recheck).dropped_tx_ids
        for listener in self.commit_listeners:
            listener(block, ids, result.tx_results)
        if dropped:
            for drop_listener in self.drop_listeners:
                drop_listener(dropped)
        failed = sum(1 for tx_result in result.tx_results if tx_result.code)
        logger.info(
            "committed height %d: %d txs (%d refused by execution), app hash %s",
            block.height,
            len(block.txs),
            failed,
            result.app_hash.hex()[:16],
        )


def _first_refused_sender(judge: SenderJudge, txs: list[bytes]) -> str | None:
    """Why a proposed block is invalid under the sender rule (every transaction's sender
    judged on the committed state the block extends), or None.

    The rule looks at the committed state only, not at the block's earlier transactions: a
    correct proposer's mempool holds only transactions admissible on that state (a key that a
    REGISTER_MEMBER in the block introduces cannot have been admitted yet), and a REVOKE_MEMBER
    or ROTATE_KEY earlier in the block does not make a later transaction of its target invalid
    (execution refuses that one, at the cost of its own sender's nonce)."""
    for index, _, (code, reason) in judge.refusals(txs, first_only=True):
        return f"transaction {index}: {code}: {reason}"
    return None


def _refused_senders(judge: SenderJudge, txs: list[bytes]) -> set[bytes]:
    return {sender for _, sender, _ in judge.refusals(txs)}
