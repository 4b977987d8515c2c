# cython: language_level=3
"""Compiled twin of `reference/txcheck.py`: `check_transactions`, `tx_ids`, `decode_accepted`.

The codec in `emrchain/schema/codec.py` is normative: this module applies the same checks
in the same order and returns the same verdicts and ids, and decodes accepted transactions into
the same `DecodedTransaction` values. The payload rules are not restated here: at import,
`schema.PAYLOAD_SCHEMAS` is converted into C tables that the decode loop walks, and the verdict
numbers, envelope sizes and identifier alphabet are read from `codes`/`schema`.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize
from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.dict cimport PyDict_SetItem
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from cpython.object cimport PyTypeObject
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8

from emrchain._core._bigendian cimport read_be
from libc.string cimport memcmp

import sys

from emrchain import schema
from emrchain.schema.verdicts import Verdict
from emrchain.schema.codec import DecodedTransaction, check_arguments

ctypedef unsigned char u8
ctypedef unsigned long long u64


from emrchain._core._sha256 cimport SHA256_CTX, SHA256_Final, SHA256_Init, SHA256_Update

cdef extern from "Python.h":
    # Declared here with its C argument type (cpython.type declares it taking an object).
    object PyType_GenericAlloc(PyTypeObject *type, Py_ssize_t nitems)

cdef extern from "utf8_strict.h" nogil:
    int utf8_strict_valid(const u8 *data, size_t length)


# --- Tables built from `schema` at import -------------------------------------------------

cdef enum:
    MAX_KINDS = 256      # the kind is one byte, so it indexes the table directly
    MAX_FIELDS = 16      # longest payload today has 7 fields; _load_schema refuses more
    DIGEST_BYTES = 32

# Internal field classes; _load_schema maps schema.FIELD_* onto them, so the numbers used by
# schema.py are never repeated here.
cdef enum FieldClass:
    C_FIXED, C_UINT, C_BYTES, C_TEXT, C_IDENT, C_ENUM

cdef struct FieldRule:
    FieldClass cls
    size_t arg          # width of fixed/uint/enum fields, length-prefix width otherwise
    u64 minimum
    u64 maximum
    u64 allowed

cdef FieldRule _rules[MAX_KINDS][MAX_FIELDS]
cdef int _field_count[MAX_KINDS]   # -1: unknown kind
cdef bint _ident_ok[256]

cdef u8 V_OK = Verdict.OK
cdef u8 V_TOO_LARGE = Verdict.TOO_LARGE
cdef u8 V_TRUNCATED = Verdict.TRUNCATED
cdef u8 V_TRAILING_BYTES = Verdict.TRAILING_BYTES
cdef u8 V_BAD_VERSION = Verdict.BAD_VERSION
cdef u8 V_WRONG_CHAIN = Verdict.WRONG_CHAIN
cdef u8 V_UNKNOWN_KIND = Verdict.UNKNOWN_KIND
cdef u8 V_ZERO_SENDER = Verdict.ZERO_SENDER
cdef u8 V_PAYLOAD_LENGTH = Verdict.PAYLOAD_LENGTH
cdef u8 V_FIELD_ZERO = Verdict.FIELD_ZERO
cdef u8 V_FIELD_RANGE = Verdict.FIELD_RANGE
cdef u8 V_FIELD_LENGTH = Verdict.FIELD_LENGTH
cdef u8 V_BAD_ENUM = Verdict.BAD_ENUM
cdef u8 V_BAD_TEXT = Verdict.BAD_TEXT
cdef u8 V_BAD_IDENT = Verdict.BAD_IDENT
cdef u8 TX_VERSION = schema.TX_VERSION
cdef size_t KEY_BYTES = schema.PUBLIC_KEY_BYTES
cdef size_t SIG_BYTES = schema.SIGNATURE_BYTES


cdef void _load_schema() except *:
    """Fill the C tables; refuse (ImportError) any schema the C loop cannot check exactly,
    so that the selector falls back to the reference twin instead of diverging from it."""
    classes = {
        schema.FIELD_FIXED: C_FIXED,
        schema.FIELD_UINT: C_UINT,
        schema.FIELD_BYTES: C_BYTES,
        schema.FIELD_TEXT: C_TEXT,
        schema.FIELD_IDENT: C_IDENT,
        schema.FIELD_ENUM: C_ENUM,
    }
    cdef int kind, index
    cdef FieldRule *rule
    for kind in range(MAX_KINDS):
        _field_count[kind] = -1
    for number, fields in schema.PAYLOAD_SCHEMAS.items():
        if not 0 <= number < MAX_KINDS or len(fields) > MAX_FIELDS:
            raise ImportError(f"_txcheck: kind {number} does not fit the C schema table")
        kind = number
        for index, spec in enumerate(fields):
            # Integers and length prefixes are read into a u64, hence at most 8 bytes.
            if (
                spec.type not in classes
                or not 0 <= spec.arg <= (1 << 30 if spec.type == schema.FIELD_FIXED else 8)
                or not 0 <= min(spec.minimum, spec.maximum, spec.allowed)
                or not max(spec.minimum, spec.maximum, spec.allowed) <= schema.U64_MAX
            ):
                raise ImportError(f"_txcheck: field {spec!r} cannot be checked in C")
            rule = &_rules[kind][index]
            rule.cls = classes[spec.type]
            rule.arg = spec.arg
            rule.minimum = spec.minimum
            rule.maximum = spec.maximum
            rule.allowed = spec.allowed
        _field_count[kind] = len(fields)
    for index in range(256):
        _ident_ok[index] = index in schema.IDENT_ALPHABET


_load_schema()


# --- The decode loop (runs without the GIL) -----------------------------------------------

cdef inline bint _all_zero(const u8 *data, size_t length) noexcept nogil:
    cdef size_t i
    for i in range(length):
        if data[i]:
            return False
    return True


cdef u8 _check_payload(int kind, const u8 *payload, size_t end) noexcept nogil:
    """Walk the kind's field rules: `codec._read_field` and `decode_payload`, in order."""
    cdef size_t pos = 0, width, length, i
    cdef u64 value
    cdef const u8 *data
    cdef const FieldRule *rule
    cdef int index
    for index in range(_field_count[kind]):
        rule = &_rules[kind][index]
        width = rule.arg
        # Compare against what is left rather than `pos + n > end`: n may come from the tx.
        if width > end - pos:
            return V_PAYLOAD_LENGTH
        data = payload + pos
        pos += width
        if rule.cls == C_FIXED:
            if rule.minimum and _all_zero(data, width):
                return V_FIELD_ZERO
            continue
        value = read_be(data, width)
        if rule.cls == C_ENUM:
            if value > 63 or not (rule.allowed >> value) & 1:
                return V_BAD_ENUM
            continue
        if rule.cls == C_UINT:
            if value < rule.minimum or value > rule.maximum:
                return V_FIELD_RANGE
            continue
        # Variable length: `value` is the length prefix; range check, availability, content.
        if value < rule.minimum or value > rule.maximum:
            return V_FIELD_LENGTH
        if value > end - pos:
            return V_PAYLOAD_LENGTH
        length = <size_t>value
        data = payload + pos
        pos += length
        if rule.cls == C_TEXT:
            if not utf8_strict_valid(data, length):
                return V_BAD_TEXT
        elif rule.cls == C_IDENT:
            for i in range(length):
                if not _ident_ok[data[i]]:
                    return V_BAD_IDENT
    if pos != end:
        return V_PAYLOAD_LENGTH
    return V_OK


