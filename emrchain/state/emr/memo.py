"""A bounded memo of decoded state entries, keyed by their exact stored bytes.

Decoding is a pure function of the bytes (and of the state key, which the caller checks on a
hit), so a memo keyed by the bytes can never return a stale entry: a write that changes an
entry changes its bytes, and the new bytes miss. That makes it correct without any
invalidation — across blocks, refused transactions whose overlays are dropped, aborted
executions, block sync and restarts — and shareable by execution and queries alike. It is not
consensus state: a node with an empty memo computes exactly what a node with a full one does.

Why: every transaction decodes its sender's Member (18 generic `Reader` reads, most of the
~9 µs the sender lookup of an ANCHOR_RECORD took), and a sender signs many transactions per
block while its member entry rarely changes.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class DecodedMemo(Generic[T]):
    """Decoded values by stored bytes, at most `capacity` of them (emptied when full: simpler
    than LRU bookkeeping on the hot path, and a refill costs only the decodes it saves)."""

    __slots__ = ("_capacity", "_entries")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._entries: dict[bytes, T] = {}

    def get(self, raw: bytes) -> T | None:
        """The value decoded from exactly `raw` earlier, if it is still held."""
        return self._entries.get(raw)

    def put(self, raw: bytes, value: T) -> None:
        """Remember `value` as the decoding of `raw` (immutable values only: it is shared)."""
        entries = self._entries
        if len(entries) >= self._capacity:
            entries.clear()
        entries[raw] = value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
