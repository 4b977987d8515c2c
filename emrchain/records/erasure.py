"""Erasure that finishes (`docs/spec/records.md` §8–9): a durable queue of records erased on
chain whose copies on this node are not yet all gone, worked until they are.

A committed ERASE_RECORD puts the record in the vault's erasure queue (synced to disk) before
anything else happens, so a crash, a stop or a storage outage only delays it. The worker
deletes the custody copy, the patient's and grantees' wraps, the blob and the cache entry,
retrying with exponential backoff while a store is down (the vault, IPFS, or Redis: a cache
delete that fails raises, because the entry may outlive it until its TTL, or across a Redis
restart with persistence); a custodian's node then posts an
ERASURE_RECEIPT signed with its organisation's receipt key, and the entry leaves the queue once
the chain holds that receipt (or at once on a node that is not a custodian).

The queue follows the chain through a cursor in the vault, the height through which every
block's erasures are queued: it advances after each block's queue entries, and at start the
blocks above it are scanned for applied erasures, which covers a crash between a block's
commit and its queue entries on every node (a replica holder too, which has no custody copy).
The worker also queues every custody copy in the vault whose record the chain shows erased.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from emrchain.client.identity import MemberIdentity, load_identity
from emrchain.client.transactions import erasure_receipt
from emrchain.config.node import NodeConfig
from emrchain.mempool.admission import Admission
from emrchain.records.service import RecordService
from emrchain.schema import TxKind
from emrchain.schema.anchor import KEY_BYTES
from emrchain.schema.codec import decode_payload
from emrchain.state.emr.custody import read_erasure_receipts, read_record_custody
from emrchain.state.emr.records import EmrRecord
from emrchain.state.emr.tables import read_record
from emrchain.state.keys import nonce_key
from emrchain.state.result import TxResult
from emrchain.state.view import StateView, read_u64
from emrchain.storage.cid import cid_bytes_to_text
from emrchain.storage.interfaces import StorageError
from emrchain.types import envelope
from emrchain.types.block import Block

logger = logging.getLogger(__name__)
RECONCILE_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class ErasureSettings:
    retry_initial_ms: int
    retry_max_ms: int
    batch: int
    """Queue entries worked per pass."""


@dataclass(slots=True)
class _Progress:
    deleted: bool = False
    attempts: int = 0
    next_try: float = 0.0
    receipt_tx: bytes = b""
    receipt_sent_at: float = 0.0


@dataclass(frozen=True, slots=True)
class CatchUp:
    blocks_scanned: int
    queued: int


BlockReader = Callable[[int], tuple[Sequence[bytes], Sequence[TxResult]] | None]
"""A committed block's transactions and their results, by height (None if not stored)."""


