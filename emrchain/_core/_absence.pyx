# cython: language_level=3
"""Compiled twin of `reference/absence.py`: the blocked Bloom filter behind `store/absence.py`.

Same constructor checks (shared), same bit layout, same answers; the difference is the cost: a
lookup is one hash (cached in the bytes object) and four bit tests in C, not ~40 bytecodes, and
adding a block's keys is a C loop. Why it matters: every ANCHOR_RECORD asks the filter once
during execution and adds its record key once at commit, on the event loop (BENCHMARKS.md).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.object cimport PyObject_Hash
from libc.stdint cimport uint64_t

from emrchain._core.reference.absence import LINE_BYTES, check_arguments

cdef enum:
    BIT_FIELD = 511
    LINE = 64

if LINE != LINE_BYTES:  # the twins' layouts must not drift apart
    raise ImportError(f"_absence: block size {LINE} differs from the twin's {LINE_BYTES}")


cdef inline bint _bit_clear(const unsigned char *block, uint64_t value, int shift) noexcept:
    cdef uint64_t bit = (value >> shift) & BIT_FIELD
    return not (block[bit >> 3] & (1 << (bit & 7)))


cdef inline void _set_bit(unsigned char *block, uint64_t value, int shift) noexcept:
    cdef uint64_t bit = (value >> shift) & BIT_FIELD
    block[bit >> 3] |= <unsigned char>(1 << (bit & 7))


cdef class AbsenceFilter:
    """A blocked Bloom filter over the state keys under `prefixes` (single-byte prefixes)."""

    cdef bytearray _bits
    cdef unsigned char *_data
    cdef uint64_t _block_mask
    cdef unsigned char _covered[256]
    cdef readonly frozenset prefixes
    cdef readonly long long keys_added

    def __init__(self, size_bytes, prefixes):
        check_arguments(size_bytes, prefixes)
        self._bits = bytearray(size_bytes)
        self._data = <unsigned char *>(<char *>self._bits)
        self._block_mask = size_bytes // LINE - 1
        self.prefixes = frozenset(prefixes)
        cdef int index
        for index in range(256):
            self._covered[index] = 0
        for prefix in self.prefixes:
            self._covered[(<const unsigned char *>PyBytes_AS_STRING(prefix))[0]] = 1
        self.keys_added = 0

    def covered_puts(self, writes):
        """The keys `writes` puts (not deletes) under this filter's prefixes: what a commit
        must add once it is written."""
        prefixes = self.prefixes
        return tuple(
            key for key, value in writes.items() if value is not None and key[:1] in prefixes
        )

    def add(self, key):
        """Remember that `key` (covered) exists."""
        self.add_all((key,))

    def add_all(self, keys):
        """`add` for each key (the layout of `reference/absence.py`)."""
        cdef uint64_t value
        cdef unsigned char *block
        cdef long long added = 0
        for key in keys:
            value = <uint64_t>PyObject_Hash(key)
            block = self._data + (value & self._block_mask) * LINE
            _set_bit(block, value, 24)
            _set_bit(block, value, 33)
            _set_bit(block, value, 42)
            _set_bit(block, value, 51)
            added += 1
        self.keys_added += added

    def certainly_absent(self, key):
        """True only if `key` is covered and was never added (then it is not in state)."""
        cdef uint64_t value
        cdef const unsigned char *block
        if PyBytes_CheckExact(key):
            if PyBytes_GET_SIZE(key) == 0:
                return False
            if not self._covered[(<const unsigned char *>PyBytes_AS_STRING(key))[0]]:
                return False
        elif key[:1] not in self.prefixes:  # other types: the twin's exact behaviour
            return False
        value = <uint64_t>PyObject_Hash(key)
        block = self._data + (value & self._block_mask) * LINE
        return (
            _bit_clear(block, value, 24)
            or _bit_clear(block, value, 33)
            or _bit_clear(block, value, 42)
            or _bit_clear(block, value, 51)
        )