cdef u8 _check_one(const u8 *raw, size_t size, const u8 *chain, size_t chain_len,
                   size_t max_tx_bytes) noexcept nogil:
    """`codec.decode_transaction` without building anything: the first failing verdict."""
    if size > max_tx_bytes:
        return V_TOO_LARGE
    if size < 1:
        return V_TRUNCATED
    if raw[0] != TX_VERSION:
        return V_BAD_VERSION
    if size < 2 or size < 2 + <size_t>raw[1]:
        return V_TRUNCATED
    cdef size_t chain_end = 2 + <size_t>raw[1]
    if raw[1] != chain_len or memcmp(raw + 2, chain, chain_len) != 0:
        return V_WRONG_CHAIN
    if size < chain_end + 1:
        return V_TRUNCATED
    cdef int kind = raw[chain_end]
    if _field_count[kind] < 0:
        return V_UNKNOWN_KIND
    cdef size_t sender = chain_end + 1
    cdef size_t payload_start = sender + KEY_BYTES + 8 + 2
    if size < payload_start:
        return V_TRUNCATED
    if _all_zero(raw + sender, KEY_BYTES):
        return V_ZERO_SENDER
    # The nonce (8 bytes after the sender) has no stateless rule.
    cdef size_t payload_len = read_be(raw + payload_start - 2, 2)
    cdef size_t expected = payload_start + payload_len + SIG_BYTES
    if size < expected:
        return V_TRUNCATED
    if size > expected:
        return V_TRAILING_BYTES
    return _check_payload(kind, raw + payload_start, payload_len)


cdef inline void _sha256(const u8 *data, size_t length, u8 *digest) noexcept nogil:
    cdef SHA256_CTX ctx
    SHA256_Init(&ctx)
    SHA256_Update(&ctx, data, length)
    SHA256_Final(digest, &ctx)


cdef struct Item:
    const u8 *data
    size_t size


