# cython: language_level=3
"""Compiled twin of `reference/anchors.py`: the ANCHOR_RECORD accept path on raw bytes.

What it does, why, and why it cannot disagree with the general rule is in the twin's docstring.
This twin runs the same checks in the same order, hands the same transactions back to
`deliver`, and builds the same bytes; the difference is that a transaction taken here costs
three dict lookups, three small allocations and a few hundred instructions, not ~80,000
(callgrind, BENCHMARKS.md). It never reads outside a transaction's bytes, whatever `eligible`
claims: a layout that does not add up goes back to `deliver`.
"""

cimport cython
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.dict cimport PyDict_Contains, PyDict_GetItem, PyDict_SetItem, PyDict_Size
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset

from emrchain._core._bigendian cimport read_be, write_be

from emrchain._core.reference.anchors import (
    ANCHOR_FIXED_PAYLOAD_BYTES,
    PATIENT_ENTRY_BYTES,
    check_arguments,
    check_author,
    check_block_arguments,
)

cdef enum:
    KEY = 32
    ENTRY = 36
    FIXED = 106  # 3 ids, cid length u8, record type u8, size u64
    AFTER_CHAIN = 43  # kind u8, sender, nonce u64, payload length u16
    SIGNATURE = 64
    ERASURE = 49  # reason u8, erased by, erased height u64, erased time u64
    MESSAGE = 32  # "record " + 16 hex digits + " anchored"

if FIXED != ANCHOR_FIXED_PAYLOAD_BYTES or ENTRY != PATIENT_ENTRY_BYTES:
    raise ImportError("_anchors: layout constants differ from the twin's")

cdef const char *_HEX = b"0123456789abcdef"


cdef inline bytes _key(unsigned char prefix, const unsigned char *identifier):
    cdef bytes key = PyBytes_FromStringAndSize(NULL, KEY + 1)
    cdef unsigned char *out = <unsigned char *>PyBytes_AS_STRING(key)
    out[0] = prefix
    memcpy(out + 1, identifier, KEY)
    return key


cdef inline object _lookup(dict pending, bytes key, object read):
    """The block's view of `key`: its pending write (None = deleted), else committed state."""
    cdef PyObject *found = PyDict_GetItem(pending, key)
    if found != NULL:
        return <object>found
    return read(key)


cdef str _message(const unsigned char *record_id):
    cdef char text[MESSAGE]
    cdef int i
    memcpy(text, b"record ", 7)
    for i in range(8):
        text[7 + 2 * i] = _HEX[record_id[i] >> 4]
        text[8 + 2 * i] = _HEX[record_id[i] & 0x0F]
    memcpy(text + 23, b" anchored", 9)
    return PyUnicode_DecodeASCII(text, MESSAGE, NULL)


