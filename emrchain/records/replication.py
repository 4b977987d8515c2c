"""Which records' ciphertext this node keeps, and the reconciler that keeps it so.

Two reasons make this node's organisation hold a record's blob (`docs/spec/records.md` §10):

- **placement**: it is among the record's first `factor` organisations in the order
  `records/placement.py` derives from chain state (custodians first, then the patient's
  organisation, then rendezvous hashing), skipping organisations whose IPFS node is observed
  down (`[records] replication_peers`), so the network keeps `factor` reachable copies;
- **grants** (`[records] replicate = "authored_and_granted"`, the default): the record is
  granted to the organisation or one of its members (record scope: that record; patient scope:
  every record of the patient).

Pins are made two ways. The commit listener queues the pins a block implies at once (fast
path). The reconciler, at start and every `replication_interval_ms`, reads every record from
committed state (`records/chain_index.py`), compares what this node should hold with what its
IPFS node has pinned, queues what is missing, and counts the copies it can observe on its
peers' IPFS nodes to report under-replicated records (RPC `GET /records/replication`,
`/metrics`). Because the wanted set is derived from the chain at each round, nothing has to
survive a restart: a pin that failed (IPFS down) is retried by the next round, and the next
start.

A pin runs as a background job: at most `concurrency` at a time, a bounded queue (a full queue
drops the job and logs it; the next round queues it again: consensus never waits for IPFS),
each retried with exponential backoff. A job fetches the blob from a peer's IPFS node (checked
against the anchor's SHA-256) and adds it locally when peers are configured, else pins it
through the IPFS network (bitswap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from emrchain.config.node import NodeConfig
from emrchain.records.chain_index import records_page
from emrchain.records.placement import factor_of, holders, placement_order
from emrchain.schema import GranteeKind, GrantScope, TxKind
from emrchain.state.emr import queries
from emrchain.state.emr.custody import read_organization_ids, read_record_custody
from emrchain.state.emr.records import EmrRecord, Grant
from emrchain.state.emr.tables import patient_member, read_grant, read_record
from emrchain.state.result import TxResult
from emrchain.state.view import CommittedState, StateView
from emrchain.storage.cid import cid_bytes_to_text
from emrchain.storage.failover import FailoverBlobStore
from emrchain.storage.interfaces import BlobStore, StorageError
from emrchain.store.database import ChainDatabase
from emrchain.types import Block, envelope
from emrchain.types.transaction import Transaction

logger = logging.getLogger(__name__)
_NEW_RECORD_KINDS = (TxKind.ANCHOR_RECORD, TxKind.AMEND_RECORD)
"""Transactions that anchor a new record (an amendment is a record too, records.md §11)."""

AUTHORED = "authored"
AUTHORED_AND_GRANTED = "authored_and_granted"
POLICIES = (AUTHORED, AUTHORED_AND_GRANTED)
SCAN_PAGE_RECORDS = 1_000
REPORTED_RECORDS = 100
"""Most under-replicated or missing records listed by name in the report (all are counted)."""


@dataclass(frozen=True, slots=True)
class PinLimits:
    concurrency: int = 4
    queue_capacity: int = 10_000
    attempts: int = 6
    backoff_initial_ms: int = 250
    backoff_max_ms: int = 10_000


@dataclass(frozen=True, slots=True)
class Placement:
    """The replication factors (`[records] replication_factor*`)."""

    factor: int = 2
    factors_by_type: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class PinListing(Protocol):
    async def pinned(self) -> set[str]:
        """The CIDs the store has pinned (IpfsBlobStore)."""
        ...


@dataclass
class ReplicationCounters:
    pinned: int = 0
    failed: int = 0
    dropped: int = 0
    retried: int = 0
    copied_from_peers: int = 0
    erased: int = 0
    """Jobs whose record was erased before or during the pin: not kept."""


@dataclass
class ReplicationReport:
    """What the last reconciliation round saw (`GET /records/replication`)."""

    rounds: int = 0
    last_round_height: int = 0
    last_round_duration_ms: int = 0
    last_round_error: str = ""
    local_store_up: bool = True
    records: int = 0
    """Records with a blob (not erased) in committed state."""
    wanted_here: int = 0
    pinned_here: int = 0
    missing_here: int = 0
    """Wanted here and not pinned locally when the round looked (queued for pinning)."""
    under_replicated: int = 0
    """Records with fewer copies than their factor, counting what this node can observe."""
    peers: dict[str, bool] = field(default_factory=dict)
    """Each configured peer organisation: whether its IPFS node answered this round."""
    missing_sample: list[dict[str, Any]] = field(default_factory=list)
    under_replicated_sample: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "last_round_height": self.last_round_height,
            "last_round_duration_ms": self.last_round_duration_ms,
            "last_round_error": self.last_round_error,
            "local_store_up": self.local_store_up,
            "records": self.records,
            "wanted_here": self.wanted_here,
            "pinned_here": self.pinned_here,
            "missing_here": self.missing_here,
            "under_replicated": self.under_replicated,
            "peers": dict(self.peers),
            "missing": list(self.missing_sample),
            "under_replicated_records": list(self.under_replicated_sample),
        }


@dataclass(frozen=True, slots=True)
class _PinJob:
    cid: str
    expected_sha256: bytes | None
    record_id: bytes | None = None
    """Known for jobs derived from the chain: checked not erased before and after the pin."""


class Replicator:
    """Commit listener and reconciler that keep this node's pins what the chain implies."""

    def __init__(
        self,
        blob_store: BlobStore,
        organization_id: str,
        policy: str,
        state_view: Callable[[], StateView],
        chain_id: bytes,
        max_tx_bytes: int,
        limits: PinLimits | None = None,
        *,
        placement: Placement | None = None,
        database: ChainDatabase | None = None,
        interval_ms: int = 60_000,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"replication policy must be one of {POLICIES}, got {policy!r}")
        if isinstance(blob_store, FailoverBlobStore):
            self._local: BlobStore = blob_store.local
            self._peers: tuple[tuple[str, BlobStore], ...] = blob_store.peers
            self._failover: FailoverBlobStore | None = blob_store
        else:
            self._local, self._peers, self._failover = blob_store, (), None
        self._organization_id = organization_id
        self._policy = policy
        self._state_view = state_view
        self._chain_id = chain_id
        self._max_tx_bytes = max_tx_bytes
        self._limits = limits or PinLimits()
        self._placement = placement or Placement()
        self._database = database
        self._interval_s = interval_ms / 1000
        self._queue: asyncio.Queue[_PinJob] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._reconciler: asyncio.Task[None] | None = None
        self._reconcile_soon = asyncio.Event()
        self._queued: set[str] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Organisations whose IPFS node did not answer the last round: placement skips them.
        self._down: frozenset[str] = frozenset()
        self.counters = ReplicationCounters()
        self.report = ReplicationReport()

    # -- the decision --------------------------------------------------------------------

    def wanted_cids(
        self, block: Block, tx_ids: Sequence[bytes], tx_results: list[TxResult]
    ) -> list[str]:
        """CIDs of `block`'s applied anchors and grants this node should keep, in order."""
        return [job.cid for job in self._wanted_jobs(block, tx_ids, tx_results)]

    def _wanted_jobs(
        self, block: Block, tx_ids: Sequence[bytes], tx_results: list[TxResult]
    ) -> list[_PinJob]:
        wanted: list[_PinJob] = []
        view = self._state_view()
        organizations: list[str] | None = None
        for raw, tx_id, result in zip(block.txs, tx_ids, tx_results, strict=True):
            if result.code != 0:
                continue
            kind = envelope.kind(raw)
            if kind in _NEW_RECORD_KINDS:
                record_id = Transaction.decode(raw, self._chain_id, self._max_tx_bytes).fields[
                    "record_id"
                ]
                record = read_record(view, record_id)
                if record is None or record.is_erased:
                    continue
                if organizations is None:
                    organizations = self._organizations(view)
                if self._wants_record(view, record, organizations):
                    wanted.append(_job(record))
            elif kind == TxKind.GRANT_ACCESS and self._policy == AUTHORED_AND_GRANTED:
                grant = read_grant(view, tx_id)
                if grant is None or not self._is_ours(view, grant):
                    continue
                if grant.scope == GrantScope.RECORD:
                    record = read_record(view, grant.target)
                    if record is not None and not record.is_erased:
                        wanted.append(_job(record))
                else:
                    # The patient's records are found by a scan of state: the reconciler's.
                    self._reconcile_soon.set()
        return wanted

    def _organizations(self, view: StateView) -> list[str]:
        if self._database is None:
            return [self._organization_id]
        return read_organization_ids(view)

    def holders_of(
        self, view: StateView, record: EmrRecord, organizations: Sequence[str]
    ) -> list[str]:
        """The organisations placement puts `record`'s copies on, skipping those seen down."""
        member = patient_member(view, record.patient_id)
        order = placement_order(
            record.record_id,
            list(custodians_of(view, record)),
            member.organization_id if member is not None else None,
            organizations,
        )
        factor = factor_of(
            record.record_type, self._placement.factor, self._placement.factors_by_type
        )
        return holders(order, factor, self._down)

    def _wants_record(
        self, view: StateView, record: EmrRecord, organizations: Sequence[str]
    ) -> bool:
        # A custodian serves the record, so it always holds the blob, whatever the factor.
        if self._organization_id in custodians_of(view, record):
            return True
        if self._organization_id in self.holders_of(view, record, organizations):
            return True
        return self._policy == AUTHORED_AND_GRANTED and self._granted_to_us(view, record)

    def _granted_to_us(self, view: StateView, record: EmrRecord) -> bool:
        grants = [
            *queries.grants_for(view, record_id=record.record_id),
            *(
                grant
                for grant in queries.grants_for(view, patient_id=record.patient_id)
                if grant.scope == GrantScope.PATIENT
            ),
        ]
        return any(self._is_ours(view, grant) for grant in grants)

    def _is_ours(self, view: StateView, grant: Grant) -> bool:
        if grant.grantee_kind == GranteeKind.ORGANIZATION:
            return grant.grantee_organization == self._organization_id
        found = queries.member(view, grant.grantee_member)
        return found is not None and found.member.organization_id == self._organization_id

    # -- reconciliation ------------------------------------------------------------------

    def start(self) -> None:
        """Run the reconciler: one round now, then every interval (or sooner when a
        patient-scope grant to this organisation commits)."""
        if self._reconciler is None and self._database is not None:
            self._reconciler = asyncio.get_running_loop().create_task(self._reconcile_forever())

    async def _reconcile_forever(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a round that fails must not end reconciliation
                self.report.last_round_error = f"{type(error).__name__}: {error}"
                logger.exception("replication: reconciliation round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_soon.wait(), self._interval_s)
            self._reconcile_soon.clear()

    async def reconcile_once(self) -> ReplicationReport:
        """One round: observe the stores, scan committed state, queue missing pins, report."""
        if self._database is None:
            raise RuntimeError("a replicator without the chain database cannot reconcile")
        started = time.monotonic()
        report = ReplicationReport(rounds=self.report.rounds + 1)
        local_pins, peer_pins = await self._observe_stores(report)
        view = self._state_view()
        report.last_round_height = view.last_height() if isinstance(view, CommittedState) else 0
        await self._scan_records(self._database, view, local_pins, peer_pins, report)
        if local_pins is None:
            report.last_round_error = "the local IPFS node did not answer; nothing was pinned"
        report.last_round_duration_ms = round((time.monotonic() - started) * 1000)
        self.report = report
        logger.info(
            "replication round %d: %d records, %d wanted here, %d missing here, %d "
            "under-replicated",
            report.rounds,
            report.records,
            report.wanted_here,
            report.missing_here,
            report.under_replicated,
        )
        return report

    async def _observe_stores(
        self, report: ReplicationReport
    ) -> tuple[set[str] | None, dict[str, set[str]]]:
        """The local store's pins (None: it did not answer) and each answering peer's; peers
        that did not answer are down for placement until the next round."""
        local_pins = await self._pins_of(self._local)
        report.local_store_up = local_pins is not None
        peer_pins: dict[str, set[str]] = {}
        for organization_id, peer in self._peers:
            pins = await self._pins_of(peer)
            report.peers[organization_id] = pins is not None
            if pins is not None:
                peer_pins[organization_id] = pins
        self._down = frozenset(
            organization_id for organization_id, up in report.peers.items() if not up
        )
        return local_pins, peer_pins

    async def _scan_records(
        self,
        database: ChainDatabase,
        view: StateView,
        local_pins: set[str] | None,
        peer_pins: Mapping[str, set[str]],
        report: ReplicationReport,
    ) -> None:
        organizations = read_organization_ids(view)
        after = b""
        while True:
            page = records_page(database, after, SCAN_PAGE_RECORDS)
            for record in page:
                if not record.is_erased:
                    self._reconcile_record(
                        view, record, organizations, local_pins, peer_pins, report
                    )
            if len(page) < SCAN_PAGE_RECORDS:
                return
            after = page[-1].record_id
            await asyncio.sleep(0)  # let consensus and reads run between pages

    def _reconcile_record(
        self,
        view: StateView,
        record: EmrRecord,
        organizations: Sequence[str],
        local_pins: set[str] | None,
        peer_pins: Mapping[str, set[str]],
        report: ReplicationReport,
    ) -> None:
        report.records += 1
        cid = cid_bytes_to_text(record.cid)
        placed_on = self.holders_of(view, record, organizations)
        pinned_here = local_pins is not None and cid in local_pins
        if pinned_here:
            report.pinned_here += 1
        if self._wants_record(view, record, organizations):
            report.wanted_here += 1
            if not pinned_here and local_pins is not None:
                report.missing_here += 1
                _sample(report.missing_sample, record, cid, {})
                self.enqueue(cid, record.ciphertext_sha256, record.record_id)
        copies = self._observed_copies(cid, placed_on, pinned_here, local_pins, peer_pins)
        factor = factor_of(
            record.record_type, self._placement.factor, self._placement.factors_by_type
        )
        expected = min(factor, len(organizations))
        if copies < expected:
            report.under_replicated += 1
            _sample(
                report.under_replicated_sample, record, cid, {"copies": copies, "factor": factor}
            )

    def _observed_copies(
        self,
        cid: str,
        placed_on: Sequence[str],
        pinned_here: bool,
        local_pins: set[str] | None,
        peer_pins: Mapping[str, set[str]],
    ) -> int:
        """Copies this node can see (its own pins, its answering peers'), plus the holders it
        cannot observe at all (no endpoint configured), which are assumed to follow placement."""
        copies = int(pinned_here) + sum(cid in pins for pins in peer_pins.values())
        observable = {self._organization_id, *(organization for organization, _ in self._peers)}
        return copies + sum(holder not in observable for holder in placed_on)

    async def _pins_of(self, store: BlobStore) -> set[str] | None:
        if not isinstance(store, PinListing):
            return None
        try:
            return await store.pinned()
        except (StorageError, OSError) as error:
            logger.info("replication: a store did not list its pins: %s", error)
            return None

    # -- the pins ------------------------------------------------------------------------

    def on_commit(self, block: Block, tx_ids: Sequence[bytes], tx_results: list[TxResult]) -> None:
        """Chain commit listener: queue the wanted pins; never blocks, never raises."""
        try:
            wanted = self._wanted_jobs(block, tx_ids, tx_results)
        except Exception:
            logger.exception("replication: cannot read block %d's records", block.header.height)
            return
        for job in wanted:
            self.enqueue(job.cid, job.expected_sha256, job.record_id)

    def enqueue(
        self, cid: str, expected_sha256: bytes | None = None, record_id: bytes | None = None
    ) -> None:
        """Pin `cid` in the background (deduplicated while queued); with the anchor's SHA-256,
        the blob may be copied from a peer's store; with the record id, a record erased
        meanwhile is not pinned (or is unpinned again)."""
        if cid in self._queued:
            return
        queue = self._ensure_workers()
        try:
            queue.put_nowait(_PinJob(cid, expected_sha256, record_id))
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
        tasks = [*self._workers, *([self._reconciler] if self._reconciler else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers = []
        self._reconciler = None

    def _ensure_workers(self) -> asyncio.Queue[_PinJob]:
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
            job = await self._queue.get()
            self._in_flight += 1
            try:
                await self._pin_with_retries(job)
            finally:
                self._in_flight -= 1
                self._queued.discard(job.cid)
                if not self._queued and self._in_flight == 0:
                    self._idle.set()

    async def _pin_with_retries(self, job: _PinJob) -> None:
        delay_s = self._limits.backoff_initial_ms / 1000
        for attempt in range(1, self._limits.attempts + 1):
            try:
                kept = await self._pin_once(job)
            except (StorageError, OSError) as error:
                if attempt == self._limits.attempts:
                    self.counters.failed += 1
                    logger.warning("replication: pin of %s failed for good: %s", job.cid, error)
                    return
                self.counters.retried += 1
                logger.info("replication: pin of %s failed (%s); retrying", job.cid, error)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._limits.backoff_max_ms / 1000)
            else:
                if kept:
                    self.counters.pinned += 1
                    logger.info("replication: pinned %s", job.cid)
                else:
                    self.counters.erased += 1
                return

    async def _pin_once(self, job: _PinJob) -> bool:
        """Copy the blob from a peer's store when the local one lacks it (peers configured and
        the anchor known), else ask the local store to pin it (IPFS fetches through bitswap).
        A job queued before its record's erasure committed must not bring the blob back: the
        record is checked before, and after (an erasure that committed during the pin ran its
        deletion before our pin landed, so the pin is undone here)."""
        if self._erased(job):
            logger.info("replication: %s was erased; not pinned", job.cid)
            return False
        await self._pin_or_copy(job)
        if self._erased(job):
            await self._local.delete(job.cid)
            logger.info("replication: %s was erased during its pin; removed again", job.cid)
            return False
        return True

    def _erased(self, job: _PinJob) -> bool:
        if job.record_id is None:
            return False
        record = read_record(self._state_view(), job.record_id)
        return record is None or record.is_erased

    async def _pin_or_copy(self, job: _PinJob) -> None:
        if (
            self._failover is not None
            and job.expected_sha256 is not None
            and not await self._local.has(job.cid)
        ):
            data = await self._failover.from_peers(job.cid, job.expected_sha256)
            if data is not None:
                await self._local.put(data)
                self.counters.copied_from_peers += 1
                return
        await self._local.pin(job.cid)


def _job(record: EmrRecord) -> _PinJob:
    return _PinJob(cid_bytes_to_text(record.cid), record.ciphertext_sha256, record.record_id)


def _sample(
    sample: list[dict[str, Any]], record: EmrRecord, cid: str, extra: dict[str, Any]
) -> None:
    if len(sample) < REPORTED_RECORDS:
        sample.append({"record_id": record.record_id.hex(), "cid": cid, **extra})


def replication_json(
    config: NodeConfig, replicator: Replicator | None, blob_store: BlobStore
) -> dict[str, Any]:
    """The `GET /records/replication` reply: settings, the last round's report, counters."""
    section = config.records
    report = replicator.report if replicator is not None else ReplicationReport()
    failover = blob_store.counters if isinstance(blob_store, FailoverBlobStore) else None
    return {
        "enabled": replicator is not None,
        "organization_id": config.node.organization_id,
        "factor": section.replication_factor,
        "factors_by_type": dict(section.replication_factor_by_type),
        **report.to_json(),
        "pins": asdict(replicator.counters) if replicator is not None else {},
        "failover": asdict(failover) if failover is not None else {},
    }


def replication_gauges(replicator: Replicator | None, blob_store: BlobStore) -> dict[str, Any]:
    """The scrape-time replication figures of `OperationsSnapshot` (docs/spec/metrics.md)."""
    figures: dict[str, Any] = {}
    if replicator is not None:
        report = replicator.report
        figures.update(
            replication_rounds=report.rounds,
            replication_under_replicated=report.under_replicated,
            replication_missing=report.missing_here,
            replication_peers_down=sum(not up for up in report.peers.values()),
        )
    if isinstance(blob_store, FailoverBlobStore):
        counters = blob_store.counters
        figures.update(
            blob_reads={"local": counters.local_reads, "peer": counters.peer_reads},
            blob_repairs={"repaired": counters.repairs, "failed": counters.repair_failures},
        )
    return figures


def with_failover(config: NodeConfig, local: BlobStore) -> BlobStore:
    """`local`, behind a `FailoverBlobStore` over the IPFS nodes of `[records]
    replication_peers` when any are configured. A peer gets one attempt per read, with half
    the local timeout: a read that fails over must still answer in time."""
    section = config.records
    if section.blob_backend != "ipfs" or not section.replication_peers:
        return local
    from emrchain.storage.ipfs import IpfsBlobStore

    timeout_ms = max(200, section.ipfs_timeout_ms // 2)
    peers: list[tuple[str, BlobStore]] = [
        (
            organization_id,
            IpfsBlobStore(
                url,
                timeout_ms=timeout_ms,
                retries=0,
                node_lookup_timeout_ms=max(100, timeout_ms // 2),
                max_blob_bytes=section.max_record_bytes,
            ),
        )
        for organization_id, url in section.replication_peers
        if organization_id != config.node.organization_id
    ]
    return FailoverBlobStore(local, peers)


def open_replicator(
    config: NodeConfig,
    blob_store: BlobStore,
    state_view: Callable[[], StateView],
    chain_id: bytes,
    database: ChainDatabase | None = None,
) -> Replicator | None:
    """A replicator for a node whose ciphertext lives in IPFS and which serves an organisation;
    None otherwise (a local blob store has no network to fetch from)."""
    section = config.records
    if section.blob_backend != "ipfs" or not config.node.organization_id:
        return None
    return Replicator(
        blob_store,
        config.node.organization_id,
        section.replicate,
        state_view,
        chain_id,
        config.limits.max_tx_bytes,
        placement=Placement(section.replication_factor, dict(section.replication_factor_by_type)),
        database=database,
        interval_ms=section.replication_interval_ms,
    )


def custodians_of(view: StateView, record: EmrRecord) -> tuple[str, ...]:
    """The record's custodians as its anchor named them (`docs/spec/records.md` §9); the
    author's organisation alone for a record anchored before custody sets existed."""
    custody = read_record_custody(view, record.record_id)
    return custody.organization_ids if custody is not None else (record.author_organization,)