cdef Item *_gather(list items) except NULL:
    """A C view of every item's bytes, for a loop without the GIL; `items` must outlive it and
    the caller frees it with PyMem_Free. TypeError if an item is not bytes."""
    cdef Py_ssize_t n = len(items), i
    cdef Item *batch = <Item *>PyMem_Malloc(max(n, 1) * sizeof(Item))
    if batch == NULL:
        raise MemoryError()
    for i in range(n):
        item = items[i]
        if not PyBytes_Check(item):
            PyMem_Free(batch)
            raise TypeError("each transaction must be bytes")
        batch[i].data = <const u8 *>PyBytes_AS_STRING(item)
        batch[i].size = PyBytes_GET_SIZE(item)
    return batch


cdef list _split_digests(bytearray digests, Py_ssize_t n):
    """The `n` consecutive 32-byte digests of `digests`, as bytes objects."""
    cdef const char *base = <const char *>PyByteArray_AS_STRING(digests)
    cdef Py_ssize_t i
    return [PyBytes_FromStringAndSize(base + i * DIGEST_BYTES, DIGEST_BYTES) for i in range(n)]


def check_transactions(txs, chain_id, max_tx_bytes):
    """Stateless checks on a batch: (one Verdict byte per tx, one 32-byte id per tx).

    Same contract as `reference.txcheck.check_transactions`: the verdict is the first failing
    check in spec order (`Verdict.OK` if none; signatures are not checked here); the id is
    SHA-256 of the whole transaction, or 32 zero bytes for TOO_LARGE items, which are never
    hashed. Raises TypeError if an item is not bytes or an argument has the wrong type, and
    LimitError for a bad `chain_id` or `max_tx_bytes` (the rules of `codec.check_arguments`).
    """
    check_arguments(chain_id, max_tx_bytes)
    len(txs)  # same TypeError as the reference for unsized inputs (e.g. generators)
    # `items` keeps every transaction alive while the loop reads their buffers without the GIL.
    items = list(txs)
    cdef Py_ssize_t n = len(items), i
    cdef size_t limit = max_tx_bytes
    cdef const u8 *chain = <const u8 *>PyBytes_AS_STRING(chain_id)
    cdef size_t chain_len = PyBytes_GET_SIZE(chain_id)
    verdicts = bytearray(n)
    digests = bytearray(n * DIGEST_BYTES)
    cdef u8 *out_verdicts = <u8 *>PyByteArray_AS_STRING(verdicts)
    cdef u8 *out_digests = <u8 *>PyByteArray_AS_STRING(digests)
    cdef Item *batch = _gather(items)
    try:
        with nogil:
            for i in range(n):
                out_verdicts[i] = _check_one(batch[i].data, batch[i].size, chain, chain_len,
                                             limit)
                # TOO_LARGE items are never hashed; their id stays zero (bytearray starts zeroed).
                if out_verdicts[i] != V_TOO_LARGE:
                    _sha256(batch[i].data, batch[i].size, out_digests + i * DIGEST_BYTES)
    finally:
        PyMem_Free(batch)
    return bytes(verdicts), _split_digests(digests, n)


def tx_ids(txs):
    """The id of each transaction: SHA-256 of all its bytes, hashed without the GIL.

    Same contract as `reference.txcheck.tx_ids`: TypeError if an item is not bytes.
    """
    len(txs)  # same TypeError as the reference for unsized inputs
    items = list(txs)  # keeps every transaction alive while the loop reads their buffers
    cdef Py_ssize_t n = len(items), i
    digests = bytearray(n * DIGEST_BYTES)
    cdef u8 *out_digests = <u8 *>PyByteArray_AS_STRING(digests)
    cdef Item *batch = _gather(items)
    try:
        with nogil:
            for i in range(n):
                _sha256(batch[i].data, batch[i].size, out_digests + i * DIGEST_BYTES)
    finally:
        PyMem_Free(batch)
    return _split_digests(digests, n)


# --- Decoding accepted transactions -------------------------------------------------------

cdef list _field_names = [None] * MAX_KINDS   # kind -> tuple of the payload's field names
cdef list _kind_members = [None] * MAX_KINDS  # kind -> its schema.TxKind member
cdef bytes _last_chain_id = b""               # reused while consecutive txs share the chain id
cdef type _decoded_type = DecodedTransaction
cdef Py_ssize_t DECODED_ITEMS = 8


cdef void _load_decoder() except *:
    """Field names and kind members for `decode_accepted`; refuse (ImportError) a
    `DecodedTransaction` that is not a plain 8-item tuple subclass, since the result is built
    in place like `tuple.__new__` builds it."""
    cls = DecodedTransaction
    if (
        cls.__bases__ != (tuple,)
        or cls.__dictoffset__ != 0
        or cls.__weakrefoffset__ != 0
        or len(cls._fields) != DECODED_ITEMS
    ):
        raise ImportError("_txcheck: DecodedTransaction is not a plain 8-field named tuple")
    for kind, fields in schema.PAYLOAD_SCHEMAS.items():
        # Interned names: the dict stores them with their hash already computed.
        _field_names[kind] = tuple(sys.intern(spec.name) for spec in fields)
        _kind_members[kind] = schema.TxKind(kind)


