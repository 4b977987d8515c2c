"""`Cache` on Redis: a shared hot cache of blob ciphertext keyed by CID, best effort.

Redis is an accelerator, never a dependency: when it is down, slow or full a read or write
behaves as a miss or a no-op (a delete raises instead: erasure retries it, `records.md` §8),
the failure is logged at most once per `log_interval_ms`, and calls stop touching Redis for
`down_retry_interval_ms` (so a dead Redis costs nothing per request). The next call after that
interval tries again, so the cache recovers on its own.

Values are ciphertext (the blob bytes as stored) and are returned exactly as Redis holds them:
the caller checks them against the anchored SHA-256 before use (`read_path.read_through`), so
a poisoned entry costs one miss, never wrong data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from emrchain import metrics
from emrchain.storage.interfaces import StorageUnavailableError

logger = logging.getLogger(__name__)


class RateLimitedLog:
    """Logs a recurring failure at most once per interval, with the number suppressed."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last_logged = float("-inf")
        self._suppressed = 0

    def failure(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_logged >= self._interval_s:
            suffix = f" ({self._suppressed} similar suppressed)" if self._suppressed else ""
            logger.warning(message + suffix, *args)
            self._last_logged = now
            self._suppressed = 0
        else:
            self._suppressed += 1


class RedisCache:
    """Ciphertext cache on one Redis server (redis:// or rediss:// URL, or unix socket), with
    AUTH when a password is given."""

    def __init__(
        self,
        url: str | None = None,
        *,
        unix_socket: str | None = None,
        ttl_ms: int = 600_000,
        max_value_bytes: int = 4 * 1024 * 1024,
        max_connections: int = 16,
        timeout_ms: int = 200,
        down_retry_interval_ms: int = 1_000,
        log_interval_ms: int = 60_000,
        key_prefix: str = "emrchain:blob:",
        username: str | None = None,
        password: str | None = None,
        tls_ca_file: str | None = None,
    ) -> None:
        if (url is None) == (unix_socket is None):
            raise ValueError("give exactly one of url and unix_socket")
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must be a redis://, rediss:// or unix:// URL")
        if tls_ca_file is not None and not (url or "").startswith("rediss://"):
            raise ValueError("tls_ca_file needs a rediss:// url")
        if ttl_ms <= 0 or max_value_bytes <= 0 or max_connections <= 0 or timeout_ms <= 0:
            raise ValueError("ttl_ms, max_value_bytes, max_connections, timeout_ms must be > 0")
        if down_retry_interval_ms < 0 or log_interval_ms < 0:
            raise ValueError("intervals must be >= 0")
        self._ttl_ms = ttl_ms
        self._max_value_bytes = max_value_bytes
        self._timeout_s = timeout_ms / 1000
        self._down_retry_interval_s = down_retry_interval_ms / 1000
        self._key_prefix = key_prefix
        self._log = RateLimitedLog(log_interval_ms / 1000)
        self._down_until = float("-inf")
        self._is_down = False
        connection_options: dict[str, Any] = {
            "socket_timeout": self._timeout_s,
            "socket_connect_timeout": self._timeout_s,
            # No client-side retries: a miss is cheaper than waiting for a struggling Redis,
            # and redis-py's default retry backs off for seconds.
            "retry": Retry(NoBackoff(), 0),
            # AUTH on every new connection (None: the server has no password).
            "username": username,
            "password": password,
        }
        # A blocking pool waits (bounded by `timeout`) for a free connection instead of
        # raising MaxConnectionsError when every connection is busy.
        if unix_socket is not None:
            self._pool = BlockingConnectionPool(
                max_connections=max_connections,
                timeout=self._timeout_s,
                connection_class=UnixDomainSocketConnection,
                path=unix_socket,
                **connection_options,
            )
            self._where = f"unix:{unix_socket}"
        else:
            assert url is not None
            if url.startswith("rediss://"):
                # TLS: the server's certificate must chain to `tls_ca_file` (else the system's
                # CAs) and name the URL's host.
                connection_options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
                if tls_ca_file is not None:
                    connection_options["ssl_ca_certs"] = tls_ca_file
            self._pool = BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=self._timeout_s,
                **connection_options,
            )
            self._where = url.split("@")[-1]  # never log credentials
        self._client = Redis(connection_pool=self._pool)

    @property
    def is_down(self) -> bool:
        """Whether the last attempt to reach Redis failed (for health reporting)."""
        return self._is_down

    async def get(self, key: str) -> bytes | None:
        """The cached ciphertext for `key`, or None on a miss or when Redis is unusable."""
        value = await self._run("get", self._client.get(self._key_prefix + key))
        if value is None:
            return None
        if not isinstance(value, bytes):
            self._log.failure("Redis cache %s returned a %s, not bytes", self._where, type(value))
            return None
        return value

    async def set(self, key: str, value: bytes) -> None:
        """Cache `value` for `ttl_ms`; values over `max_value_bytes` are not cached."""
        if not isinstance(value, bytes):
            raise TypeError("cache values are bytes (ciphertext)")
        if len(value) > self._max_value_bytes:
            return
        await self._run("set", self._client.set(self._key_prefix + key, value, px=self._ttl_ms))

    async def delete(self, key: str) -> None:
        """Remove `key`'s entry (absent is fine). Unlike `get` and `set` it raises
        StorageUnavailableError when Redis is down, in its down window, or fails: an erasure
        must not count an entry as gone that may live on until its TTL."""
        if time.monotonic() < self._down_until:
            raise StorageUnavailableError(f"Redis cache {self._where} is down; entry not deleted")
        try:
            await self._call("delete", self._client.delete(self._key_prefix + key))
        except (RedisError, OSError, TimeoutError) as error:
            self._mark_down("delete", error)
            raise StorageUnavailableError(
                f"Redis cache {self._where} did not delete the entry: {error}"
            ) from None

    async def ping(self) -> None:
        """Reach Redis now (readiness probes), ignoring the down window; raises on failure."""
        with metrics.dependency_call("redis", "ping"):
            async with asyncio.timeout(self._timeout_s * 2):
                await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()

    async def _run(self, operation: str, command: Any) -> Any:
        """Await one Redis command; any failure becomes None (a miss / a no-op)."""
        now = time.monotonic()
        if now < self._down_until:
            command.close()  # never awaited: close the coroutine so Python does not warn
            return None
        try:
            return await self._call(operation, command)
        except (RedisError, OSError, TimeoutError) as error:
            self._mark_down(operation, error)
            return None

    async def _call(self, operation: str, command: Any) -> Any:
        """Await one Redis command, bounded; raises what redis-py raises."""
        # The socket timeouts bound each read and connect; this bounds the whole call,
        # including the wait for a pooled connection.
        with metrics.dependency_call("redis", operation):
            async with asyncio.timeout(self._timeout_s * 2):
                result = await command
        if self._is_down:
            self._is_down = False
            logger.info("Redis cache %s reachable again", self._where)
        return result

    def _mark_down(self, operation: str, error: Exception) -> None:
        """Stop touching Redis for the down window; log (rate-limited)."""
        self._is_down = True
        self._down_until = time.monotonic() + self._down_retry_interval_s
        self._log.failure(
            "Redis cache %s unusable (%s: %s); serving misses, retrying in %.1f s",
            self._where, operation, error, self._down_retry_interval_s,
        )
