"""Which records' ciphertext this node keeps, and the background pins that keep it.

A hospital's IPFS node holds what its own node uploaded; other hospitals' nodes fetch and pin
the records they have a reason to serve (`[records] replicate`):

- `authored`: records whose author belongs to this node's organisation;
- `authored_and_granted` (default): also records granted to the organisation or to one of its
  members (record-scope grants: that record; patient-scope grants: that patient's records this
  node has seen anchored since it started, and every later one).

The decision reads committed state (`emrchain.state.emr`), after the block is durably
committed, from the commit listener. Pins run as background tasks: at most `concurrency` at a
time, a bounded queue (a full queue drops the pin and logs it: consensus never waits for IPFS),
each retried with exponential backoff because the author's IPFS node may not have announced
the blocks yet, or may be briefly away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from emrchain.config.node import NodeConfig
from emrchain.schema import GranteeKind, GrantScope, TxKind
from emrchain.state.emr import queries
from emrchain.state.emr.records import EmrRecord, Grant
from emrchain.state.emr.tables import read_grant, read_record
from emrchain.state.result import TxResult
from emrchain.state.view import StateView
from emrchain.storage.cid import cid_bytes_to_text
from emrchain.storage.interfaces import BlobStore, StorageError
from emrchain.types import Block, envelope
from emrchain.types.transaction import Transaction

logger = logging.getLogger(__name__)

AUTHORED = "authored"
AUTHORED_AND_GRANTED = "authored_and_granted"
POLICIES = (AUTHORED, AUTHORED_AND_GRANTED)


@dataclass(frozen=True, slots=True)
class PinLimits:
    concurrency: int = 4
    queue_capacity: int = 10_000
    attempts: int = 6
    backoff_initial_ms: int = 250
    backoff_max_ms: int = 10_000


@dataclass
class ReplicationCounters:
    pinned: int = 0
    failed: int = 0
    dropped: int = 0
    retried: int = 0


class Replicator:
    """Commit listener that pins the CIDs this node's policy wants, in the background."""

    def __init__(
        self,
        blob_store: BlobStore,
        organization_id: str,
        policy: str,
        state_view: Callable[[], StateView],
        chain_id: bytes,
        max_tx_bytes: int,
        limits: PinLimits | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"replication policy must be one of {POLICIES}, got {policy!r}")
        self._blob_store = blob_store
        self._organization_id = organization_id
        self._policy = policy
        self._state_view = state_view
        self._chain_id = chain_id
        self._max_tx_bytes = max_tx_bytes
        self._limits = limits or PinLimits()
        self._queue: asyncio.Queue[str] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._queued: set[str] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Patient -> CIDs of that patient's records anchored since start, so a later
        # patient-scope grant can pin them (state has no index of records by patient).
        self._records_of_patient: dict[bytes, list[str]] = {}
        self.counters = ReplicationCounters()

    # -- the decision --------------------------------------------------------------------

    def wanted_cids(
        self, block: Block, tx_ids: Sequence[bytes], tx_results: list[TxResult]
    ) -> list[str]:
        """CIDs of `block`'s applied anchors and grants this node should keep, in order."""
        wanted: list[str] = []
        view = self._state_view()
        for raw, tx_id, result in zip(block.txs, tx_ids, tx_results, strict=True):
            if result.code != 0:
                continue
            kind = envelope.kind(raw)
            if kind == TxKind.ANCHOR_RECORD:
                record_id = Transaction.decode(raw, self._chain_id, self._max_tx_bytes).fields[
                    "record_id"
                ]
                record = read_record(view, record_id)
                if record is not None and not record.is_erased:
                    cid = cid_bytes_to_text(record.cid)
                    self._records_of_patient.setdefault(record.patient_id, []).append(cid)
                    if self._wants_record(view, record):
                        wanted.append(cid)
            elif kind == TxKind.GRANT_ACCESS and self._policy == AUTHORED_AND_GRANTED:
                grant = read_grant(view, tx_id)
                if grant is not None and self._is_ours(view, grant):
                    wanted.extend(self._cids_of_grant(view, grant))
        return wanted

    def _wants_record(self, view: StateView, record: EmrRecord) -> bool:
        if record.author_organization == self._organization_id:
            return True
        if self._policy != AUTHORED_AND_GRANTED:
            return False
        return any(
            grant.scope == GrantScope.PATIENT and self._is_ours(view, grant)
            for grant in queries.grants_for(view, patient_id=record.patient_id)
        )

    def _is_ours(self, view: StateView, grant: Grant) -> bool:
        if grant.grantee_kind == GranteeKind.ORGANIZATION:
            return grant.grantee_organization == self._organization_id
        found = queries.member(view, grant.grantee_member)
        return found is not None and found.member.organization_id == self._organization_id

    def _cids_of_grant(self, view: StateView, grant: Grant) -> list[str]:
        if grant.scope == GrantScope.RECORD:
            record = read_record(view, grant.target)
            if record is None or record.is_erased:
                return []
            return [cid_bytes_to_text(record.cid)]
        return list(self._records_of_patient.get(grant.target, []))

    # -- the pins ------------------------------------------------------------------------

    def on_commit(self, block: Block, tx_ids: Sequence[bytes], tx_results: list[TxResult]) -> None:
        """Chain commit listener: queue the wanted pins; never blocks, never raises."""
        try:
            wanted = self.wanted_cids(block, tx_ids, tx_results)
        except Exception:
            logger.exception("replication: cannot read block %d's records", block.header.height)
            return
        for cid in wanted:
            self.enqueue(cid)

    def enqueue(self, cid: str) -> None:
        """Pin `cid` in the background (deduplicated while queued)."""
        if cid in self._queued:
            return
        queue = self._ensure_workers()
        try:
            queue.put_nowait(cid)
        except asyncio.QueueFull:
            self.counters.dropped += 1
            logger.warning("replication queue full: pin of %s dropped", cid)
            return
        self._queued.add(cid)
        self._idle.clear()
        logger.info("replication: pinning %s", cid)

    @property
    def backlog(self) -> int:
        """Pins queued or in progress (docs/spec/metrics.md)."""
        return len(self._queued)

    async def wait_idle(self) -> None:
        """Until every queued pin finished (pinned or given up); for tests and shutdown."""
        await self._idle.wait()

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def _ensure_workers(self) -> asyncio.Queue[str]:
        if self._queue is None:
            self._queue = asyncio.Queue(self._limits.queue_capacity)
            self._workers = [
                asyncio.get_running_loop().create_task(self._work())
                for _ in range(self._limits.concurrency)
            ]
        return self._queue

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            cid = await self._queue.get()
            self._in_flight += 1
            try:
                await self._pin_with_retries(cid)
            finally:
                self._in_flight -= 1
                self._queued.discard(cid)
                if not self._queued and self._in_flight == 0:
                    self._idle.set()

    async def _pin_with_retries(self, cid: str) -> None:
        delay_s = self._limits.backoff_initial_ms / 1000
        for attempt in range(1, self._limits.attempts + 1):
            try:
                await self._blob_store.pin(cid)
            except (StorageError, OSError) as error:
                if attempt == self._limits.attempts:
                    self.counters.failed += 1
                    logger.warning("replication: pin of %s failed for good: %s", cid, error)
                    return
                self.counters.retried += 1
                logger.info("replication: pin of %s failed (%s); retrying", cid, error)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._limits.backoff_max_ms / 1000)
            else:
                self.counters.pinned += 1
                logger.info("replication: pinned %s", cid)
                return


def open_replicator(
    config: NodeConfig, blob_store: BlobStore, state_view: Callable[[], StateView], chain_id: bytes
) -> Replicator | None:
    """A replicator for a node whose ciphertext lives in IPFS and which serves an organisation;
    None otherwise (a local blob store has no network to fetch from)."""
    if config.records.blob_backend != "ipfs" or not config.node.organization_id:
        return None
    return Replicator(
        blob_store,
        config.node.organization_id,
        config.records.replicate,
        state_view,
        chain_id,
        config.limits.max_tx_bytes,
    )
