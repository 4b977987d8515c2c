"""Failover reads and repair, on two real Kubo nodes: the local hospital's and a peer's.

Both hold the record (the peer by replication). With the local daemon killed, reads are served
by the peer's; a block corrupted in the local daemon's blockstore on disk is detected (its
bytes fail the anchor), the read is served from the peer, and the local copy is replaced by
the verified bytes, so the local daemon serves it by itself again.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain.storage.cid import ContentId
from emrchain.storage.failover import FailoverBlobStore
from emrchain.storage.interfaces import BlobCorruptedError, StorageUnavailableError
from emrchain.storage.ipfs import IpfsBlobStore
from tests.services.fixtures import IpfsDaemon, _started_ipfs_daemon, run


@pytest.fixture
def two_ipfs_daemons(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[IpfsDaemon, IpfsDaemon]]:
    local = _started_ipfs_daemon(tmp_path_factory.mktemp("ipfs-local") / "repo")
    peer = _started_ipfs_daemon(tmp_path_factory.mktemp("ipfs-peer") / "repo")
    try:
        yield next(local), next(peer)
    finally:
        local.close()
        peer.close()


def store(api_url: str) -> IpfsBlobStore:
    return IpfsBlobStore(api_url, timeout_ms=3_000, node_lookup_timeout_ms=1_000, retries=0)


def block_file(repo: Path, cid: str) -> Path:
    """Kubo's flatfs file of the raw block `cid`: named by the base32 of its multihash."""
    multihash = bytes((0x12, 0x20)) + ContentId.from_text(cid).digest
    name = base64.b32encode(multihash).decode().rstrip("=")
    matches = list((repo / "blocks").rglob(f"{name}.data"))
    assert len(matches) == 1, f"block {name} of {cid} not under {repo / 'blocks'}"
    return matches[0]


def test_reads_fail_over_to_the_peer_when_the_local_daemon_is_killed(two_ipfs_daemons) -> None:
    local, peer = two_ipfs_daemons
    small, large = secrets.token_bytes(4_096), secrets.token_bytes(700_000)

    async def scenario() -> None:
        failover = FailoverBlobStore(store(local.api_url), [("hospital-1", store(peer.api_url))])
        peer_store = store(peer.api_url)
        try:
            cids = [await failover.put(data) for data in (small, large)]
            assert [await peer_store.put(data) for data in (small, large)] == cids
            local.kill()
            with pytest.raises(StorageUnavailableError):
                await failover.local.get(cids[0], hashlib.sha256(small).digest())
            for cid, data in zip(cids, (small, large), strict=True):
                assert await failover.get(cid, hashlib.sha256(data).digest()) == data
            assert failover.counters.peer_reads == 2 and failover.counters.repairs == 0
        finally:
            await failover.close()
            await peer_store.close()
            local.start()

    run(scenario())


def test_a_corrupt_local_block_is_served_from_the_peer_and_repaired(two_ipfs_daemons) -> None:
    local, peer = two_ipfs_daemons
    data = secrets.token_bytes(8_192)
    expected_sha256 = hashlib.sha256(data).digest()

    async def scenario() -> None:
        failover = FailoverBlobStore(store(local.api_url), [("hospital-1", store(peer.api_url))])
        peer_store = store(peer.api_url)
        try:
            cid = await failover.put(data)
            await peer_store.put(data)
            block = block_file(local.repo, cid)
            corrupted = bytearray(block.read_bytes())
            corrupted[len(corrupted) // 2] ^= 0x01
            block.write_bytes(bytes(corrupted))
            with pytest.raises(BlobCorruptedError):
                await failover.local.get(cid, expected_sha256)
            assert await failover.get(cid, expected_sha256) == data
            assert failover.counters.repairs == 1 and failover.counters.peer_reads == 1
            # Repaired: the local daemon serves the right bytes by itself, from its own disk,
            # and keeps the blob pinned.
            assert block_file(local.repo, cid).read_bytes() == data
            assert await failover.local.get(cid, expected_sha256) == data
            assert cid in await failover.local.pinned()
        finally:
            await failover.close()
            await peer_store.close()

    run(scenario())
