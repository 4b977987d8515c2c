# cython: language_level=3
"""Compiled twin of `reference/anchors.py`: the ANCHOR_RECORD accept path on raw bytes.

What it does, why, and why it cannot disagree with the general rule is in the twin's docstring.
This twin runs the same checks in the same order, hands the same transactions back to
`deliver`, and builds the same bytes; the difference is that a transaction taken here costs
four dict lookups, six small allocations and a few hundred instructions, not ~80,000
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
from libc.string cimport memcmp, memcpy, memset

from emrchain._core._bigendian cimport read_be, write_be

from emrchain._core.reference.anchors import (
    check_arguments,
    check_author,
    check_block_arguments,
)

# The layout, as compile-time constants: each is `schema.anchor.ACCEPT_PATH_LAYOUT[name]`, and
# `emrchain._core` loads this module only if `LAYOUT` below equals that declaration (a module
# built from an older or edited layout is refused there, with the names that differ).
cdef enum:
    KEY = 32  # ids, keys and hashes
    ENTRY = 36  # patient entry: holder member id, record count
    COUNT_AT = 32  # the record count in the entry
    COUNT = 4  # its width (u32)
    FIXED = 106  # payload: 3 ids, cid length u8, record type u8, size u64
    RECORD_AT = 32  # the record's head (patient id to size) in the payload
    CID_LENGTH_AT = 96  # the cid length in the payload
    SENDER_AFTER_KIND = 1  # envelope offsets from the kind byte: sender, nonce, payload
    NONCE_AFTER_KIND = 33
    NONCE = 8
    PAYLOAD_LENGTH = 2
    PAYLOAD_AFTER_KIND = 43
    SIGNATURE = 64
    HEIGHT = 8  # record: height u64, then time u64
    TIME = 8
    ERASURE = 49  # record: reason u8, erased by, erased height u64, erased time u64
    MESSAGE_ID = 8  # record id bytes named in the message, in hex
    MESSAGE_PREFIX_LENGTH = 7
    MESSAGE_SUFFIX_LENGTH = 9
    MESSAGE = MESSAGE_PREFIX_LENGTH + 2 * MESSAGE_ID + MESSAGE_SUFFIX_LENGTH
    WRAP = 32  # payload: patient_wrap_sha256 after the head (to the size), then custody
    CUSTODY_LENGTH = 2  # custody's length prefix (u16)
    CUSTODY_WRAP = 32  # the digest ending a custody entry
    SOLE_ENTRY = 1  # the count of a custody list naming one organisation
    SOLE_ENTRY_FRAMING = 2  # its count byte and the organisation id's length byte

cdef const char *_MESSAGE_PREFIX = b"record "
cdef const char *_MESSAGE_SUFFIX = b" anchored"
cdef const char *_HEX = b"0123456789abcdef"

LAYOUT = {
    "KEY": KEY,
    "ENTRY": ENTRY,
    "COUNT_AT": COUNT_AT,
    "COUNT": COUNT,
    "FIXED": FIXED,
    "RECORD_AT": RECORD_AT,
    "CID_LENGTH_AT": CID_LENGTH_AT,
    "SENDER_AFTER_KIND": SENDER_AFTER_KIND,
    "NONCE_AFTER_KIND": NONCE_AFTER_KIND,
    "NONCE": NONCE,
    "PAYLOAD_LENGTH": PAYLOAD_LENGTH,
    "PAYLOAD_AFTER_KIND": PAYLOAD_AFTER_KIND,
    "SIGNATURE": SIGNATURE,
    "HEIGHT": HEIGHT,
    "TIME": TIME,
    "ERASURE": ERASURE,
    "MESSAGE_PREFIX": _MESSAGE_PREFIX[:MESSAGE_PREFIX_LENGTH],
    "MESSAGE_SUFFIX": _MESSAGE_SUFFIX[:MESSAGE_SUFFIX_LENGTH],
    "MESSAGE_ID": MESSAGE_ID,
    "WRAP": WRAP,
    "CUSTODY_LENGTH": CUSTODY_LENGTH,
    "CUSTODY_WRAP": CUSTODY_WRAP,
}
"""The constants this twin was compiled with, under `schema.anchor.ACCEPT_PATH_LAYOUT`'s names."""


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
    cdef char *hex_digits = text + MESSAGE_PREFIX_LENGTH
    cdef int i
    memcpy(text, _MESSAGE_PREFIX, MESSAGE_PREFIX_LENGTH)
    for i in range(MESSAGE_ID):
        hex_digits[2 * i] = _HEX[record_id[i] >> 4]
        hex_digits[2 * i + 1] = _HEX[record_id[i] & 0x0F]
    memcpy(hex_digits + 2 * MESSAGE_ID, _MESSAGE_SUFFIX, MESSAGE_SUFFIX_LENGTH)
    return PyUnicode_DecodeASCII(text, MESSAGE, NULL)


