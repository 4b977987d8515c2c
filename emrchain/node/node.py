"""A validator or full node: wires store, application, mempool, consensus, P2P, block sync and RPC.

Startup handshake: open the store (initialising it from genesis the first time), check it is
consistent (`store.reconcile`), then join consensus at the height after the last committed
block from the double-sign guard's state and the consensus WAL — resuming our own round and
lock, and re-sending what we signed, if we crashed in the middle of that height
(docs/spec/consensus.md §4.4). Block and state are committed in one atomic batch, so there is never
a decided-but-half-applied block to replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path

from emrchain import _core
from emrchain.analytics.worker import StudyWorker
from emrchain.backup.service import BackupService, admin_socket_path
from emrchain.config.genesis import Genesis, load_config_and_genesis
from emrchain.config.node import NodeConfig, StorageSection
from emrchain.consensus.config import ConsensusConfig
from emrchain.consensus.state_machine import TendermintCore
from emrchain.hsm.node_keys import validator_signer
from emrchain.keystore.file import load_key_file
from emrchain.mempool import Mempool, MempoolConfig
from emrchain.node import messages
from emrchain.node.admission import AdmissionLimits, AdmissionPipeline
from emrchain.node.blocksync import BlockSync, SyncLimits
from emrchain.node.chain import Chain, ChainHaltError
from emrchain.node.consensus_driver import ConsensusDriver, DriverLimits
from emrchain.node.evidence_pool import EvidencePool
from emrchain.node.log_context import consensus_log_context
from emrchain.node.metrics import CommitMetrics
from emrchain.node.rpc_view import NodeRpcView
from emrchain.node.wiring import (
    RuntimeIntervals,
    build,
    p2p_config,
)
from emrchain.p2p import Misbehaviour, PeerManager
from emrchain.records import open_record_service
from emrchain.records.erasure import open_erasure_worker
from emrchain.records.notifications import NotificationSetupError, open_notifier
from emrchain.records.replication import open_replicator
from emrchain.records.rotation import RotationProgress
from emrchain.rpc.commit_waits import CommitWaits
from emrchain.rpc.connections import FileLimitError
from emrchain.rpc.instrumentation import InstrumentationServer
from emrchain.rpc.server import RpcServer
from emrchain.state.emr import EmrApplication, GenesisAdmin, GenesisOrganization
from emrchain.state.emr.sender_admission import SenderAdmission
from emrchain.state.peers import PeerDirectory, peer_directory
from emrchain.state.progress import executed_height
from emrchain.state.result import TxResult
from emrchain.statesync.join import JoinSettings, StateSyncError, StateSyncJoin
from emrchain.statesync.messages import StateSyncMessage
from emrchain.statesync.service import SnapshotService, SnapshotSettings
from emrchain.statesync.snapshots import SNAPSHOTS_DIRECTORY, SnapshotStore
from emrchain.storage.vault import LevelDbKeyVault
from emrchain.store import (
    BlockStore,
    ChainDatabase,
    ConsensusWal,
    DatabaseOptions,
    SigningStateStore,
    StoreError,
    StoreLockedError,
    reconcile,
)
from emrchain.store.absence import AbsenceFilter
from emrchain.store.database import database_path
from emrchain.store.pruning import Pruner, PruneSettings, lagging_peer_floor
from emrchain.store.state_cache import StateCache
from emrchain.throttled_log import ThrottledLog
from emrchain.types import DecodeError, Evidence
from emrchain.types.evidence import FORGED
from emrchain.types.limits import MAX_GOSSIP_TXS

logger = logging.getLogger(__name__)


class NodeStartError(RuntimeError):
    """The node cannot start; the message says why and what to do."""


EVIDENCE_LOG_INTERVAL_S = 10.0
"""At most one line per interval about evidence the pool refused (peers can send it freely)."""
GC_GENERATION0_THRESHOLD = 50_000
"""Container allocations between young-generation collections (CPython's default is 700)."""


def tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic-GC passes for a long-running node.

    Admission, gossip and execution allocate several container objects per transaction; with
    the default thresholds that meant hundreds of young collections and several full ones per
    second under load, each full one walking every pending transaction and seen-cache entry.
    Startup objects (modules, config, validator sets) are frozen out of collection, and the
    young generation is collected every 50,000 allocations instead of 700. Reference counting
    still frees almost everything at once; this only changes when cycles are looked for, so it
    has no effect on what the node computes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GENERATION0_THRESHOLD, 20, 100)