cdef class AnchorPath:
    """The ANCHOR_RECORD accept path for one application's key layout (see the twin)."""

    cdef unsigned char _anchor_kind
    cdef unsigned char _nonce_prefix
    cdef unsigned char _record_prefix
    cdef unsigned char _patient_prefix
    cdef uint64_t _max_records
    cdef object _result_type

    def __init__(
        self,
        anchor_kind,
        nonce_prefix,
        record_prefix,
        patient_prefix,
        max_records_per_patient,
        result_type,
    ):
        check_arguments(
            anchor_kind, nonce_prefix, record_prefix, patient_prefix, max_records_per_patient
        )
        self._anchor_kind = anchor_kind
        self._nonce_prefix = nonce_prefix[0]
        self._record_prefix = record_prefix[0]
        self._patient_prefix = patient_prefix[0]
        self._max_records = max_records_per_patient
        self._result_type = result_type

    def deliver_block(
        self,
        txs,
        eligible,
        pending,
        max_pending_writes,
        read,
        author_of,
        deliver,
        results,
        height,
        time_ms,
    ):
        """Deliver the block's transactions in order; return how many took the accept path.

        Same contract as `reference.anchors.AnchorPath.deliver_block`."""
        check_block_arguments(
            txs, pending, eligible, results, max_pending_writes, height, time_ms
        )
        cdef tuple items = tuple(txs)
        cdef const unsigned char *flags = <const unsigned char *>PyBytes_AS_STRING(eligible)
        cdef dict authors = {}
        cdef Py_ssize_t index
        cdef Py_ssize_t accepted = 0
        cdef Py_ssize_t cap = max_pending_writes
        cdef uint64_t block_height = height
        cdef uint64_t block_time_ms = time_ms
        for index in range(len(items)):
            if not flags[index]:
                continue
            if self._accept(
                items[index], <dict>pending, cap, read, author_of, authors,
                block_height, block_time_ms, <list>results, index,
            ):
                accepted += 1
            else:
                deliver(index)
                authors.clear()
        return accepted

    @cython.boundscheck(True)  # `deliver` may have changed `results`: IndexError, as the twin
    cdef bint _accept(
        self,
        object raw,
        dict pending,
        Py_ssize_t max_pending_writes,
        object read,
        object author_of,
        dict authors,
        uint64_t height,
        uint64_t time_ms,
        list results,
        Py_ssize_t index,
    ) except -1:
        if not PyBytes_CheckExact(raw) or PyBytes_GET_SIZE(raw) < 2:
            return False
        cdef const unsigned char *data = <const unsigned char *>PyBytes_AS_STRING(raw)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(raw)
        cdef Py_ssize_t kind_at = 2 + data[1]
        cdef Py_ssize_t payload_at = kind_at + AFTER_CHAIN
        if size < payload_at + SIGNATURE or data[kind_at] != self._anchor_kind:
            return False
        cdef Py_ssize_t payload_length = <Py_ssize_t>read_be(data + payload_at - 2, 2)
        if payload_at + payload_length + SIGNATURE != size or payload_length < FIXED:
            return False
        cdef Py_ssize_t cid_length = data[payload_at + 3 * KEY]
        if payload_length != FIXED + cid_length:
            return False
        cdef const unsigned char *sender_bytes = data + kind_at + 1
        cdef uint64_t nonce = read_be(sender_bytes + KEY, 8)

        nonce_key = _key(self._nonce_prefix, sender_bytes)
        stored = _lookup(pending, nonce_key, read)
        cdef uint64_t last_nonce = 0
        if stored is not None:
            if not PyBytes_CheckExact(stored) or PyBytes_GET_SIZE(stored) != 8:
                return False
            last_nonce = read_be(<const unsigned char *>PyBytes_AS_STRING(stored), 8)
        if last_nonce == 0xFFFFFFFFFFFFFFFF or nonce != last_nonce + 1:
            return False
        sender = PyBytes_FromStringAndSize(<const char *>sender_bytes, KEY)
        cdef PyObject *known = PyDict_GetItem(authors, sender)
        if known != NULL:
            author = <object>known
        else:
            author = author_of(sender)
            if author is None:
                return False
            check_author(author)
            authors[sender] = author
        cdef bytes member_id = (<tuple>author)[0]
        cdef bytes organization = (<tuple>author)[1]

        cdef const unsigned char *payload = data + payload_at
        record_key = _key(self._record_prefix, payload)
        if _lookup(pending, record_key, read) is not None:
            return False
        patient_key = _key(self._patient_prefix, payload + KEY)
        entry = _lookup(pending, patient_key, read)
        if not PyBytes_CheckExact(entry) or PyBytes_GET_SIZE(entry) != ENTRY:
            return False
        cdef const unsigned char *entry_bytes = <const unsigned char *>PyBytes_AS_STRING(entry)
        cdef uint64_t record_count = read_be(entry_bytes + KEY, 4)
        if record_count >= self._max_records:
            return False
        cdef Py_ssize_t new_keys = (
            (PyDict_Contains(pending, record_key) == 0)
            + (PyDict_Contains(pending, patient_key) == 0)
            + (PyDict_Contains(pending, nonce_key) == 0)
        )
        if PyDict_Size(pending) + new_keys > max_pending_writes:
            return False

        # The EmrRecord encoding (docs/spec/state.md §3.1): the payload from the patient id to
        # the size is already in record order; then author, organisation, height, time and the
        # erasure fields of a live record.
        cdef Py_ssize_t copied = payload_length - KEY
        cdef Py_ssize_t organization_length = PyBytes_GET_SIZE(organization)
        cdef Py_ssize_t record_length = copied + KEY + 1 + organization_length + 16 + ERASURE
        cdef bytes record = PyBytes_FromStringAndSize(NULL, record_length)
        cdef unsigned char *out = <unsigned char *>PyBytes_AS_STRING(record)
        memcpy(out, payload + KEY, copied)
        out += copied
        memcpy(out, PyBytes_AS_STRING(member_id), KEY)
        out += KEY
        out[0] = <unsigned char>organization_length
        out += 1
        memcpy(out, PyBytes_AS_STRING(organization), organization_length)
        out += organization_length
        write_be(out, height, 8)
        write_be(out + 8, time_ms, 8)
        memset(out + 16, 0, ERASURE)

        cdef bytes patient = PyBytes_FromStringAndSize(NULL, ENTRY)
        out = <unsigned char *>PyBytes_AS_STRING(patient)
        memcpy(out, entry_bytes, KEY)
        write_be(out + KEY, record_count + 1, 4)
        cdef bytes nonce_value = PyBytes_FromStringAndSize(NULL, 8)
        write_be(<unsigned char *>PyBytes_AS_STRING(nonce_value), nonce, 8)

        PyDict_SetItem(pending, record_key, record)
        PyDict_SetItem(pending, patient_key, patient)
        PyDict_SetItem(pending, nonce_key, nonce_value)
        results[index] = self._result_type(0, _message(payload))
        return True
