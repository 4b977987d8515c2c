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
in one cache line it answers ~99.7 % of misses while it holds at most size × 8 / 16 keys, and
degrades gradually (never wrongly) beyond.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

PROBES = 4
LINE_BYTES = 64
"""A key's probes all fall in one 64-byte block (one CPU cache line), picked by its hash: one
cache miss per lookup or add instead of four in a filter of many megabytes (a blocked Bloom
filter, Putze, Sanders and Singler 2007; slightly more false positives at the same size)."""
MIN_SIZE_BYTES = 1 << 10
MAX_SIZE_BYTES = 1 << 30
_BIT_FIELD = 511  # 9 bits: a bit within the 512-bit block


class AbsenceFilter:
    """A blocked Bloom filter over the state keys under `prefixes` (single-byte prefixes)."""

    __slots__ = ("_bits", "_block_mask", "keys_added", "prefixes")

    def __init__(self, size_bytes: int, prefixes: Collection[bytes]) -> None:
        if not MIN_SIZE_BYTES <= size_bytes <= MAX_SIZE_BYTES or size_bytes & (size_bytes - 1):
            raise ValueError(
                f"size_bytes must be a power of two within {MIN_SIZE_BYTES}..{MAX_SIZE_BYTES}, "
                f"got {size_bytes}"
            )
        if not prefixes or any(type(p) is not bytes or len(p) != 1 for p in prefixes):
            raise ValueError("prefixes must be one or more single-byte bytes")
        self._bits = bytearray(size_bytes)
        self._block_mask = size_bytes // LINE_BYTES - 1  # at most 2^24 blocks: 24 hash bits
        self.prefixes = frozenset(prefixes)
        self.keys_added = 0

    def covered_puts(self, writes: Mapping[bytes, bytes | None]) -> tuple[bytes, ...]:
        """The keys `writes` puts (not deletes) under this filter's prefixes: what a commit
        must add once it is written."""
        prefixes = self.prefixes
        return tuple(
            key for key, value in writes.items() if value is not None and key[:1] in prefixes
        )

    def add(self, key: bytes) -> None:
        """Remember that `key` (covered) exists."""
        self.add_all((key,))

    def add_all(self, keys: Iterable[bytes]) -> None:
        """`add` for each key. The 64-bit hash: bits 0-23 pick the block, four 9-bit fields
        from bit 24 on the bits (PROBES of them, unrolled here and in certainly_absent, which
        must agree)."""
        bits, block_mask, added = self._bits, self._block_mask, 0
        for key in keys:
            value = hash(key)
            base = (value & block_mask) * LINE_BYTES
            bit = (value >> 24) & _BIT_FIELD
            bits[base + (bit >> 3)] |= 1 << (bit & 7)
            bit = (value >> 33) & _BIT_FIELD
            bits[base + (bit >> 3)] |= 1 << (bit & 7)
            bit = (value >> 42) & _BIT_FIELD
            bits[base + (bit >> 3)] |= 1 << (bit & 7)
            bit = (value >> 51) & _BIT_FIELD
            bits[base + (bit >> 3)] |= 1 << (bit & 7)
            added += 1
        self.keys_added += added

    def certainly_absent(self, key: bytes) -> bool:
        """True only if `key` is covered and was never added (then it is not in state)."""
        if key[:1] not in self.prefixes:
            return False
        value = hash(key)
        bits = self._bits
        base = (value & self._block_mask) * LINE_BYTES
        bit = (value >> 24) & _BIT_FIELD
        if not bits[base + (bit >> 3)] & (1 << (bit & 7)):
            return True
        bit = (value >> 33) & _BIT_FIELD
        if not bits[base + (bit >> 3)] & (1 << (bit & 7)):
            return True
        bit = (value >> 42) & _BIT_FIELD
        if not bits[base + (bit >> 3)] & (1 << (bit & 7)):
            return True
        bit = (value >> 51) & _BIT_FIELD
        return not bits[base + (bit >> 3)] & (1 << (bit & 7))