@dataclass(slots=True)
class ErasureWorker:
    records: RecordService
    state_view: Callable[[], StateView]
    admit: Callable[[Sequence[bytes]], list[Admission]]
    pending_nonces: Callable[[bytes], tuple[int, int] | None]
    chain_id: bytes
    receipt_identity: MemberIdentity | None
    settings: ErasureSettings
    clock: Callable[[], float] = time.monotonic
    block_at: BlockReader = lambda _height: None
    """The block store: `catch_up` scans it, and `_anchored_cid` reads a record's anchoring
    block from it."""
    caught_up: CatchUp | None = None
    """What this start's `follow_chain` scanned (None until it ran, or if it failed)."""
    _following: bool = False
    """The cursor moves with commits only once `catch_up` reached the chain's height: before,
    it would pass blocks not yet scanned."""
    _progress: dict[bytes, _Progress] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def enqueue(self, record_id: bytes, cid: bytes) -> None:
        """A committed erasure (chain listener): durable at once, worked in the background."""
        self.records.vault.enqueue_erasure(record_id, cid_bytes_to_text(cid) if cid else "")
        self._wake.set()

    def on_commit(self, block: Block, _ids: Sequence[bytes], _results: list[TxResult]) -> None:
        """Chain commit listener, run after the block's erasure listeners queued its erasures:
        the cursor passes the block."""
        if not self._following:
            return
        try:
            self.records.vault.set_erasure_cursor(block.height)
        except StorageError as error:
            # An older cursor only makes the next start scan more blocks.
            logger.warning("erasure: cursor not advanced to %d: %s", block.height, error)

    def follow_chain(self, chain_height: int) -> CatchUp | None:
        """At start, before any block is applied: `catch_up`, then follow commits. None (and
        the cursor left behind, retried at the next start) if the vault or a block cannot be
        read."""
        try:
            caught_up = self.catch_up(chain_height)
        except StorageError as error:
            logger.error("erasure: the blocks since the cursor were not scanned: %s", error)
            return None
        self.caught_up = caught_up
        if caught_up.queued:
            logger.info(
                "erasure: %d erasures of %d blocks committed since the cursor were not queued",
                caught_up.queued,
                caught_up.blocks_scanned,
            )
            self._wake.set()
        return caught_up

    def catch_up(self, chain_height: int) -> CatchUp:
        """Queue the applied erasures of the blocks (cursor, chain_height] (a crash between a
        block's commit and its queue entries), each with the CID of its record's anchor; then
        set the cursor to `chain_height`. A vault without a cursor (from before it) starts at
        `chain_height` without scanning."""
        vault = self.records.vault
        cursor = vault.erasure_cursor()
        scanned = queued = 0
        if cursor is not None:
            view = self.state_view()
            for height in range(cursor + 1, chain_height + 1):
                block = self.block_at(height)
                if block is None:
                    raise StorageError(f"block {height} is committed but not in the block store")
                for record_id in applied_erasures(*block):
                    record = read_record(view, record_id)
                    vault.enqueue_erasure(record_id, self._anchored_cid(record))
                    queued += 1
                scanned += 1
        vault.set_erasure_cursor(chain_height)
        self._following = True
        return CatchUp(scanned, queued)

    def _anchored_cid(self, record: EmrRecord | None) -> str:
        """The CID the record's ANCHOR_RECORD carried, from its block ("" if unknown): the
        tombstone dropped it, and an erasure queued without one (after a crash between the
        erasure's commit and its queue entry) must still delete the blob and the cache entry."""
        block = self.block_at(record.height) if record is not None else None
        if record is None or block is None:
            return ""
        return anchored_cid(*block, record.record_id) or ""

    def reconcile(self) -> int:
        """Queue the custody copies whose record the chain shows erased; how many."""
        view = self.state_view()
        queued = 0
        after = b""
        while page := self.records.vault.iterate(after, RECONCILE_PAGE):
            for wrap in page:
                record = read_record(view, wrap.record_id)
                if record is not None and record.is_erased:
                    self.records.vault.enqueue_erasure(wrap.record_id, self._anchored_cid(record))
                    queued += 1
            after = page[-1].record_id
        return queued

    async def run(self) -> None:
        """Work the queue until cancelled: a pass, then sleep until woken or the next retry."""
        try:
            queued = self.reconcile()
            if queued:
                logger.info("erasure: %d erased records still had a custody copy here", queued)
        except StorageError as error:
            logger.error("erasure: reconciliation failed (retried at next start): %s", error)
        while True:
            await self.work_once()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.retry_initial_ms / 1000)

    def pending(self) -> int:
        return len(self.records.vault.pending_erasures(self.settings.batch))

    async def work_once(self) -> None:
        try:
            entries = self.records.vault.pending_erasures(self.settings.batch)
        except StorageError as error:
            logger.error("erasure: the queue cannot be read: %s", error)
            return
        for record_id, cid_text in entries:
            await self._work(record_id, cid_text)

    async def _work(self, record_id: bytes, cid_text: str) -> None:
        progress = self._progress.setdefault(record_id, _Progress())
        now = self.clock()
        if now < progress.next_try:
            return
        if not progress.deleted:
            if not cid_text:
                cid_text = self._anchored_cid(read_record(self.state_view(), record_id))
            try:
                await self.records.erase(record_id, cid_text or None)
                progress.deleted = True
            except (StorageError, OSError) as error:
                self._back_off(progress, now)
                logger.warning(
                    "erasure of %s failed (attempt %d, retried): %s",
                    record_id.hex()[:16],
                    progress.attempts,
                    error,
                )
                return
        if self._confirmed_or_not_ours(record_id):
            self.records.vault.finish_erasure(record_id)
            self._progress.pop(record_id, None)
            logger.info("erasure of %s finished on this node", record_id.hex()[:16])
            return
        self._post_receipt(record_id, progress, now)

    def _back_off(self, progress: _Progress, now: float) -> None:
        progress.attempts += 1
        delay_ms = min(
            self.settings.retry_initial_ms * (2 ** min(progress.attempts - 1, 30)),
            self.settings.retry_max_ms,
        )
        progress.next_try = now + delay_ms / 1000

    def _confirmed_or_not_ours(self, record_id: bytes) -> bool:
        """True when no receipt is due from this node: it is not a custodian, or the chain
        already holds its organisation's receipt."""
        organization_id = self.records.organization_id
        view = self.state_view()
        custody = read_record_custody(view, record_id)
        if organization_id is None or custody is None:
            return True
        if custody.wrap_digest_of(organization_id) is None:
            return True
        return organization_id in read_erasure_receipts(view, record_id)

    def _post_receipt(self, record_id: bytes, progress: _Progress, now: float) -> None:
        identity = self.receipt_identity
        if identity is None:
            logger.warning(
                "erasure of %s done here, but no receipt key is configured: the chain will "
                "not show this custodian's confirmation",
                record_id.hex()[:16],
            )
            self.records.vault.finish_erasure(record_id)
            return
        resend_after_s = self.settings.retry_max_ms / 1000
        if progress.receipt_tx and now - progress.receipt_sent_at < resend_after_s:
            return  # sent, not yet committed: wait for its block
        sender = identity.member_key
        committed = read_u64(self.state_view(), nonce_key(sender))
        pending = self.pending_nonces(sender)
        nonce = (pending[1] if pending else committed) + 1
        tx = erasure_receipt(identity, self.chain_id, nonce, record_id=record_id)
        admission = self.admit([tx.encode()])[0]
        if not admission.accepted:
            self._back_off(progress, now)
            logger.warning(
                "erasure receipt for %s not admitted (%s), retried",
                record_id.hex()[:16],
                admission.reason,
            )
            return
        progress.receipt_tx = tx.tx_id
        progress.receipt_sent_at = now
        logger.info(
            "erasure of %s done here; receipt %s sent", record_id.hex()[:16], tx.tx_id.hex()[:16]
        )


