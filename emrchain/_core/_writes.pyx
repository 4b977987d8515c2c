# cython: language_level=3
"""Compiled twin of `reference/writes.py`: the SHA-256 of a block's canonical state writes.

Encoding, argument checks, their order and the exceptions are documented in
`reference/writes.py` and identical here. Speed: the small fields (lengths, flags) and short
values are copied into one staging buffer that is fed to OpenSSL's SHA256_Update when full, so
a block's thousands of writes cost a few hundred Update calls rather than five Python-level
calls each; the keys are sorted by the same builtin `sorted` the twin uses.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.bytes cimport PyBytes_GET_SIZE
from libc.string cimport memcpy

from emrchain.schema.verdicts import LimitError
from emrchain._core.reference.writes import check_limits

from emrchain._core._sha256 cimport SHA256_CTX, SHA256_Final, SHA256_Init, SHA256_Update

cdef enum:
    STAGE_BYTES = 8192


cdef struct Stage:
    SHA256_CTX ctx
    size_t used
    unsigned char buffer[STAGE_BYTES]


cdef inline void _flush(Stage *stage) noexcept nogil:
    if stage.used:
        SHA256_Update(&stage.ctx, stage.buffer, stage.used)
        stage.used = 0


cdef inline void _feed(Stage *stage, const unsigned char *data, size_t length) noexcept nogil:
    if length > STAGE_BYTES // 2:  # large: hash it in place
        _flush(stage)
        SHA256_Update(&stage.ctx, data, length)
        return
    if stage.used + length > STAGE_BYTES:
        _flush(stage)
    memcpy(stage.buffer + stage.used, data, length)
    stage.used += length


cdef inline void _feed_u16(Stage *stage, size_t value) noexcept nogil:
    cdef unsigned char field[2]
    field[0] = <unsigned char>(value >> 8)
    field[1] = <unsigned char>value
    _feed(stage, field, 2)


cdef inline void _feed_u32(Stage *stage, size_t value) noexcept nogil:
    cdef unsigned char field[4]
    field[0] = <unsigned char>(value >> 24)
    field[1] = <unsigned char>(value >> 16)
    field[2] = <unsigned char>(value >> 8)
    field[3] = <unsigned char>value
    _feed(stage, field, 4)


def writes_digest(writes, max_writes, max_key_bytes, max_value_bytes):
    """SHA-256 of the canonical encoding of `writes` (key -> value, None = delete)."""
    check_limits(max_writes, max_key_bytes, max_value_bytes)
    cdef Py_ssize_t key_limit = max_key_bytes
    cdef Py_ssize_t value_limit = max_value_bytes
    cdef Py_ssize_t count = len(writes)
    if count > max_writes:
        raise LimitError(f"more than {max_writes} writes")
    cdef Py_ssize_t length
    for key in writes:
        if not PyBytes_CheckExact(key):
            raise TypeError(f"state keys are bytes, not {type(key).__name__}")
        length = PyBytes_GET_SIZE(key)
        if not 0 < length <= key_limit:
            raise LimitError(f"state key length {length} outside 1..{key_limit}")
    cdef Stage stage
    cdef unsigned char flag
    cdef unsigned char digest[32]
    stage.used = 0
    SHA256_Init(&stage.ctx)
    _feed_u32(&stage, <size_t>count)
    for key in sorted(writes):
        value = writes[key]
        length = PyBytes_GET_SIZE(key)
        _feed_u16(&stage, <size_t>length)
        _feed(&stage, <const unsigned char *>PyBytes_AS_STRING(key), <size_t>length)
        if value is None:
            flag = 0
            _feed(&stage, &flag, 1)
            continue
        if not PyBytes_CheckExact(value):
            raise TypeError(f"state values are bytes, not {type(value).__name__}")
        length = PyBytes_GET_SIZE(value)
        if length > value_limit:
            raise LimitError(f"state value of {length} bytes exceeds {value_limit}")
        flag = 1
        _feed(&stage, &flag, 1)
        _feed_u32(&stage, <size_t>length)
        _feed(&stage, <const unsigned char *>PyBytes_AS_STRING(value), <size_t>length)
    _flush(&stage)
    SHA256_Final(digest, &stage.ctx)
    return PyBytes_FromStringAndSize(<char *>digest, 32)
