"""The erasure queue against a real Kubo node and a real Redis that are down (issue 24,
`records.md` §8).

A node's record service keeps a record in IPFS; the record is erased while the IPFS daemon is
killed: the deletion fails, stays queued in the vault, and survives a restart of the record
service (a node restart). Once the daemon is back, the queued erasure runs, unpins the blob and
leaves the queue. The same for the Redis cache: a Redis that keeps its data across a restart
(append-only file) is killed during the erasure; the erasure stays queued (a cache delete that
fails is not "gone"), and once Redis is back with the entry, the retry deletes it. This node is
no custodian on chain (empty state), so no receipt is due.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from emrchain.config.node import NodeConfig
from emrchain.mempool.admission import Admission
from emrchain.records import open_record_service
from emrchain.records.erasure import ErasureSettings, ErasureWorker
from emrchain.schema import ErasureReason, RecordType, TxKind
from emrchain.state.emr.records import EmrRecord
from emrchain.state.emr.tables import write_record
from emrchain.state.memory import MemoryState
from emrchain.state.result import TxResult
from emrchain.state.view import OverlayStateView
from tests.core.txgen import build_tx
from tests.records.homes import configure_home, single_node_home
from tests.records.test_hsm_wiring import sealed_data_key
from tests.services.fixtures import RedisServer, require_service, run

REDIS_KEY_PREFIX = "emrchain:blob:"
SETTINGS = ErasureSettings(retry_initial_ms=100, retry_max_ms=1_000, batch=10)


def _no_receipt_due(txs: Sequence[bytes]) -> list[Admission]:
    raise AssertionError("a node that is no custodian posts no erasure receipt")


def _no_nonce_due(sender: bytes) -> tuple[int, int] | None:
    raise AssertionError("a node that is no custodian posts no erasure receipt")


def worker_for(config: NodeConfig) -> ErasureWorker:
    return ErasureWorker(
        open_record_service(config),
        MemoryState,
        _no_receipt_due,
        _no_nonce_due,
        b"emrchain-records",
        None,
        SETTINGS,
    )


def test_an_erasure_during_an_ipfs_outage_finishes_after_a_restart(
    ipfs_pair, tmp_path: Path
) -> None:
    daemon = ipfs_pair[0]
    home = single_node_home(tmp_path / "net")
    config = configure_home(home, records={"blob_backend": "ipfs", "ipfs_api_url": daemon.api_url})
    record_id, data_key = secrets.token_bytes(32), secrets.token_bytes(32)

    async def scenario() -> None:
        worker = worker_for(config)
        stored = await worker.records.store(
            record_id, secrets.token_bytes(5_000), sealed_data_key(home, data_key)
        )
        assert stored.cid in daemon.pins()
        daemon.kill()
        try:
            worker.enqueue(record_id, stored.cid_bytes)
            await worker.work_once()
            # The blob could not be deleted: the erasure stays queued, on disk.
            assert worker.records.vault.pending_erasures(10) == [(record_id, stored.cid)]
            await worker.records.close()
            worker = worker_for(config)  # as after a node restart
            assert worker.records.vault.pending_erasures(10) == [(record_id, stored.cid)]
        finally:
            daemon.start()
            daemon.connect(ipfs_pair[1])
        await worker.work_once()
        assert worker.records.vault.pending_erasures(10) == []
        assert worker.records.vault.get(record_id) is None
        assert stored.cid not in daemon.pins()
        await worker.records.close()

    run(scenario())


@pytest.fixture
def persistent_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis that writes every command to its append-only file: a killed server comes back
    with its entries, as a production Redis with persistence does."""
    require_service("redis")
    server = RedisServer(
        tmp_path_factory.mktemp("redis-aof"),
        arguments=("--appendonly", "yes", "--appendfsync", "always"),
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_an_erasure_during_a_redis_outage_stays_queued_until_the_entry_is_gone(
    persistent_redis: RedisServer, tmp_path: Path
) -> None:
    redis = persistent_redis
    home = single_node_home(tmp_path / "net")
    config = configure_home(
        home, records={"cache_backend": "redis", "redis_url": f"unix://{redis.unix_socket}"}
    )
    record_id, data_key = secrets.token_bytes(32), secrets.token_bytes(32)

    async def cached(cid: str) -> bytes | None:
        client = Redis(unix_socket_path=redis.unix_socket, socket_timeout=5)
        try:
            value = await client.get(REDIS_KEY_PREFIX + cid)
            return value if isinstance(value, bytes) else None
        finally:
            await client.aclose()

    async def scenario() -> None:
        worker = worker_for(config)
        ciphertext = secrets.token_bytes(5_000)
        stored = await worker.records.store(record_id, ciphertext, sealed_data_key(home, data_key))
        assert await cached(stored.cid) == ciphertext
        redis.kill()
        try:
            worker.enqueue(record_id, stored.cid_bytes)
            await worker.work_once()
            # The cache entry could not be deleted: the erasure is not done, it stays queued.
            assert worker.records.vault.pending_erasures(10) == [(record_id, stored.cid)]
        finally:
            redis.start()
        # Back from its append-only file with the entry: ignoring the failure would leave it.
        assert await cached(stored.cid) == ciphertext
        deadline = time.monotonic() + 30
        while worker.records.vault.pending_erasures(10):
            assert time.monotonic() < deadline, "the queued erasure was not retried"
            await worker.work_once()  # before the backoff ends it does nothing
            await asyncio.sleep(0.05)
        assert await cached(stored.cid) is None
        assert worker.records.vault.get(record_id) is None
        await worker.records.close()

    run(scenario())


def test_an_erasure_lost_in_a_crash_is_found_again_with_the_cid_of_its_anchor(
    tmp_path: Path,
) -> None:
    """kill -9 between the erasure's commit and its queue entry: at the next start the chain
    shows the record erased (its tombstone without a CID) and the vault still holds its custody
    copy. Reconciliation queues it with the CID of the applied anchor in the record's block
    (a refused anchor of the same record id before it in that block is not taken), and the
    erasure deletes the blob too, not only the vault entries."""
    home = single_node_home(tmp_path / "net")
    config = configure_home(home)
    record_id, data_key = secrets.token_bytes(32), secrets.token_bytes(32)
    ciphertext = secrets.token_bytes(5_000)
    chain_id = b"emrchain-records"

    async def scenario() -> None:
        worker = worker_for(config)
        stored = await worker.records.store(record_id, ciphertext, sealed_data_key(home, data_key))
        anchors = [
            build_tx(
                TxKind.ANCHOR_RECORD,
                {"record_id": record_id, "cid": b"\x01\x55refused"},
                chain_id=chain_id,
                nonce=1,
            ),
            build_tx(
                TxKind.ANCHOR_RECORD,
                {"record_id": record_id, "cid": stored.cid_bytes},
                chain_id=chain_id,
                nonce=2,
            ),
        ]
        results = [TxResult.make(60, "refused"), TxResult.make(0, "anchored")]
        record = EmrRecord(
            record_id,
            secrets.token_bytes(32),
            stored.ciphertext_sha256,
            stored.cid_bytes,
            RecordType.LAB_RESULT,
            len(ciphertext),
            secrets.token_bytes(32),
            "hospital-0",
            7,
            1,
        )
        state = OverlayStateView(MemoryState())
        write_record(state, record.erased(ErasureReason.PATIENT_REQUEST, bytes(32), 9, 2))
        worker.state_view = lambda: state
        # The block store: the anchoring block at the record's height (7), nothing else.
        worker.block_at = lambda height: (anchors, results) if height == 7 else None
        assert await worker.records.blob_store.has(stored.cid)
        assert worker.reconcile() == 1
        assert worker.records.vault.pending_erasures(10) == [(record_id, stored.cid)]
        await worker.work_once()
        assert worker.records.vault.pending_erasures(10) == []
        assert worker.records.vault.get(record_id) is None
        # The blob is gone too: without the anchor's CID only the vault entries would be.
        assert not await worker.records.blob_store.has(stored.cid)
        await worker.records.close()

    run(scenario())