_load_decoder()


cdef inline int _out_of_range() except -1:
    raise IndexError("transaction bytes end inside a field (not an accepted transaction)")


cdef dict _decode_fields(int kind, const u8 *payload, size_t end):
    """The payload's field dict, walking the kind's rules without checking them; every read
    stays inside `payload[:end]` (IndexError otherwise), whatever the bytes."""
    cdef dict values = {}
    cdef tuple names = <tuple>_field_names[kind]
    cdef size_t pos = 0, width, length
    cdef const u8 *data
    cdef const FieldRule *rule
    cdef int index
    cdef object value
    for index in range(_field_count[kind]):
        rule = &_rules[kind][index]
        width = rule.arg
        if width > end - pos:
            _out_of_range()
        data = payload + pos
        pos += width
        if rule.cls == C_FIXED:
            value = PyBytes_FromStringAndSize(<char *>data, width)
        elif rule.cls == C_UINT or rule.cls == C_ENUM:
            value = PyLong_FromUnsignedLongLong(read_be(data, width))
        else:
            length = <size_t>read_be(data, width)
            if length > end - pos:
                _out_of_range()
            data = payload + pos
            pos += length
            if rule.cls == C_TEXT:
                value = PyUnicode_DecodeUTF8(<char *>data, length, NULL)
            elif rule.cls == C_IDENT:
                value = PyUnicode_DecodeASCII(<char *>data, length, NULL)
            else:
                value = PyBytes_FromStringAndSize(<char *>data, length)
        PyDict_SetItem(values, names[index], value)
    return values


cdef inline void _set_item(object result, Py_ssize_t index, object item):
    Py_INCREF(item)  # PyTuple_SET_ITEM steals a reference
    PyTuple_SET_ITEM(result, index, item)


def decode_accepted(raw):
    """Decode a transaction that `check_transactions` accepted (verdict OK): the same result
    as `decode_transaction`, without repeating its checks.

    Same contract as `reference.txcheck.decode_accepted`: only valid for accepted bytes, for
    which both twins return equal `DecodedTransaction`s (str text/ident fields, int numbers,
    bytes elsewhere). Outside it the result is unspecified, but this twin never reads outside
    `raw`: TypeError if `raw` is not bytes, KeyError for an unknown kind (as the reference),
    IndexError when a field or the payload would end past the bytes, UnicodeDecodeError for
    text or identifier bytes that do not decode (as the reference).
    """
    if not PyBytes_Check(raw):
        raise TypeError("the transaction must be bytes")
    global _last_chain_id
    cdef const u8 *data = <const u8 *>PyBytes_AS_STRING(raw)
    cdef size_t size = PyBytes_GET_SIZE(raw)
    if size < 2 or size <= 2 + <size_t>data[1]:
        raise IndexError("index out of range")
    cdef size_t chain_len = data[1]
    cdef size_t chain_end = 2 + chain_len
    cdef int kind = data[chain_end]
    if _field_count[kind] < 0:
        raise KeyError(kind)
    cdef size_t sender = chain_end + 1
    cdef size_t payload_start = sender + KEY_BYTES + 8 + 2
    if size < payload_start:
        _out_of_range()
    cdef size_t payload_len = <size_t>read_be(data + payload_start - 2, 2)
    if payload_len > size - payload_start:
        _out_of_range()
    cdef size_t payload_end = payload_start + payload_len
    fields = _decode_fields(kind, data + payload_start, payload_len)
    chain_id = _last_chain_id
    if <size_t>PyBytes_GET_SIZE(chain_id) != chain_len or memcmp(
        PyBytes_AS_STRING(chain_id), data + 2, chain_len
    ) != 0:
        chain_id = PyBytes_FromStringAndSize(<char *>data + 2, chain_len)
        _last_chain_id = chain_id
    result = PyType_GenericAlloc(<PyTypeObject *>_decoded_type, DECODED_ITEMS)
    _set_item(result, 0, data[0])
    _set_item(result, 1, chain_id)
    _set_item(result, 2, _kind_members[kind])
    _set_item(result, 3, PyBytes_FromStringAndSize(<char *>data + sender, KEY_BYTES))
    _set_item(result, 4, PyLong_FromUnsignedLongLong(read_be(data + sender + KEY_BYTES, 8)))
    _set_item(result, 5, PyBytes_FromStringAndSize(<char *>data + payload_start, payload_len))
    _set_item(result, 6, PyBytes_FromStringAndSize(<char *>data + payload_end,
                                                   size - payload_end))
    _set_item(result, 7, fields)
    return result
