"""Pure-Python twin of `_absence.pyx`: the blocked Bloom filter behind `store/absence.py`.

The design (why, exactness, sizing) is documented in `store/absence.py`; the layout is fixed
here and the compiled twin sets and tests exactly the same bits: the 64-bit `hash()` of the key,
bits 0-23 pick a 64-byte block, four 9-bit fields from bit 24 on pick a bit each in it.
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


def check_arguments(size_bytes: int, prefixes: Collection[bytes]) -> None:
    """The constructor's checks, shared by both twins (same messages, same order)."""
    if not MIN_SIZE_BYTES <= size_bytes <= MAX_SIZE_BYTES or size_bytes & (size_bytes - 1):
        raise ValueError(
            f"size_bytes must be a power of two within {MIN_SIZE_BYTES}..{MAX_SIZE_BYTES}, "
            f"got {size_bytes}"
        )
    if not prefixes or any(type(p) is not bytes or len(p) != 1 for p in prefixes):
        raise ValueError("prefixes must be one or more single-byte bytes")


class AbsenceFilter:
    """A blocked Bloom filter over the state keys under `prefixes` (single-byte prefixes)."""

    __slots__ = ("_bits", "_block_mask", "keys_added", "prefixes")

    def __init__(self, size_bytes: int, prefixes: Collection[bytes]) -> None:
        check_arguments(size_bytes, prefixes)
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
