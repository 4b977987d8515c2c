"""IpfsBlobStore against a real, private, offline Kubo node (Kubo RPC API on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import aiohttp
import pytest

from emrchain.storage.cid import CHUNK_SIZE, InvalidCidError, compute_cid
from emrchain.storage.interfaces import (
    BlobCorruptedError,
    BlobNotFoundError,
    BlobStore,
    StorageUnavailableError,
)
from emrchain.storage.ipfs import IpfsBlobStore
from tests.services.fixtures import IpfsDaemon, run


def store_for(daemon: IpfsDaemon, **options: object) -> IpfsBlobStore:
    settings: dict[str, object] = {
        "timeout_ms": 5_000,
        "retries": 2,
        "node_lookup_timeout_ms": 500,
        "backoff_base_ms": 20,
        "backoff_max_ms": 100,
    }
    settings.update(options)
    return IpfsBlobStore(daemon.api_url, **settings)  # type: ignore[arg-type]


async def pinned_on_node(daemon: IpfsDaemon, cid: str) -> bool:
    """Ask the node directly (not through the store under test) whether `cid` is pinned."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{daemon.api_url}/api/v0/pin/ls",
            params={"arg": cid, "timeout": "1s"},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as response,
    ):
        return response.status == 200


def test_put_get_round_trip_with_our_cid(ipfs_daemon: IpfsDaemon) -> None:
    async def scenario() -> None:
        store = store_for(ipfs_daemon)
        try:
            assert isinstance(store, BlobStore)
            data = os.urandom(4096)
            cid = await store.put(data)
            assert cid == compute_cid(data).to_text()
            assert cid.startswith("bafk")
            assert await store.get(cid, hashlib.sha256(data).digest()) == data
            assert await store.has(cid)
            assert await pinned_on_node(ipfs_daemon, cid)
            assert await store.put(data) == cid  # adding the same bytes again is a no-op
            assert (await store.version()).count(".") == 2
        finally:
            await store.close()

    run(scenario())


def test_multi_chunk_blob_gets_the_dag_cid_we_compute(ipfs_daemon: IpfsDaemon) -> None:
    async def scenario() -> None:
        store = store_for(ipfs_daemon)
        try:
            data = os.urandom(2 * CHUNK_SIZE + 12_345)
            cid = await store.put(data)
            assert cid == compute_cid(data).to_text()
            assert cid.startswith("bafy")
            assert await store.get(cid, hashlib.sha256(data).digest()) == data
            empty_cid = await store.put(b"")
            assert empty_cid == compute_cid(b"").to_text()
            assert await store.get(empty_cid, hashlib.sha256(b"").digest()) == b""
        finally:
            await store.close()

    run(scenario())


def test_pin_unpin_and_delete_with_garbage_collection(ipfs_daemon: IpfsDaemon) -> None:
    async def scenario() -> None:
        store = store_for(ipfs_daemon)
        try:
            data = os.urandom(1000)
            digest = hashlib.sha256(data).digest()
            cid = await store.put(data)
            await store.unpin(cid)
            assert not await pinned_on_node(ipfs_daemon, cid)
            await store.unpin(cid)  # idempotent
            await store.pin(cid)
            assert await pinned_on_node(ipfs_daemon, cid)

            await store.delete(cid)
            assert not await pinned_on_node(ipfs_daemon, cid)
            assert not await store.has(cid)
            with pytest.raises(BlobNotFoundError):
                await store.get(cid, digest)
            await store.delete(cid)  # idempotent
            with pytest.raises(BlobNotFoundError):
                await store.pin(cid)  # an offline node cannot fetch what it erased
        finally:
            await store.close()

    run(scenario())