def applied_erasures(txs: Sequence[bytes], results: Sequence[TxResult]) -> list[bytes]:
    """The record ids of a block's applied ERASE_RECORD transactions (the record id is the
    payload's first field)."""
    erased = []
    for raw, result in zip(txs, results, strict=True):
        if result.code == 0 and envelope.kind(raw) == TxKind.ERASE_RECORD:
            start = envelope.payload_offset(raw)
            erased.append(raw[start : start + KEY_BYTES])
    return erased


def anchored_cid(
    txs: Sequence[bytes], results: Sequence[TxResult], record_id: bytes
) -> str | None:
    """The CID of the applied ANCHOR_RECORD of `record_id` among a block's transactions and
    results (the block at the record's `height`); None if that block does not hold it. The
    block keeps what the erasure's tombstone dropped: the CID names ciphertext only, which
    the erasure deletes. Applied transactions were decoded when their block was validated."""
    for raw, result in zip(txs, results, strict=True):
        kind = envelope.kind(raw)
        # An AMEND_RECORD anchors its new record with the same fields (records.md §11).
        if result.code != 0 or kind not in (TxKind.ANCHOR_RECORD, TxKind.AMEND_RECORD):
            continue
        fields = decode_payload(TxKind(kind), envelope.payload(raw))
        if fields["record_id"] == record_id:
            return cid_bytes_to_text(fields["cid"])
    return None


def open_erasure_worker(
    config: NodeConfig,
    records: RecordService,
    state_view: Callable[[], StateView],
    admit: Callable[[Sequence[bytes]], list[Admission]],
    pending_nonces: Callable[[bytes], tuple[int, int] | None],
    chain_id: bytes,
) -> ErasureWorker:
    """The worker of `[records] erasure_*`, with the receipt key if its file loads."""
    section = config.records
    identity = None
    if section.erasure_receipt_key_file:
        path = config.resolve(section.erasure_receipt_key_file)
        if path.exists():
            try:
                identity = load_identity(path)
            except (OSError, ValueError) as error:
                logger.error("erasure receipts off: %s does not load: %s", path, error)
    settings = ErasureSettings(
        section.erasure_retry_initial_ms,
        max(section.erasure_retry_max_ms, section.erasure_retry_initial_ms),
        section.erasure_batch,
    )
    return ErasureWorker(records, state_view, admit, pending_nonces, chain_id, identity, settings)
