"""read_through: a poisoned cache entry is returned by the cache as-is, caught by the caller's
hash check, evicted, and the read falls back to the blob store."""

from __future__ import annotations

import hashlib
import os

import pytest
from redis.asyncio import Redis

from emrchain.storage.interfaces import BlobNotFoundError
from emrchain.storage.ipfs import IpfsBlobStore
from emrchain.storage.read_path import read_through
from emrchain.storage.redis_cache import RedisCache
from tests.services.fixtures import IpfsDaemon, RedisServer, run


class CountingStore:
    """A dictionary blob store that counts reads (only what read_through needs)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.reads = 0

    async def get(self, cid: str, expected_sha256: bytes) -> bytes:
        self.reads += 1
        if cid not in self.blobs:
            raise BlobNotFoundError(cid)
        return self.blobs[cid]


def test_poisoned_entry_is_evicted_and_the_store_serves(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        cache = RedisCache(unix_socket=redis_server.unix_socket, ttl_ms=60_000)
        attacker = Redis(unix_socket_path=redis_server.unix_socket, socket_timeout=2)
        store = CountingStore()
        try:
            good = os.urandom(4096)
            digest = hashlib.sha256(good).digest()
            store.blobs["cid-1"] = good
            await attacker.set("emrchain:blob:cid-1", b"poison")
            # The cache itself does not judge: it returns what Redis holds.
            assert await cache.get("cid-1") == b"poison"

            assert await read_through(cache, store, "cid-1", digest) == good  # type: ignore[arg-type]
            assert store.reads == 1
            # Evicted and replaced by the verified bytes: the next read is a cache hit.
            assert await attacker.get("emrchain:blob:cid-1") == good
            assert await read_through(cache, store, "cid-1", digest) == good  # type: ignore[arg-type]
            assert store.reads == 1
        finally:
            await attacker.aclose()
            await cache.close()

    run(scenario())


def test_store_errors_pass_through_and_nothing_is_cached(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        cache = RedisCache(unix_socket=redis_server.unix_socket, ttl_ms=60_000)
        try:
            with pytest.raises(BlobNotFoundError):
                await read_through(cache, CountingStore(), "absent", bytes(32))  # type: ignore[arg-type]
            assert await cache.get("absent") is None
        finally:
            await cache.close()

    run(scenario())


def test_read_through_real_redis_and_real_ipfs(
    redis_server: RedisServer, ipfs_daemon: IpfsDaemon
) -> None:
    async def scenario() -> None:
        cache = RedisCache(unix_socket=redis_server.unix_socket, ttl_ms=60_000)
        store = IpfsBlobStore(ipfs_daemon.api_url, timeout_ms=5_000, node_lookup_timeout_ms=500)
        try:
            data = os.urandom(4096)
            digest = hashlib.sha256(data).digest()
            cid = await store.put(data)
            await cache.set(cid, b"\x00" * 4096)  # poisoned
            assert await read_through(cache, store, cid, digest) == data
            assert await cache.get(cid) == data
            redis_server.kill()  # cache down: reads still work, from IPFS
            assert await read_through(cache, store, cid, digest) == data
        finally:
            await store.close()
            await cache.close()

    run(scenario())
