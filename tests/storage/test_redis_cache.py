"""RedisCache against a private redis-server (unix socket): limits, outages, recovery."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import pytest
from redis.asyncio import Redis

from emrchain.storage.interfaces import Cache, StorageUnavailableError
from emrchain.storage.redis_cache import RedisCache
from tests.services.fixtures import RedisServer, run

PREFIX = "emrchain:blob:"


def cache_for(server: RedisServer, **options: object) -> RedisCache:
    settings: dict[str, object] = {"ttl_ms": 60_000, "timeout_ms": 200,
                                   "down_retry_interval_ms": 100}
    settings.update(options)
    return RedisCache(unix_socket=server.unix_socket, **settings)  # type: ignore[arg-type]


async def raw_client(server: RedisServer) -> Redis:
    return Redis(unix_socket_path=server.unix_socket, socket_timeout=2)


def test_set_get_delete(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        cache = cache_for(redis_server)
        try:
            assert isinstance(cache, Cache)
            value = os.urandom(4096)
            assert await cache.get("bafk-a") is None
            await cache.set("bafk-a", value)
            assert await cache.get("bafk-a") == value
            await cache.delete("bafk-a")
            assert await cache.get("bafk-a") is None
            await cache.delete("bafk-a")  # deleting a missing key is fine
            assert not cache.is_down
        finally:
            await cache.close()

    run(scenario())


def test_entries_expire_after_ttl(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        cache = cache_for(redis_server, ttl_ms=300)
        client = await raw_client(redis_server)
        try:
            await cache.set("k", b"v")
            remaining_ms = await client.pttl(PREFIX + "k")
            assert 0 < remaining_ms <= 300
            assert await cache.get("k") == b"v"
            # Redis expires the key on its own clock: poll for it, bounded well past the TTL.
            deadline = time.monotonic() + 10
            while await cache.get("k") is not None:
                assert time.monotonic() < deadline, "the entry outlived its 300 ms TTL"
                await asyncio.sleep(0.02)
            assert await client.exists(PREFIX + "k") == 0
        finally:
            await client.aclose()
            await cache.close()

    run(scenario())


def test_values_over_the_size_limit_are_not_cached(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        cache = cache_for(redis_server, max_value_bytes=1024)
        try:
            await cache.set("at-limit", bytes(1024))
            await cache.set("over-limit", bytes(1025))
            assert await cache.get("at-limit") == bytes(1024)
            assert await cache.get("over-limit") is None
            with pytest.raises(TypeError):
                await cache.set("text", "not bytes")  # type: ignore[arg-type]
        finally:
            await cache.close()

    run(scenario())


def test_killed_redis_is_a_quiet_miss_then_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        cache = cache_for(redis_server, log_interval_ms=60_000)
        try:
            await cache.set("k", b"before")
            redis_server.kill()
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="emrchain.storage.redis_cache"):
                started = time.monotonic()
                for _ in range(5):
                    assert await cache.get("k") is None
                    await cache.set("k", b"during")  # no-op, no exception
                    # A delete says it failed: an erasure must not count the entry as gone.
                    with pytest.raises(StorageUnavailableError):
                        await cache.delete("k")
                    await asyncio.sleep(0.03)
                assert time.monotonic() - started < 5.0  # no call waits on the dead server
            assert cache.is_down
            warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
            assert len(warnings) == 1  # rate-limited: one line for the whole outage window

            redis_server.start()  # empty again: no persistence
            await asyncio.sleep(0.15)  # past down_retry_interval_ms
            assert await cache.get("k") is None
            await cache.set("k", b"after")
            assert await cache.get("k") == b"after"
            assert not cache.is_down
        finally:
            await cache.close()

    run(scenario())


def test_stalled_redis_times_out_as_a_miss_then_recovers(redis_server: RedisServer) -> None:
    assert redis_server.process is not None
    pid = redis_server.process.pid

    async def scenario() -> None:
        cache = cache_for(redis_server, timeout_ms=150, down_retry_interval_ms=50)
        try:
            await cache.set("k", b"v")
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                assert await cache.get("k") is None
                assert time.monotonic() - started < 3.0  # bounded by timeout_ms, not a hang
                assert cache.is_down
            finally:
                os.kill(pid, signal.SIGCONT)
            deadline = time.monotonic() + 3
            while await cache.get("k") != b"v":
                assert time.monotonic() < deadline, "cache did not recover after SIGCONT"
                await asyncio.sleep(0.05)
            assert not cache.is_down
        finally:
            await cache.close()

    run(scenario())


def test_more_concurrent_calls_than_connections_wait_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        cache = cache_for(redis_server, max_connections=2, timeout_ms=2_000)
        try:
            await asyncio.gather(*(cache.set(f"k{i}", bytes([i])) for i in range(100)))
            values = await asyncio.gather(*(cache.get(f"k{i}") for i in range(100)))
            assert values == [bytes([i]) for i in range(100)]
            assert not cache.is_down
        finally:
            await cache.close()

    run(scenario())


def test_url_form_and_argument_checks(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        cache = RedisCache(f"unix://{redis_server.unix_socket}", ttl_ms=1_000)
        try:
            await cache.set("k", b"v")
            assert await cache.get("k") == b"v"
        finally:
            await cache.close()

    run(scenario())
    with pytest.raises(ValueError, match="exactly one"):
        RedisCache()
    with pytest.raises(ValueError, match="exactly one"):
        RedisCache("redis://127.0.0.1:1", unix_socket="/tmp/x.sock")
    with pytest.raises(ValueError):
        RedisCache("redis://127.0.0.1:1", ttl_ms=0)
