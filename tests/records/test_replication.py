"""Replication between two real IPFS nodes on loopback, through the node's `Replicator`.

Hospital A's node adds a record to its IPFS node; hospital B's replicator pins the CID on B's
IPFS node (fetching the blocks over the swarm); B then serves the record by itself, even with
A's IPFS node killed. A CID nobody has makes the pin fail for good after its bounded retries,
without blocking anything else. A pin whose record was erased meanwhile is not kept.
"""

from __future__ import annotations

import hashlib
import secrets

from emrchain.records.replication import AUTHORED_AND_GRANTED, PinLimits, Replicator
from emrchain.schema import ErasureReason, RecordType
from emrchain.state import keys
from emrchain.state.emr.records import EmrRecord
from emrchain.state.memory import MemoryState
from emrchain.state.view import OverlayStateView
from emrchain.storage.cid import compute_cid
from emrchain.storage.ipfs import IpfsBlobStore
from tests.services.fixtures import run


def blob_store(api_url: str) -> IpfsBlobStore:
    return IpfsBlobStore(api_url, timeout_ms=5_000, node_lookup_timeout_ms=2_000, retries=1)


def replicator(store: IpfsBlobStore, attempts: int = 6) -> Replicator:
    return Replicator(
        store, "hospital-1", AUTHORED_AND_GRANTED, state_view=lambda: None,  # type: ignore[arg-type]
        chain_id=b"emrchain-records", max_tx_bytes=65_536,
        limits=PinLimits(concurrency=2, attempts=attempts, backoff_initial_ms=100),
    )


def test_a_record_pinned_by_b_is_served_by_b_after_a_is_killed(ipfs_pair) -> None:
    a, b = ipfs_pair
    # The fixture's `connect` waited for identify both ways; B's bitswap knows A.
    assert b.knows_bitswap_peer(a.peer_id())
    ciphertexts = [secrets.token_bytes(4096) for _ in range(3)] + [secrets.token_bytes(600_000)]

    async def scenario() -> None:
        store_a, store_b = blob_store(a.api_url), blob_store(b.api_url)
        try:
            cids = [await store_a.put(data) for data in ciphertexts]
            # Pins, not `has`: B's pinset is what replication changes.
            assert not set(cids) & b.pins()
            pins = replicator(store_b)
            for cid in cids:
                pins.enqueue(cid)
            await pins.wait_idle()
            await pins.close()
            assert pins.counters.pinned == len(cids) and pins.counters.failed == 0
            assert set(cids) <= b.pins()
            a.kill()
            try:
                for cid, data in zip(cids, ciphertexts, strict=True):
                    assert await store_b.get(cid, hashlib.sha256(data).digest()) == data
            finally:
                a.start()
                a.connect(b)
        finally:
            await store_a.close()
            await store_b.close()

    run(scenario())


def test_a_pin_nobody_can_serve_fails_after_its_retries(ipfs_pair) -> None:
    _, b = ipfs_pair
    absent = compute_cid(secrets.token_bytes(64)).to_text()

    async def scenario() -> Replicator:
        store_b = IpfsBlobStore(b.api_url, timeout_ms=2_000, node_lookup_timeout_ms=300, retries=0)
        try:
            pins = replicator(store_b, attempts=2)
            pins.enqueue(absent)
            await pins.wait_idle()
            await pins.close()
            return pins
        finally:
            await store_b.close()

    pins = run(scenario())
    assert pins.counters.failed == 1 and pins.counters.pinned == 0 and pins.counters.retried == 1
    assert absent not in b.pins()


def test_a_pin_whose_record_is_erased_is_not_kept(ipfs_pair) -> None:
    """A job queued before its record's erasure committed (the commit listener or a round
    ran first) finds the tombstone in committed state and leaves B's pins alone."""
    a, b = ipfs_pair
    data = secrets.token_bytes(2_048)
    record = EmrRecord(
        record_id=secrets.token_bytes(32), patient_id=secrets.token_bytes(32),
        ciphertext_sha256=hashlib.sha256(data).digest(), cid=compute_cid(data).to_bytes(),
        record_type=RecordType.LAB_RESULT, size_bytes=len(data), author=secrets.token_bytes(32),
        author_organization="hospital-0", height=1, time_ms=1,
    )
    state = OverlayStateView(MemoryState())
    state.put(keys.emr_record_key(record.record_id), record.encode())

    async def scenario() -> Replicator:
        store_a, store_b = blob_store(a.api_url), blob_store(b.api_url)
        try:
            cid = await store_a.put(data)
            pins = Replicator(
                store_b, "hospital-1", AUTHORED_AND_GRANTED, state_view=lambda: state,
                chain_id=b"emrchain-records", max_tx_bytes=65_536,
                limits=PinLimits(concurrency=1, attempts=2, backoff_initial_ms=100),
            )
            tombstone = record.erased(ErasureReason.PATIENT_REQUEST, record.author, 2, 2)
            state.put(keys.emr_record_key(record.record_id), tombstone.encode())
            pins.enqueue(cid, record.ciphertext_sha256, record.record_id)
            await pins.wait_idle()
            assert cid not in b.pins()
            # The same job for the record while it still stands is pinned: the check is what
            # kept the erased one out.
            state.put(keys.emr_record_key(record.record_id), record.encode())
            pins.enqueue(cid, record.ciphertext_sha256, record.record_id)
            await pins.wait_idle()
            await pins.close()
            assert cid in b.pins()
            return pins
        finally:
            await store_a.close()
            await store_b.close()

    pins = run(scenario())
    assert pins.counters.erased == 1 and pins.counters.pinned == 1
