"""A running node as its RPC sees it: the node's side of `emrchain.rpc.node_view.NodeView`.

The RPC gets this object, never the node, so the routes can only reach what the view offers;
everything that knows how the node is put together (its driver, mempool, admission pipeline,
peer manager, store) stays here, in the node package.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emrchain.records.replication import replication_gauges, replication_json
from emrchain.rpc.node_view import (
    ChainReader,
    CommitListener,
    ConsensusPosition,
    DependencyStatus,
    EvidenceReport,
    NodeCounters,
    NodeStatus,
    OperationsSnapshot,
)
from emrchain.state.emr.reviews import open_review_count
from emrchain.storage.failover import FailoverBlobStore
from emrchain.storage.ipfs import IpfsBlobStore
from emrchain.storage.redis_cache import RedisCache

if TYPE_CHECKING:
    from emrchain.analytics.worker import Contribution
    from emrchain.config.node import NodeConfig
    from emrchain.mempool import Admission
    from emrchain.node.node import Node
    from emrchain.records.service import RecordService
    from emrchain.rpc.commit_waits import CommitWaits


class NodeRpcView:
    """Implements `NodeView` over one node."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def config(self) -> NodeConfig:
        return self._node.config

    @property
    def chain_id(self) -> bytes:
        return self._node.chain_id

    @property
    def node_public_key(self) -> bytes:
        return self._node.node_key.public_key

    @property
    def height(self) -> int:
        return self._node.chain.height

    @property
    def halt_reason(self) -> str | None:
        return self._node.halt_reason

    @property
    def chain(self) -> ChainReader:
        return self._node.store

    @property
    def records(self) -> RecordService:
        return self._node.records

    @property
    def commit_waits(self) -> CommitWaits:
        return self._node.commit_waits

    @property
    def submit_waits(self) -> CommitWaits:
        return self._node.submit_waits

    async def admit(self, txs: list[bytes]) -> list[Admission]:
        return await self._node.admission.admit(txs)

    def admit_now(self, txs: Sequence[bytes]) -> list[Admission]:
        return self._node.mempool.admit_batch(txs)

    def is_pending(self, tx_id: bytes) -> bool:
        return tx_id in self._node.mempool

    def pending_nonces(self, sender: bytes) -> tuple[int, int] | None:
        return self._node.mempool.pending_nonces(sender)

    def add_commit_listener(self, listener: CommitListener) -> None:
        self._node.chain.commit_listeners.append(listener)

    def evidence(self) -> EvidenceReport:
        pool = self._node.evidence_pool
        return EvidenceReport(pool.committed(), pool.pending())

    def status(self) -> NodeStatus:
        node = self._node
        driver = node.driver
        state = driver.consensus_state() if driver is not None else None
        store = node.store
        cache, absence = store.state_cache, store.absence_filter
        return NodeStatus(
            node_id=node.p2p.node_id,
            validator=node.validator_key.public_key,
            latest_block_id=store.last_block_id() if node.chain.height else None,
            latest_app_hash=store.last_app_hash(),
            consensus=ConsensusPosition(state.height, state.round, state.step.name)
            if state is not None
            else None,
            peers=node.p2p.connected_peers(),
            p2p=node.p2p.standing(),
            evidence=[item.encode() for item in driver.evidence] if driver is not None else [],
            refused_signatures=driver.refused_signatures if driver is not None else 0,
            blocks_synced=node.blocksync.blocks_synced,
            sync=node.blocksync.counters(),
            mempool=node.mempool.stats(),
            counters=NodeCounters(
                preverified_txs=node.admission.preverified_txs,
                gossip_batches_dropped=node.gossip_batches_dropped,
                undecodable_messages=node.undecodable_messages,
                state_cache_hits=cache.hits if cache is not None else 0,
                state_cache_misses=cache.misses if cache is not None else 0,
                state_cache_entries=len(cache) if cache is not None else 0,
                absence_filter_keys=absence.keys_added if absence is not None else 0,
            ),
        )

    def replication(self) -> dict[str, Any]:
        node = self._node
        return replication_json(node.config, node.replicator, node.records.blob_store)

    def study_contribution(self, study_id: bytes, query_id: bytes) -> Contribution | None:
        worker = self._node.study_worker
        return None if worker is None else worker.contribution(study_id, query_id)

    def operations(self) -> OperationsSnapshot:
        node = self._node
        validators = len(node.chain.validator_set(node.chain.height + 1).validators)
        replicator = node.replicator
        notifier = node.notifier
        disk = shutil.disk_usage(node.config.data_path)
        return OperationsSnapshot(
            validators=validators,
            peers_needed_for_quorum=peers_needed_for_quorum(validators),
            best_peer_height=node.blocksync.peers.vouched_claim(liars=(validators - 1) // 3),
            p2p=node.p2p.stats(),
            evidence_committed=node.evidence_pool.committed_count(),
            evidence_pending=node.evidence_pool.pending_count(),
            replication_queued=replicator.backlog if replicator is not None else 0,
            replication_counters=dataclasses.asdict(replicator.counters)
            if replicator is not None
            else {},
            erasures_in_flight=node.erasures_in_flight,
            reviews_open=open_review_count(node.store.state_view()),
            notifications_delivered=notifier.counters.delivered if notifier else 0,
            notifications_failed=notifier.counters.failed if notifier else 0,
            data_bytes=directory_bytes(node.config.data_path),
            disk_free_bytes=disk.free,
            disk_total_bytes=disk.total,
            **replication_gauges(replicator, node.records.blob_store),
        )

    async def probe_dependencies(self, timeout_s: float) -> list[DependencyStatus]:
        records = self._node.records
        probes: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        if isinstance(records.cache, RedisCache):
            probes.append(("redis", records.cache.ping))
        local_store = (
            records.blob_store.local
            if isinstance(records.blob_store, FailoverBlobStore)
            else records.blob_store
        )
        if isinstance(local_store, IpfsBlobStore):
            probes.append(("ipfs", local_store.version))
        if self._node.config.records.kek_backend == "hsm":
            key_ring = records.key_ring
            # A worker round trip through the token; the call blocks, so off the loop.
            probes.append(("hsm", lambda: asyncio.to_thread(key_ring.versions)))
        return list(await asyncio.gather(*(_probe(name, call, timeout_s) for name, call in probes)))


def peers_needed_for_quorum(validators: int) -> int:
    """Peers a validator needs so that, with itself, more than 2/3 of `validators` vote."""
    quorum = validators * 2 // 3 + 1
    return max(quorum - 1, 0)


def directory_bytes(root: Path) -> int:
    """Total size of the regular files under `root` (a LevelDB holds few, large files)."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:  # deleted by a compaction meanwhile
                continue
    return total


async def _probe(
    name: str, call: Callable[[], Awaitable[object]], timeout_s: float
) -> DependencyStatus:
    try:
        async with asyncio.timeout(timeout_s):
            await call()
    except TimeoutError:
        return DependencyStatus(name, False, f"no answer within {timeout_s:g} s")
    except Exception as error:
        return DependencyStatus(name, False, f"{type(error).__name__}: {error}"[:200])
    return DependencyStatus(name, True, "reachable")
