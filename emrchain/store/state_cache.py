"""Committed state values the node reads again and again across blocks, kept in memory.

Why: execution reads each block's senders' nonce, key index and member entries and each
patient's entry through a `ReadOnceView`, which reads every key from the store at most once per
block — but again at the next block. With LevelDB each such read is a prefixed key, two calls
and a memtable/table search (~2–5 µs on a busy node); on a devnet follower the store reads were
~6 % of the event loop (BENCHMARKS.md). A sender or patient active in one block is likely active
in the next, so a cache of committed values answers most of them from a dict.

Exactness: the cache holds, for a key, the value the database has for it (None = absent), and
the store keeps it so around every commit:
- `begin_commit` (when the block's batch is prepared) drops the cached keys the block writes and
  pauses filling, so while the batch is being written no reader gets a value from the cache
  that the write changes, and nothing read mid-write is remembered;
- `finish_commit` (once the write is durable) puts the block's new values back for exactly the
  keys it dropped, then resumes filling; `abandon_commit` only resumes (the dropped keys are read
  from the database again, which says what it holds).
Keys the cache never held are not added at commit: a block's new record keys would only push
out the hot entries. It is bounded by `max_entries` and emptied when full (cheaper on the hot
path than LRU bookkeeping; the hot keys come back within a block).
"""

from __future__ import annotations

from collections.abc import Mapping

MISSING = object()
"""What `lookup` returns for a key the cache does not hold (None means "absent in state")."""


class StateCache:
    """Committed value by state key, at most `max_entries` of them."""

    __slots__ = ("_entries", "_filling", "_max_entries", "hits", "misses")

    def __init__(self, max_entries: int) -> None:
        if not 1 <= max_entries <= 100_000_000:
            raise ValueError(f"max_entries must be within 1..100000000, got {max_entries}")
        self._entries: dict[bytes, bytes | None] = {}
        self._max_entries = max_entries
        self._filling = True
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: bytes) -> bytes | object | None:
        """The committed value of `key` (None = absent), or MISSING if not held."""
        value = self._entries.get(key, MISSING)
        if value is not MISSING:
            self.hits += 1
        return value

    def remember(self, key: bytes, value: bytes | None) -> None:
        """`value` was just read from the database for `key`: a miss, kept unless a commit is
        being written (the read may have seen either side of it). Reads the absence filter
        answers are neither hits nor misses."""
        self.misses += 1
        if not self._filling:
            return
        entries = self._entries
        if len(entries) >= self._max_entries:
            entries.clear()
        entries[key] = value

    def begin_commit(
        self, writes: Mapping[bytes, bytes | None]
    ) -> tuple[tuple[bytes, bytes | None], ...]:
        """A block writing `writes` is about to be written: drop the keys it changes that are
        held, pause filling, and return (key, new value) for them, for `finish_commit`."""
        entries = self._entries
        refreshed = tuple((key, value) for key, value in writes.items() if key in entries)
        for key, _ in refreshed:
            del entries[key]
        self._filling = False
        return refreshed

    def finish_commit(self, refreshed: tuple[tuple[bytes, bytes | None], ...]) -> None:
        """The block's write is durable: hold its new values for the keys `begin_commit`
        dropped, and fill again."""
        self._filling = True
        entries = self._entries
        if len(entries) + len(refreshed) > self._max_entries:
            entries.clear()
        entries.update(refreshed)

    def abandon_commit(self) -> None:
        """The block's write failed: fill again (the dropped keys are read afresh)."""
        self._filling = True

    def clear(self) -> None:
        self._entries.clear()
