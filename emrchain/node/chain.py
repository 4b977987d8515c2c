"""The node's view of its chain: build a proposal block, validate a received one, apply a
decided one (execute + store + mempool update) — shared by consensus and block sync.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from emrchain import _core
from emrchain._core.schema import TxKind
from emrchain.mempool import Mempool
from emrchain.state import NonceAnchorApplication, read_progress
from emrchain.state.emr import queries as emr_queries
from emrchain.state.keys import nonce_key
from emrchain.state.result import TxResult
from emrchain.store import BlockStore
from emrchain.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    CommitError,
    EvidenceError,
    Limits,
    ValidatorSet,
    verify_commit,
)
from emrchain.types.block import ZERO_HASH, evidence_root, tx_ids

logger = logging.getLogger(__name__)
_U64 = struct.Struct(">Q")


class ChainHaltError(RuntimeError):
    """Our state disagrees with a block the validators committed: continuing would diverge."""


@dataclass(frozen=True, slots=True)
class BlockVerdict:
    valid: bool
    reason: str = ""
    signature_verdicts: bytes | None = None


class Chain:
    """Store + application + mempool for one node; not thread-safe (one event loop)."""

    def __init__(
        self,
        chain_id: bytes,
        store: BlockStore,
        application: NonceAnchorApplication,
        mempool: Mempool,
        limits: Limits,
        clock_ms: Callable[[], int],
    ) -> None:
        self.chain_id = chain_id
        self.store = store
        self.application = application
        self.mempool = mempool
        self.limits = limits
        self._clock_ms = clock_ms
        self.commit_listeners: list[Callable[[Block, Sequence[bytes], list[TxResult]], None]] = []
        """Called with (block, its tx ids, its tx results) after each block is durably
        committed (the RPC block stream); a listener must not block or raise."""
        # Called with (record id, binary CID) for each erasure a committed block applied.
        self.erasure_listeners: list[Callable[[bytes, bytes], None]] = []

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
        txs = tuple(self.mempool.reap(self.limits.max_block_txs, self.limits.max_block_bytes))
        last_commit = self.store.commit(self.height) if self.height else None
        header = BlockHeader(
            chain_id=self.chain_id,
            height=height,
            # The proposer's clock, forced to move forward so block times are monotonic.
            time_ms=max(self._clock_ms(), self._previous_time_ms() + 1),
            previous_block_id=self.store.last_block_id() if self.height else ZERO_HASH,
            last_commit_hash=last_commit.hash if last_commit else ZERO_HASH,
            tx_root=_core.merkle_root(tx_ids(txs)),
            tx_count=len(txs),
            app_hash=self.store.last_app_hash(),
            validators_hash=self.validator_set(height).hash,
            next_validators_hash=self.validator_set(height + 1).hash,
            evidence_hash=evidence_root(()),
            proposer=proposer,
        )
        return Block(header, txs, last_commit, ())

    # ----------------------------------------------------------------- validating

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
        if header.time_ms <= self._previous_time_ms():
            return BlockVerdict(False, "time_ms does not increase")
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
        for item in block.evidence:
            try:
                item.verify(self.chain_id, self.validator_set(item.height))
            except (EvidenceError, ChainHaltError) as error:
                return BlockVerdict(False, f"evidence: {error}")
        txs = list(block.txs)
        verdicts, ids = _core.check_transactions(txs, self.chain_id, self.limits.max_tx_bytes)
        if any(verdicts):
            return BlockVerdict(False, "a transaction fails stateless validation")
        signatures = self.signature_verdicts(txs, ids)
        if signatures.count(1) != len(txs):
            return BlockVerdict(False, "a transaction signature does not verify")
        return BlockVerdict(True, signature_verdicts=bytes(signatures))

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
        which holds only admitted ones, whose signatures it verified."""
        return BlockVerdict(True, signature_verdicts=b"\x01" * len(block.txs))

    # ------------------------------------------------------------------- applying

    def _erasure_targets(self, block: Block) -> list[tuple[int, bytes, bytes]]:
        """(index, record id, binary CID) of each ERASE_RECORD in `block`, read before
        execution: the erasure clears the CID from state, and every node must delete the blob."""
        targets = []
        view = self.store.state_view()
        for index, tx in enumerate(block.txs):
            chain_id_length = tx[1]
            if tx[2 + chain_id_length] != TxKind.ERASE_RECORD:
                continue
            payload_start = 3 + chain_id_length + 32 + 8 + 2
            record_id = tx[payload_start : payload_start + 32]
            stored = emr_queries.record(view, record_id)
            targets.append((index, record_id, stored.cid if stored else b""))
        return targets

    def apply_block(
        self, block: Block, commit: CommitCertificate, signature_verdicts: bytes | None = None
    ) -> None:
        """Execute and durably commit a decided block, then update the mempool.

        Raises ChainHaltError if the block does not fit our state although the validators
        committed it: our application state has diverged and the node must stop.
        """
        if block.header.app_hash != self.store.last_app_hash():
            raise ChainHaltError(
                f"block {block.height} was committed with app hash "
                f"{block.header.app_hash.hex()[:16]}, ours is "
                f"{self.store.last_app_hash().hex()[:16]}: our state diverged; halting"
            )
        if signature_verdicts is None:  # block sync: not validated through consensus
            txs = list(block.txs)
            signature_verdicts = bytes(self.signature_verdicts(txs, list(block.tx_ids)))
        erasures = self._erasure_targets(block) if self.erasure_listeners else []
        result = self.application.execute_block(
            block, self.store.state_view(), signature_verdicts=signature_verdicts
        )
        self.store.commit_block(block, commit, result)
        for index, record_id, cid in erasures:
            if result.tx_results[index].code == 0:
                for erasure_listener in self.erasure_listeners:
                    erasure_listener(record_id, cid)
        ids = block.tx_ids
        senders = {tx[3 + tx[1] : 35 + tx[1]] for tx in block.txs}
        self.mempool.update(ids, {sender: self.committed_nonce(sender) for sender in senders})
        for listener in self.commit_listeners:
            listener(block, ids, result.tx_results)
        failed = sum(1 for tx_result in result.tx_results if tx_result.code)
        logger.info(
            "committed height %d: %d txs (%d refused by execution), app hash %s",
            block.height,
            len(block.txs),
            failed,
            result.app_hash.hex()[:16],
        )
