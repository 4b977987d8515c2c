"""`MemoryCache`: the in-process hot cache of ciphertext, bounded in bytes, entries and age.

Least recently used entries are evicted first when either bound would be exceeded. Each entry
expires `ttl_ms` after it was set (reading it does not extend its life, so an entry is never
older than the TTL however hot it is). Time comes from an injected monotonic clock in
milliseconds, so tests control it.

Concurrency: the methods are `async` to match the `Cache` protocol but never await while the
table is being changed, so every call is atomic with respect to other coroutines of the same
event loop. The cache is not meant to be shared between threads.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_KEY_LENGTH = 256
"""Keys are CIDs (59 characters here); anything much longer is a caller bug."""


def monotonic_milliseconds() -> int:
    return time.monotonic_ns() // 1_000_000


class MemoryCache:
    """A `Cache` in this process's memory."""

    def __init__(
        self,
        max_bytes: int,
        max_entries: int,
        ttl_ms: int,
        clock: Callable[[], int] = monotonic_milliseconds,
    ) -> None:
        if max_bytes < 1 or max_entries < 1 or ttl_ms < 1:
            raise ValueError("max_bytes, max_entries and ttl_ms must all be at least 1")
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._ttl_ms = ttl_ms
        self._clock = clock
        # key -> (expiry time in clock milliseconds, value); order = least recently used first.
        self._entries: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._total_bytes = 0

    @property
    def total_bytes(self) -> int:
        """Bytes of values held now (expired entries count until they are dropped)."""
        return self._total_bytes

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        _check_key(key)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes) -> None:
        """Cache `value`; a value larger than the whole cache is not cached (best effort)."""
        _check_key(key)
        if not isinstance(value, bytes):
            raise TypeError("cached values are bytes")
        self._remove(key)
        if len(value) > self._max_bytes:
            return
        now = self._clock()
        self._drop_expired_oldest(now)
        while self._entries and (
            len(self._entries) >= self._max_entries
            or self._total_bytes + len(value) > self._max_bytes
        ):
            oldest = next(iter(self._entries))
            self._remove(oldest)
        self._entries[key] = (now + self._ttl_ms, value)
        self._total_bytes += len(value)

    async def delete(self, key: str) -> None:
        _check_key(key)
        self._remove(key)

    async def close(self) -> None:
        self._entries.clear()
        self._total_bytes = 0

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._total_bytes -= len(entry[1])

    def _drop_expired_oldest(self, now: int) -> None:
        """Drop expired entries at the cold end before evicting live ones.

        Only the cold end is scanned (stopping at the first live entry), so a set costs O(1)
        amortised; expired entries further in are dropped when read or when they reach it.
        """
        while self._entries:
            oldest, (expires_at, _) = next(iter(self._entries.items()))
            if now < expires_at:
                return
            self._remove(oldest)


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"cache keys are strings of 1..{MAX_KEY_LENGTH} characters")