cdef class AnchorPath:
    """The ANCHOR_RECORD accept path for one application's key layout (see the twin)."""

    cdef unsigned char _anchor_kind
    cdef unsigned char _nonce_prefix
    cdef unsigned char _record_prefix
    cdef unsigned char _patient_prefix
    cdef unsigned char _custody_prefix
    cdef unsigned char _index_prefix
    cdef uint64_t _max_records
    cdef object _result_type

    def __init__(
        self,
        anchor_kind,
        nonce_prefix,
        record_prefix,
        patient_prefix,
        custody_prefix,
        index_prefix,
        max_records_per_patient,
        result_type,
    ):
        check_arguments(
            anchor_kind,
            nonce_prefix,
            record_prefix,
            patient_prefix,
            custody_prefix,
            index_prefix,
            max_records_per_patient,
        )
        self._anchor_kind = anchor_kind
        self._nonce_prefix = nonce_prefix[0]
        self._record_prefix = record_prefix[0]
        self._patient_prefix = patient_prefix[0]
        self._custody_prefix = custody_prefix[0]
        self._index_prefix = index_prefix[0]
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
        sole_custodian,
    ):
        """Deliver the block's transactions in order; return how many took the accept path.

        Same contract as `reference.anchors.AnchorPath.deliver_block`."""
        check_block_arguments(
            txs, pending, eligible, results, max_pending_writes, height, time_ms, sole_custodian
        )
        cdef bint taking = sole_custodian
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
            if taking and self._accept(
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
        cdef Py_ssize_t kind_at = 2 + data[1]  # version u8, chain id length u8, chain id
        cdef Py_ssize_t payload_at = kind_at + PAYLOAD_AFTER_KIND
        if size < payload_at + SIGNATURE or data[kind_at] != self._anchor_kind:
            return False
        cdef Py_ssize_t payload_length = <Py_ssize_t>read_be(
            data + payload_at - PAYLOAD_LENGTH, PAYLOAD_LENGTH
        )
        if payload_at + payload_length + SIGNATURE != size or payload_length < FIXED:
            return False
        cdef Py_ssize_t cid_length = data[payload_at + CID_LENGTH_AT]
        cdef Py_ssize_t head_end = payload_at + FIXED + cid_length  # then the custody tail
        cdef Py_ssize_t custody_at = head_end + WRAP + CUSTODY_LENGTH
        if custody_at > payload_at + payload_length:
            return False
        cdef Py_ssize_t custody_length = <Py_ssize_t>read_be(
            data + custody_at - CUSTODY_LENGTH, CUSTODY_LENGTH
        )
        if custody_at + custody_length != payload_at + payload_length:
            return False
        cdef const unsigned char *sender_bytes = data + kind_at + SENDER_AFTER_KIND
        cdef uint64_t nonce = read_be(data + kind_at + NONCE_AFTER_KIND, NONCE)

        nonce_key = _key(self._nonce_prefix, sender_bytes)
        stored = _lookup(pending, nonce_key, read)
        cdef uint64_t last_nonce = 0
        if stored is not None:
            if not PyBytes_CheckExact(stored) or PyBytes_GET_SIZE(stored) != NONCE:
                return False
            last_nonce = read_be(<const unsigned char *>PyBytes_AS_STRING(stored), NONCE)
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
        cdef Py_ssize_t organization_length = PyBytes_GET_SIZE(organization)
        if (
            custody_length != SOLE_ENTRY_FRAMING + organization_length + CUSTODY_WRAP
            or data[custody_at] != SOLE_ENTRY
            or data[custody_at + 1] != organization_length
            or memcmp(
                data + custody_at + SOLE_ENTRY_FRAMING,
                PyBytes_AS_STRING(organization),
                organization_length,
            ) != 0
        ):
            return False

        cdef const unsigned char *payload = data + payload_at
        record_key = _key(self._record_prefix, payload)
        if _lookup(pending, record_key, read) is not None:
            return False
        cdef const unsigned char *head = payload + RECORD_AT  # the patient id starts the record
        patient_key = _key(self._patient_prefix, head)
        entry = _lookup(pending, patient_key, read)
        if not PyBytes_CheckExact(entry) or PyBytes_GET_SIZE(entry) != ENTRY:
            return False
        cdef const unsigned char *entry_bytes = <const unsigned char *>PyBytes_AS_STRING(entry)
        cdef uint64_t record_count = read_be(entry_bytes + COUNT_AT, COUNT)
        if record_count >= self._max_records:
            return False
        custody_key = _key(self._custody_prefix, payload)
        # The patient's record index entry: its sequence is the record count before the anchor.
        cdef bytes index_key = PyBytes_FromStringAndSize(NULL, 1 + KEY + COUNT)
        cdef unsigned char *index_out = <unsigned char *>PyBytes_AS_STRING(index_key)
        index_out[0] = self._index_prefix
        memcpy(index_out + 1, head, KEY)
        memcpy(index_out + 1 + KEY, entry_bytes + COUNT_AT, COUNT)
        cdef Py_ssize_t new_keys = (
            (PyDict_Contains(pending, record_key) == 0)
            + (PyDict_Contains(pending, custody_key) == 0)
            + (PyDict_Contains(pending, index_key) == 0)
            + (PyDict_Contains(pending, patient_key) == 0)
            + (PyDict_Contains(pending, nonce_key) == 0)
        )
        if PyDict_Size(pending) + new_keys > max_pending_writes:
            return False

        # The EmrRecord encoding (`schema.anchor.EMR_RECORD`): the payload from the patient id
        # to the size is already in record order; then author, organisation, height, time and
        # the erasure fields of a live record.
        cdef Py_ssize_t copied = head_end - payload_at - RECORD_AT
        cdef Py_ssize_t record_length = (
            copied + KEY + 1 + organization_length + HEIGHT + TIME + ERASURE
        )
        cdef bytes record = PyBytes_FromStringAndSize(NULL, record_length)
        cdef unsigned char *out = <unsigned char *>PyBytes_AS_STRING(record)
        memcpy(out, head, copied)
        out += copied
        memcpy(out, PyBytes_AS_STRING(member_id), KEY)
        out += KEY
        out[0] = <unsigned char>organization_length
        out += 1
        memcpy(out, PyBytes_AS_STRING(organization), organization_length)
        out += organization_length
        write_be(out, height, HEIGHT)
        write_be(out + HEIGHT, time_ms, TIME)
        memset(out + HEIGHT + TIME, 0, ERASURE)

        # RecordCustody: the patient's wrap digest, then the one-entry custody list as is.
        cdef bytes custody = PyBytes_FromStringAndSize(NULL, WRAP + custody_length)
        out = <unsigned char *>PyBytes_AS_STRING(custody)
        memcpy(out, data + head_end, WRAP)
        memcpy(out + WRAP, data + custody_at, custody_length)

        cdef bytes patient = PyBytes_FromStringAndSize(NULL, ENTRY)
        out = <unsigned char *>PyBytes_AS_STRING(patient)
        memcpy(out, entry_bytes, COUNT_AT)
        write_be(out + COUNT_AT, record_count + 1, COUNT)
        cdef bytes nonce_value = PyBytes_FromStringAndSize(NULL, NONCE)
        write_be(<unsigned char *>PyBytes_AS_STRING(nonce_value), nonce, NONCE)

        # The rule's order: record, record custody, record index entry, patient entry; then the
        # pipeline's nonce.
        PyDict_SetItem(pending, record_key, record)
        PyDict_SetItem(pending, custody_key, custody)
        PyDict_SetItem(pending, index_key, PyBytes_FromStringAndSize(<const char *>payload, KEY))
        PyDict_SetItem(pending, patient_key, patient)
        PyDict_SetItem(pending, nonce_key, nonce_value)
        results[index] = self._result_type(0, _message(payload))
        return True