def _absence_filter(storage: StorageSection) -> AbsenceFilter | None:
    """The filter over anchored record ids (`store/absence.py`), or None when configured off."""
    size = storage.absence_filter_bytes
    if not size:
        return None
    return AbsenceFilter(1 << (size.bit_length() - 1), EmrApplication.ABSENCE_FILTERED_PREFIXES)


def _state_cache(storage: StorageSection) -> StateCache | None:
    """The cache of committed state values (`store/state_cache.py`), or None when off."""
    entries = storage.state_cache_entries
    return StateCache(entries) if entries else None


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    """One validator process. Create with `Node.open(home)`, then `await run()`."""

    def __init__(self, config: NodeConfig, genesis: Genesis, database: ChainDatabase) -> None:
        self.config = config
        self.genesis = genesis
        self.chain_id = genesis.chain_id_bytes
        self.intervals = build(RuntimeIntervals, config)
        self._database = database
        # A key file, or the HSM's non-extractable key ([keys] backend); the double-sign
        # guard (SigningStateStore in the driver) sits in front of either.
        self.validator_key = validator_signer(config)
        self.node_key = load_key_file(config.node_key_path)
        limits = config.limits
        self.store = BlockStore(
            database,
            limits,
            _absence_filter(config.storage),
            _state_cache(config.storage),
            undo_heights=config.storage.undo_heights,
        )
        self.application = EmrApplication(self.chain_id, self.store.state_view(), limits=limits)
        self._initialize_store_if_new()
        status = reconcile(self.store, application_height=executed_height)
        if not status.consistent:
            raise NodeStartError(f"store is inconsistent: {status.describe()}")
        self.admission = AdmissionPipeline(build(AdmissionLimits, config))
        # Block space only for those who may sign: members, validators for VALIDATOR_UPDATE
        # (docs/spec/state.md §6); every admission path (RPC, gossip, reads) goes through it.
        self.sender_admission = SenderAdmission(
            self.store.state_view,
            self.store.last_height,
            lambda height: self.chain.validator_set(height),
            lambda sender: self.mempool.last_pending(sender),
        )
        self.mempool = Mempool(
            build(MempoolConfig, config),
            self.chain_id,
            committed_nonce=lambda sender: self.chain.committed_nonce(sender),
            stateful_check=self.sender_admission,
            verify_transactions=self.admission.verify_hook,
        )
        self.admission.attach(self.mempool)
        self.chain = Chain(
            self.chain_id,
            self.store,
            self.application,
            self.mempool,
            limits,
            wall_clock_ms,
            self.sender_admission,
            config.consensus.max_clock_drift_ms,
        )
        # Verified evidence waiting for our blocks, persisted (docs/spec/consensus.md §1.4).
        self.evidence_pool = EvidencePool(database, self.chain, config.consensus.max_evidence_kept)
        self.chain.pending_evidence = self.evidence_pool.for_block
        self.chain.commit_listeners.append(
            lambda block, _ids, _results: self.evidence_pool.on_commit(block)
        )
        self._evidence_refusals = ThrottledLog(logger, EVIDENCE_LOG_INTERVAL_S)
        self.evidence_pool.listeners.append(
            lambda item: self._broadcast(messages.EvidenceMessage(item))
        )
        # The allowed peers follow committed state: validators of the next two heights and
        # registered full nodes (docs/spec/p2p.md §4.1), recomputed after every commit.
        self._genesis_node_keys = {v.public_key: v.node_key for v in genesis.validators}
        self.p2p = PeerManager(
            p2p_config(config),
            self.node_key,
            self.chain_id,
            self._peer_directory().allowed_keys,
            on_peer_connected=self._on_peer_connected,
            on_peer_disconnected=self._on_peer_disconnected,
        )
        self.chain.commit_listeners.append(lambda _block, _ids, _results: self._follow_peers())
        self.records = open_record_service(config)
        # Backups over the admin socket and on the [backup] schedule (docs/spec/backup.md).
        vault = self.records.vault
        self.backups = BackupService(
            config, database, vault.snapshot if isinstance(vault, LevelDbKeyVault) else None
        )
        # Committed erasures go to a durable queue worked until every copy here is gone and
        # this custodian's receipt is on chain (records.md §9).
        self.erasure = open_erasure_worker(
            config,
            self.records,
            self.store.state_view,
            self.mempool.admit_batch,
            self.mempool.pending_nonces,
            self.chain_id,
        )
        self.chain.erasure_listeners.append(self.erasure.enqueue)
        # After the erasure listeners of each block: the vault's cursor passes it. Blocks
        # committed above the cursor (a crash before their queue entries) are scanned now,
        # before any block can be applied.
        self.erasure.block_at = self._block_and_results
        self.chain.commit_listeners.append(self.erasure.on_commit)
        self.erasure.follow_chain(self.chain.height)
        # Pins the CIDs of records this organisation authored or was granted, in the background.
        self.replicator = open_replicator(
            config, self.records.blob_store, self.store.state_view, self.chain_id, database
        )
        if self.replicator is not None:
            self.chain.commit_listeners.append(self.replicator.on_commit)
        # Review events (break-glass opened, review closed) to the configured webhooks, from
        # each destination's cursor in the vault (records.md §12).
        try:
            self.notifier = open_notifier(
                config,
                self.records.vault,
                self.store.state_view,
                self._block_and_results,
                lambda: self.chain.height,
            )
        except NotificationSetupError as error:
            raise NodeStartError(str(error)) from None
        if self.notifier is not None:
            self.chain.commit_listeners.append(self.notifier.on_commit)
        # Local noisy contributions to the studies this organisation takes part in
        # (docs/spec/analytics.md §4); only a node serving an organisation has records to read.
        self.study_worker: StudyWorker | None = None
        if config.analytics.enabled and self.records.organization_key is not None:
            self.study_worker = StudyWorker(
                self.records, self.store.state_view, self.chain_id, config.analytics
            )
            self.chain.commit_listeners.append(self.study_worker.on_commit)
        # Reads wait here for their access event's commit (served implies recorded).
        self.commit_waits = CommitWaits(config.records.max_reads_waiting)
        self.chain.commit_listeners.append(self.commit_waits.on_commit)
        self.chain.drop_listeners.append(self.commit_waits.on_dropped)
        # POST /txs?wait=commit waits here (docs/spec/rpc.md §Acknowledgements).
        self.submit_waits = CommitWaits(config.rpc.max_txs_waiting_for_commit, shared=True)
        self.chain.commit_listeners.append(self.submit_waits.on_commit)
        self.chain.drop_listeners.append(self.submit_waits.on_dropped)
        self.rotation_finished: RotationProgress | None = None
        """The KEK rotation this run finished in the background, if any."""
        view = NodeRpcView(self)
        self.rpc = RpcServer(view)
        self.instrumentation = (
            InstrumentationServer(view, config.instrumentation)
            if config.instrumentation.enabled
            else None
        )
        self.chain.commit_listeners.append(
            CommitMetrics(self.store.commit, self.chain.validator_set, time.monotonic).on_commit
        )
        self.driver: ConsensusDriver | None = None
        # Snapshots for joining nodes, built in the background (docs/spec/statesync.md).
        self.snapshots = SnapshotService(
            build(SnapshotSettings, config),
            SnapshotStore(
                database_path(config.home).parent / SNAPSHOTS_DIRECTORY,
                config.statesync.snapshot_keep,
                limits,
            ),
            self.store,
            self.chain_id,
            self.validator_key,
            self._send_to,
        )
        self.chain.commit_listeners.append(
            lambda block, _ids, _results: self.snapshots.on_commit(block.height)
        )
        self.blocksync = BlockSync(
            self.chain,
            self._send_to,
            self._on_synced,
            self.p2p.report_misbehaviour,
            build(SyncLimits, config),
            # Synced blocks are applied one per loop turn: votes and RPC go on in between; none
            # is started once the node is stopping (a full window would delay the exit).
            lambda step: (
                None
                if self._stop.is_set()
                else asyncio.get_running_loop().call_soon(self._guarded, step)
            ),
        )
        self.pruner = self._open_pruner()
        self.pruner.protect_snapshots(self.snapshots.latest_snapshot_height)
        self._gossip_cursors: dict[str, int] = {}
        self._gossip_snapshots: dict[str, int] = {}
        """Per peer connected since, the pool's latest sequence at its connection: everything
        up to it is sent to the peer whatever its origin (`Mempool.gossip_batch`)."""
        self._gossip_inbox: asyncio.Queue[tuple[str, tuple[bytes, ...]]] = asyncio.Queue(
            maxsize=self.intervals.max_queued_gossip_batches
        )
        self.gossip_batches_dropped = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.halt_reason: str | None = None
        self.undecodable_messages = 0

    @classmethod
    def open(cls, home: Path | str) -> Node:
        """Open the home's node; NodeStartError (one line, `emrchain start` prints it) for a
        home another process runs, or a database it cannot use."""
        config, genesis = load_config_and_genesis(Path(home))
        try:
            database = ChainDatabase.open(config.home, build(DatabaseOptions, config))
        except StoreLockedError:
            raise NodeStartError(
                f"{config.home}: another emrchain node is running with this home (its database "
                f"{database_path(config.home)} is locked); stop that node first"
            ) from None
        except StoreError as error:
            raise NodeStartError(str(error)) from None
        try:
            return cls(config, genesis, database)
        except StoreError as error:
            database.close()
            raise NodeStartError(str(error)) from None
        except BaseException:
            database.close()
            raise

    def _initialize_store_if_new(self) -> None:
        if self.store.is_initialized():
            if self.store.chain_id != self.chain_id:
                stored = (self.store.chain_id or b"").decode(errors="replace")
                raise NodeStartError(
                    f"the data directory holds chain {stored!r}, genesis says "
                    f"{self.chain_id.decode(errors='replace')!r}: run `emrchain unsafe-reset-all` "
                    "to start over"
                )
            return
        validators = self.genesis.validator_set()
        organizations = [
            GenesisOrganization(
                organization.organization_id,
                organization.name,
                organization.encryption_key,
                admins=tuple(
                    GenesisAdmin(admin.member_key, admin.encryption_key)
                    for admin in organization.admins
                ),
            )
            for organization in self.genesis.organizations
        ]
        result = self.application.init_chain(
            validators,
            self.genesis.genesis_time_ms,
            organizations=organizations,
            custody_set_size=self.genesis.custody_set_size,
        )
        self.store.initialize(self.chain_id, validators, result)
        logger.info("initialised chain %s from genesis", self.chain_id.decode())

    # ------------------------------------------------------------------- running

    async def run(self) -> None:
        """Serve until `request_stop()` (SIGTERM/SIGINT) or a halt; then shut down cleanly."""
        tune_garbage_collector()
        try:
            await self._listen()
        except NodeStartError:
            await self.shutdown()  # what did start, and the database: its lock is released
            raise
        self.driver = ConsensusDriver(
            TendermintCore(build(ConsensusConfig, self.config), self.validator_key.public_key),
            self.chain,
            self.validator_key,
            SigningStateStore(self._database),
            ConsensusWal.open(self.config.home),
            self._broadcast,
            self._relay,
            build(DriverLimits, self.config),
            report_peer=self.p2p.report_misbehaviour,
        )
        self.mempool.on_admitted = self.driver.txs_available
        self.driver.evidence_listeners.append(self._admit_evidence)
        # A node whose validator key is not in the set is a full node: it syncs and follows
        # commits and never votes, until a VALIDATOR_UPDATE adds its key (state.md §4.2).
        voting = self.validator_key.public_key in self.chain.validator_set(self.chain.height + 1)
        logger.info(
            "node %s (%s %s) starting at height %d; core %s",
            self.p2p.node_id[:16],
            "validator" if voting else "full node; validator key not in the set:",
            self.validator_key.public_key.hex()[:16],
            self.chain.height + 1,
            _core.IMPLEMENTATION,
        )
        self.driver.guard = self._guarded
        self._guarded(self.driver.resume, self.chain.height + 1)
        self._tasks = [
            asyncio.create_task(self._receive_loop()),
            asyncio.create_task(self._gossip_loop()),
            asyncio.create_task(self._gossip_admission_loop()),
            asyncio.create_task(self._status_loop()),
            # A KEK rotation left unfinished (begun offline, or cut short) ends here, online.
            asyncio.create_task(self._finish_unfinished_rotation()),
            asyncio.create_task(self.erasure.run()),
            asyncio.create_task(self.backups.run_schedule()),
        ]
        if self.notifier is not None:
            self._tasks.append(asyncio.create_task(self.notifier.run()))
        if self.config.storage.retain_blocks:
            self._tasks.append(asyncio.create_task(self.pruner.run()))
        if self.study_worker is not None:
            self._tasks.append(asyncio.create_task(self.study_worker.run()))
        if self.replicator is not None:
            self.replicator.start()  # reconciles pins with the chain now and periodically
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    async def _listen(self) -> None:
        """Start the P2P, RPC and instrumentation listeners (and the admission pipeline). One
        that cannot listen is a NodeStartError naming its setting."""
        config = self.config
        await _listening("[p2p] listen_address", config.p2p.listen_address, self.p2p.start())
        self._follow_peers()
        self.admission.start()
        await _listening("[rpc] listen_address", config.rpc.listen_address, self.rpc.start())
        await _listening("admin socket", admin_socket_path(config), self.backups.start())
        if self.instrumentation is not None:
            await _listening(
                "[instrumentation] listen_address",
                config.instrumentation.listen_address,
                self.instrumentation.start(),
            )

    async def _finish_unfinished_rotation(self) -> None:
        final = await self.records.finish_unfinished_rotation()
        if final is not None:
            self.rotation_finished = final

    def _open_pruner(self) -> Pruner:
        """The background pruner of `[storage] retain_blocks`, with every reader of old blocks
        as a protection (docs/spec/pruning.md). The state-sync snapshot protection is added
        by `Pruner.protect_snapshots` where the snapshot service is wired."""
        settings = build(PruneSettings, self.config)
        pruner = Pruner(self.store, settings)
        pruner.protect(
            "lagging_peer",
            lambda: lagging_peer_floor(
                self.store.last_height(),
                self.blocksync.peers.lowest_claim(),
                settings.prune_peer_lag_max_blocks,
            ),
        )
        pruner.protect("erasure_cursor", self._erasure_cursor_floor)
        return pruner

    def _erasure_cursor_floor(self) -> int | None:
        """The erasure worker scans the blocks above its cursor at the next start."""
        cursor = self.records.vault.erasure_cursor()
        return None if cursor is None else cursor + 1

    def _block_and_results(self, height: int) -> tuple[Sequence[bytes], list[TxResult]] | None:
        block = self.store.block(height)
        results = self.store.tx_results(height)
        return None if block is None or results is None else (block.txs, results)

    def consensus_position(self) -> tuple[int, int] | None:
        """(height, round) consensus is at, for log lines; None before it started."""
        driver = self.driver
        if driver is None:
            return None
        state = driver.consensus_state()
        return state.height, state.round

    @property
    def erasures_in_flight(self) -> int:
        """Erasures in the durable queue (up to `[records] erasure_batch`)."""
        return self.erasure.pending()

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        if self.driver is not None:
            self.driver.stop()
            await self.driver.wait_applied()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Nothing commits here any more: requests waiting for a commit answer now.
        self.commit_waits.close()
        self.submit_waits.close()
        await self.rpc.close()
        await self.backups.close()
        if self.instrumentation is not None:
            await self.instrumentation.close()
        if self.replicator is not None:
            await self.replicator.close()
        await self.records.close()
        await self.admission.stop()
        await self.p2p.close()
        self.snapshots.close()
        self.chain.close()
        self.pruner.close()  # a batch in progress ends before the database closes
        self._database.close()
        logger.info("node stopped")

    def _guarded(self, function, *arguments) -> None:
        """Run a state-changing step. A chain halt stops the node with its reason; so does any
        unexpected exception (a bug): limping on after a half-done step could diverge, and a
        dead task would leave the node silently stuck."""
        try:
            function(*arguments)
        except ChainHaltError as error:
            self._halt(str(error))
        except Exception as error:
            logger.exception("unexpected failure in %s", getattr(function, "__name__", function))
            self._halt(f"internal error in {getattr(function, '__name__', function)}: {error!r}")

    def _halt(self, reason: str) -> None:
        self.halt_reason = reason
        logger.critical("HALT: %s", reason)
        self._stop.set()

    # ------------------------------------------------------------------- network

    def _broadcast(self, message: messages.Message) -> None:
        channel, payload = messages.encode(message)
        self.p2p.broadcast(channel, payload)

    def _admit_evidence(self, item: Evidence, peer_id: str | None = None) -> None:
        """Evidence we detected or a peer (`peer_id`) gossiped: into the pool, which gossips it
        if new. A forged item costs the peer its score; a stale or already committed one does
        not (the peer may lag behind). Refusals are logged at most once per interval."""
        reason = self.evidence_pool.add(item)
        if reason is None:
            return
        if peer_id is not None and reason.endswith(FORGED):
            self.p2p.report_misbehaviour(peer_id, Misbehaviour.INVALID_SIGNATURE)
        self._evidence_refusals.warning(
            "evidence against %s not kept: %s", item.validator.hex()[:16], reason
        )

    def _relay(self, message: messages.Message, source: object) -> None:
        """Send to every connected peer except `source` (the peer we had it from)."""
        channel, payload = messages.encode(message)
        for peer_id in self.p2p.connected_peers():
            if peer_id != source:
                self.p2p.send(peer_id, channel, payload)

    def _send_to(self, peer_id: str, message: messages.Message) -> bool:
        channel, payload = messages.encode(message)
        return self.p2p.send(peer_id, channel, payload)

    def _peer_directory(self) -> PeerDirectory:
        return peer_directory(self.store.state_view(), self._genesis_node_keys)

    def _follow_peers(self) -> None:
        """Allowed peers and their advertised addresses, as committed state now says."""
        directory = self._peer_directory()
        self.p2p.set_allowed_peer_keys(directory.allowed_keys)
        self.p2p.set_advertised_addresses(directory.addresses)

    def _on_peer_connected(self, peer_id: str) -> None:
        self._gossip_cursors[peer_id] = 0
        self._gossip_snapshots[peer_id] = self.mempool.latest_sequence
        self._send_to(peer_id, self.blocksync.status())
        if self.driver is not None:
            for message in self.driver.own_messages():
                self._send_to(peer_id, message)

    def _on_peer_disconnected(self, peer_id: str, reason: str) -> None:
        self._gossip_cursors.pop(peer_id, None)
        self._gossip_snapshots.pop(peer_id, None)
        self.blocksync.forget_peer(peer_id)

    def _on_synced(self, height: int) -> None:
        if self.driver is not None and self.driver.height <= height:
            self.driver.start_height(height + 1)

    async def _receive_loop(self) -> None:
        limits = self.config.limits
        async for received in self.p2p.messages():
            try:
                message = messages.decode(
                    received.channel, received.payload, limits, MAX_GOSSIP_TXS
                )
            except DecodeError as error:
                self.undecodable_messages += 1
                self.p2p.report_misbehaviour(received.peer_id, Misbehaviour.PROTOCOL_VIOLATION)
                logger.warning(
                    "undecodable message from %s: %s",
                    received.peer_id[:16],
                    error,
                    extra={"peer": received.peer_id},
                )
                continue
            if isinstance(message, messages.TxsMessage):
                # Never wait for admission here: votes and proposals queue behind this loop,
                # and a height stalled behind a verification backlog (measured: heights with
                # no commit for seconds under load). A gossip batch that finds the inbox full
                # is dropped and counted; its transactions stay in their origin's mempool.
                try:
                    self._gossip_inbox.put_nowait((received.peer_id, message.txs))
                except asyncio.QueueFull:
                    self.gossip_batches_dropped += 1
                continue
            self._guarded(self._handle, received.peer_id, message)

    def _handle(self, peer_id: str, message: messages.Message) -> None:
        driver = self.driver
        if isinstance(message, messages.ProposalMessage) and driver:
            driver.on_proposal(message, peer_id)
        elif isinstance(message, messages.VoteMessage) and driver:
            driver.on_vote(message, peer_id)
        elif isinstance(message, messages.EvidenceMessage):
            self._admit_evidence(message.evidence, peer_id)
        elif isinstance(message, messages.StatusMessage):
            self.blocksync.on_status(peer_id, message)
        elif isinstance(message, messages.BlockRequest):
            self.blocksync.on_request(peer_id, message)
        elif isinstance(message, messages.BlockResponse):
            self.blocksync.on_response(peer_id, message)
        elif isinstance(message, StateSyncMessage):
            self.snapshots.on_message(peer_id, message)
        elif isinstance(message, messages.BlockPruned):
            self.blocksync.on_pruned(peer_id, message)

    async def _gossip_admission_loop(self) -> None:
        """Admit peers' gossip batches in arrival order, through the admission pipeline."""
        step = self.mempool.config.max_batch_txs
        while True:
            peer_id, txs = await self._gossip_inbox.get()
            # A peer's batch may exceed our admission batch limit (its max_gossip_txs is not
            # our max_batch_txs): admit it in chunks, in order.
            for start in range(0, len(txs), step):
                await self.admission.enqueue(list(txs[start : start + step]), origin=peer_id)

    async def _gossip_loop(self) -> None:
        intervals = self.intervals
        local_only = not intervals.relay_peer_txs
        while True:
            await asyncio.sleep(intervals.gossip_interval_ms / 1000)
            # Local-only batches do not depend on the peer: peers at the same cursor get the
            # same batch, encoded once per tick.
            by_cursor: dict[int, tuple[int, messages.Channel, bytes]] = {}
            for peer_id, cursor in list(self._gossip_cursors.items()):
                snapshot = self._gossip_snapshot(peer_id, cursor)
                shared = local_only and not snapshot  # a connection snapshot is the peer's own
                known = by_cursor.get(cursor) if shared else None
                if known is None:
                    txs, next_cursor = self.mempool.gossip_batch(
                        cursor,
                        intervals.max_gossip_txs,
                        intervals.max_gossip_bytes,
                        peer=peer_id,
                        local_only=local_only,
                        relay_all_through=snapshot,
                    )
                    if not txs:
                        self._gossip_cursors[peer_id] = next_cursor
                        self._gossip_snapshots.pop(peer_id, None)  # nothing left of it to send
                        continue
                    channel, payload = messages.encode(messages.TxsMessage(tuple(txs)))
                    known = (next_cursor, channel, payload)
                    if shared:
                        by_cursor[cursor] = known
                next_cursor, channel, payload = known
                if self.p2p.send(peer_id, channel, payload):
                    self._gossip_cursors[peer_id] = next_cursor

    def _gossip_snapshot(self, peer_id: str, cursor: int) -> int:
        """The sequence through which `peer_id` still gets every pending transaction (0: its
        connection snapshot is sent). Paced like all gossip: one batch per peer per tick."""
        through = self._gossip_snapshots.get(peer_id, 0)
        if through and cursor >= through:
            del self._gossip_snapshots[peer_id]
            return 0
        return through

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.intervals.status_interval_ms / 1000)
            self._broadcast(self.blocksync.status())
            self._guarded(self.blocksync.tick)
            if self.driver is not None:
                # Stuck for a whole interval: the runtime resends our messages of this height,
                # in case a peer missed them (dropped from a full queue, or connected since).
                self._guarded(self.driver.tick)


