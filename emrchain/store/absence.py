"""Which committed state keys certainly do not exist, for keyspaces looked up mostly for keys
never written: every ANCHOR_RECORD asks whether its new record id is taken.

Why: such a lookup misses, and a miss searches LevelDB's memtable skiplist and a table per
level (~3.5–5 µs on a busy node; 11 % of a follower's event loop at max rate, BENCHMARKS.md).
A Bloom filter over the keys present answers most misses in ~0.3 µs without the database.

Exactness: a Bloom filter has false positives (then the database is read, as before) and never
false negatives, provided every key present is in it. The store fills it from the database
when it opens, and adds every key its commits and genesis put under the covered prefixes once
the write is durable; a deleted key stays in it (a false positive). So the filter only ever
skips reads whose answer is "absent", and no result changes.

Hashing uses Python's `hash()` of the key, which is keyed randomly per process (SipHash), so a
client cannot choose record ids that collide in every node's filter; the filter is rebuilt at
every start. Size: a power of two bytes from `[storage] absence_filter_bytes`; with 4 probes
it answers ~99.8 % of misses while it holds at most size × 8 / 16 keys, and degrades
gradually (never wrongly) beyond.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

PROBES = 4  # certainly_absent unrolls its probes: change both together
MIN_SIZE_BYTES = 1 << 10
MAX_SIZE_BYTES = 1 << 30


class AbsenceFilter:
    """A Bloom filter over the state keys under `prefixes` (single-byte key prefixes)."""

    __slots__ = ("_bits", "_mask", "keys_added", "prefixes")

    def __init__(self, size_bytes: int, prefixes: Collection[bytes]) -> None:
        if not MIN_SIZE_BYTES <= size_bytes <= MAX_SIZE_BYTES or size_bytes & (size_bytes - 1):
            raise ValueError(
                f"size_bytes must be a power of two within {MIN_SIZE_BYTES}..{MAX_SIZE_BYTES}, "
                f"got {size_bytes}"
            )
        if not prefixes or any(type(p) is not bytes or len(p) != 1 for p in prefixes):
            raise ValueError("prefixes must be one or more single-byte bytes")
        self._bits = bytearray(size_bytes)
        self._mask = size_bytes * 8 - 1
        self.prefixes = frozenset(prefixes)
        self.keys_added = 0

    def covers(self, key: bytes) -> bool:
        return key[:1] in self.prefixes

    def add(self, key: bytes) -> None:
        """Remember that `key` (covered) exists."""
        value = hash(key)
        mask, bits = self._mask, self._bits
        start, step = value & mask, (value >> 32) | 1
        for probe in range(PROBES):
            position = (start + probe * step) & mask
            bits[position >> 3] |= 1 << (position & 7)
        self.keys_added += 1

    def add_all(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            self.add(key)

    def certainly_absent(self, key: bytes) -> bool:
        """True only if `key` is covered and was never added (then it is not in state)."""
        if key[:1] not in self.prefixes:
            return False
        value = hash(key)
        mask, bits = self._mask, self._bits
        start, step = value & mask, (value >> 32) | 1
        # Unrolled (PROBES = 4): this runs once per new record on the hot path.
        position = start
        if not bits[position >> 3] & (1 << (position & 7)):
            return True
        position = (start + step) & mask
        if not bits[position >> 3] & (1 << (position & 7)):
            return True
        position = (start + 2 * step) & mask
        if not bits[position >> 3] & (1 << (position & 7)):
            return True
        position = (start + 3 * step) & mask
        return not bits[position >> 3] & (1 << (position & 7))
