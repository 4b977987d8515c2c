"""The erasure queue against a real Kubo node that is down (issue 24, `records.md` §8).

A node's record service keeps a record in IPFS; the record is erased while the IPFS daemon is
killed: the deletion fails, stays queued in the vault, and survives a restart of the record
service (a node restart). Once the daemon is back, the queued erasure runs, unpins the blob and
leaves the queue. This node is no custodian on chain (empty state), so no receipt is due.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from emrchain.config.node import NodeConfig
from emrchain.mempool.admission import Admission
from emrchain.records import open_record_service
from emrchain.records.erasure import ErasureSettings, ErasureWorker
from emrchain.state.memory import MemoryState
from tests.records.homes import configure_home, single_node_home
from tests.records.test_hsm_wiring import sealed_data_key
from tests.services.fixtures import run

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
