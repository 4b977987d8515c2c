# Big-endian integers in raw bytes, declared once for the compiled core's modules (the
# transaction envelope and every stored integer are big-endian).

from libc.stdint cimport uint64_t


cdef inline uint64_t read_be(const unsigned char *data, size_t width) noexcept nogil:
    """The `width`-byte (at most 8) big-endian integer at `data`."""
    cdef uint64_t value = 0
    cdef size_t i
    for i in range(width):
        value = (value << 8) | data[i]
    return value


cdef inline void write_be(unsigned char *out, uint64_t value, size_t width) noexcept nogil:
    """Write `value` as `width` big-endian bytes at `out` (its low bytes when it is wider)."""
    cdef size_t i
    for i in range(width):
        out[width - 1 - i] = value & 0xFF
        value >>= 8