def test_absent_cid_is_not_found_within_the_node_lookup_timeout(ipfs_daemon: IpfsDaemon) -> None:
    async def scenario() -> None:
        store = store_for(ipfs_daemon, node_lookup_timeout_ms=300)
        try:
            never_added = os.urandom(64)
            cid = compute_cid(never_added).to_text()
            started = time.monotonic()
            with pytest.raises(BlobNotFoundError):
                await store.get(cid, hashlib.sha256(never_added).digest())
            # Bounded (an online node searches until `timeout=`) and not retried: "absent" is
            # an answer.
            # The margin is for a loaded machine.
            assert time.monotonic() - started < 5.0
            assert not await store.has(cid)
        finally:
            await store.close()

    run(scenario())


def test_wrong_expected_hash_raises_corrupted_and_returns_nothing(
    ipfs_daemon: IpfsDaemon,
) -> None:
    async def scenario() -> None:
        store = store_for(ipfs_daemon)
        try:
            data = os.urandom(4096)
            cid = await store.put(data)
            altered = bytearray(hashlib.sha256(data).digest())
            altered[0] ^= 0x01
            with pytest.raises(BlobCorruptedError):
                await store.get(cid, bytes(altered))
        finally:
            await store.close()

    run(scenario())


def block_file_holding(repo: Path, data: bytes) -> Path:
    for path in (repo / "blocks").rglob("*.data"):
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return path
    raise AssertionError("block file not found in the node's repo")


def test_bytes_corrupted_on_the_node_disk_are_detected(ipfs_daemon: IpfsDaemon) -> None:
    """Kubo serves a block without re-hashing it (`Datastore.HashOnRead` is off by default);
    the store must not pass that on."""

    async def scenario() -> None:
        store = store_for(ipfs_daemon)
        try:
            data = os.urandom(4096)
            cid = await store.put(data)
            block_file = block_file_holding(ipfs_daemon.repo, data)
            corrupted = bytearray(data)
            corrupted[100] ^= 0xFF
            block_file.write_bytes(bytes(corrupted))
            with pytest.raises(BlobCorruptedError):
                await store.get(cid, hashlib.sha256(data).digest())
            await store.delete(cid)
        finally:
            await store.close()

    run(scenario())


def test_malformed_cid_is_refused_before_any_request(ipfs_daemon: IpfsDaemon) -> None:
    async def scenario() -> None:
        store = store_for(ipfs_daemon)
        try:
            for bad in ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "bafk", "notacid"):
                with pytest.raises(InvalidCidError):
                    await store.get(bad, bytes(32))
            with pytest.raises(ValueError):
                await store.get(compute_cid(b"x").to_text(), b"short")
        finally:
            await store.close()

    run(scenario())


def test_killed_daemon_fails_fast_then_recovers_after_restart(
    private_ipfs_daemon: IpfsDaemon,
) -> None:
    daemon = private_ipfs_daemon

    async def scenario() -> None:
        store = store_for(daemon, retries=2, backoff_base_ms=50, backoff_max_ms=200)
        try:
            data = os.urandom(4096)
            digest = hashlib.sha256(data).digest()
            cid = await store.put(data)

            daemon.kill()
            for operation in (
                store.get(cid, digest),
                store.put(os.urandom(10)),
                store.has(cid),
                store.pin(cid),
                store.delete(cid),
                store.version(),
            ):
                started = time.monotonic()
                with pytest.raises(StorageUnavailableError, match="unavailable"):
                    await operation
                # Connection refused, 3 attempts, backoff at most 50 + 100 ms: a fraction of a
                # second (the bound leaves room for a loaded machine).
                assert time.monotonic() - started < 3.0

            daemon.start()  # same port, stale repo.lock removed by the helper
            assert await store.get(cid, digest) == data  # pinned data survived the crash
            assert await store.has(cid)
            other = os.urandom(512)
            assert await store.get(await store.put(other), hashlib.sha256(other).digest()) == other
        finally:
            await store.close()

    run(scenario())


def test_oversized_blob_is_refused_before_upload(ipfs_daemon: IpfsDaemon) -> None:
    async def scenario() -> None:
        store = store_for(ipfs_daemon, max_blob_bytes=1024)
        try:
            with pytest.raises(ValueError, match="exceeds"):
                await store.put(bytes(1025))
        finally:
            await store.close()

    run(scenario())
