"""Replication between two real IPFS nodes on loopback, through the node's `Replicator`.

Hospital A's node adds a record to its IPFS node; hospital B's replicator pins the CID on B's
IPFS node (fetching the blocks over the swarm); B then serves the record by itself, even with
A's IPFS node killed. A CID nobody has makes the pin fail for good after its bounded retries,
without blocking anything else.
"""

from __future__ import annotations

import hashlib
import secrets

from emrchain.records.replication import AUTHORED_AND_GRANTED, PinLimits, Replicator
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
            # (Not `has`: an online js-ipfs ignores `offline=true` and fetches to answer it.)
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