async def _listening(key: str, address: object, start: Awaitable[None]) -> None:
    """Await a listener's `start`; its refusal (address in use, open-file limit) as one line."""
    try:
        await start
    except FileLimitError as error:
        raise NodeStartError(str(error)) from None
    except OSError as error:
        # asyncio words a bind failure its own way; the errno says it plainly.
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise NodeStartError(f"{key} {address}: cannot listen ({reason})") from None


async def join_by_state_sync(home: Path | str) -> None:
    """With `[statesync] enable` and an empty store: restore the newest vouched snapshot from
    the genesis validators (our persistent peers) before the node opens; it then block-syncs
    from the snapshot's height + 1 (docs/spec/statesync.md §3). NodeStartError if it cannot."""
    config, genesis = load_config_and_genesis(Path(home))
    if not config.statesync.enable:
        return
    try:
        database = ChainDatabase.open(config.home, build(DatabaseOptions, config))
    except StoreError as error:
        raise NodeStartError(str(error)) from None
    try:
        store = BlockStore(database, config.limits)
        if store.is_initialized():
            return
        p2p = PeerManager(
            p2p_config(config),
            load_key_file(config.node_key_path),
            genesis.chain_id_bytes,
            [validator.node_key for validator in genesis.validators],
        )
        await _listening("[p2p] listen_address", config.p2p.listen_address, p2p.start())
        try:
            join = StateSyncJoin(
                build(JoinSettings, config),
                p2p,
                store,
                genesis.chain_id_bytes,
                genesis.validator_set(),
            )
            report = await join.run(database_path(config.home).parent)
        except StateSyncError as error:
            raise NodeStartError(f"state sync: {error}") from None
        finally:
            await p2p.close()
        logger.info(
            "state sync: joined at height %d in %.2f s (%d chunks, %d entries)",
            report.height,
            report.seconds,
            report.chunks,
            report.entries,
        )
    finally:
        database.close()


async def run_node(home: Path | str) -> Node:
    """Open and run a node until it is asked to stop (used by `emrchain start`)."""
    import signal

    await join_by_state_sync(home)
    node = Node.open(home)
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal_number, node.request_stop)
    with consensus_log_context(node.consensus_position):
        await node.run()
    return node
