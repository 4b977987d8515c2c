# cython: language_level=3
"""Compiled twin of `reference/ed25519.py`: Ed25519 batch verification on libsodium.

The acceptance rules, argument checks and exceptions are documented in `reference/ed25519.py`
and are identical here: S < L, canonical and non-small-order R and A, then libsodium's
crypto_sign_verify_detached (Debian's 1.0.18 here; the explicit checks make the verdict
independent of the libsodium version).

Threading: the Python objects are snapshotted into tuples (which keep the immutable bytes
alive) and reduced to raw pointers; then the GIL is released and the items are spread over
plain pthreads that are created and joined inside each call. No thread pool outlives a call,
so os.fork() from the node (which forks worker processes) never inherits a half-alive pool,
unlike libgomp's OpenMP pool.
"""

import operator
import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize
from cpython.bytes cimport PyBytes_GET_SIZE
from libc.stdlib cimport free, malloc

from emrchain.schema.verdicts import CoreError, LimitError

cdef extern from "sodium.h" nogil:
    int sodium_init()
    int crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m,
                                    unsigned long long mlen, const unsigned char *pk)

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_t:
        pass
    ctypedef struct pthread_attr_t:
        pass
    int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                       void *(*start)(void *) noexcept nogil, void *arg)
    int pthread_join(pthread_t thread, void **retval)

cdef enum:
    THREAD_LIMIT = 256
    MIN_ITEMS_PER_THREAD = 16  # below this, creating a thread costs more than it saves
    CLAIM_ITEMS = 16  # items a thread claims at once: ~0.8 ms of work, one atomic add
    ENVELOPE_FIXED_BYTES = 109  # schema.ENVELOPE_FIXED_BYTES, checked at import below

FIELD_PRIME = 2**255 - 19
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
SMALL_ORDER_Y = (
    0,
    1,
    FIELD_PRIME - 1,
    2707385501144840649318225287225658788936804267575313519463743609750303402022,
    55188659117513257062467267217118295137698188065244968500265048394206261417927,
    FIELD_PRIME,
    FIELD_PRIME + 1,
)
MAX_THREADS = THREAD_LIMIT

cdef enum:
    BLOCKLIST_SIZE = 7

# Little-endian byte tables filled from the integers above at import.
cdef unsigned char _ORDER_LE[32]
cdef unsigned char _BLOCKLIST[BLOCKLIST_SIZE][32]


ctypedef struct Item:
    const unsigned char *pk    # NULL: malformed item, verdict 0 without any work
    const unsigned char *sig
    const unsigned char *msg
    unsigned long long mlen


ctypedef struct Job:
    const Item *items
    unsigned char *out
    Py_ssize_t count
    Py_ssize_t next_item  # shared claim counter, advanced atomically by every thread


cdef extern from *:
    """
    static inline Py_ssize_t emrchain_claim(Py_ssize_t *counter, Py_ssize_t amount) {
        return __atomic_fetch_add(counter, amount, __ATOMIC_RELAXED);
    }
    """
    Py_ssize_t emrchain_claim(Py_ssize_t *counter, Py_ssize_t amount) nogil


cdef bint _scalar_allowed(const unsigned char *s) noexcept nogil:
    """Rule 1: S < L, comparing little-endian bytes from the most significant one down."""
    cdef int i
    for i in range(31, -1, -1):
        if s[i] != _ORDER_LE[i]:
            return s[i] < _ORDER_LE[i]
    return False


cdef bint _point_allowed(const unsigned char *e) noexcept nogil:
    """Rules 2 and 3: canonical y (sign bit masked) and not a small-order encoding."""
    cdef int i, k
    cdef bint all_ff = True
    for i in range(1, 31):
        if e[i] != 0xFF:
            all_ff = False
            break
    # y >= p = 2^255 - 19 exactly when y is 0x7fff...ffed .. 0x7fff...ffff.
    if all_ff and (e[31] & 0x7F) == 0x7F and e[0] >= 0xED:
        return False
    for k in range(BLOCKLIST_SIZE):
        if (e[31] & 0x7F) != _BLOCKLIST[k][31]:
            continue
        for i in range(31):
            if e[i] != _BLOCKLIST[k][i]:
                break
        else:
            return False
    return True


cdef bint _rules_allowed(const unsigned char *pk, const unsigned char *sig) noexcept nogil:
    """Rules 1-3 for a 32-byte key and a 64-byte signature (also behind `_prefilter`)."""
    return _scalar_allowed(sig + 32) and _point_allowed(sig) and _point_allowed(pk)


cdef unsigned char _verify_item(const Item *item) noexcept nogil:
    # With libsodium 1.0.18 these checks overlap its own; they exist for other versions.
    if item.pk == NULL or not _rules_allowed(item.pk, item.sig):
        return 0
    return crypto_sign_verify_detached(item.sig, item.msg, item.mlen, item.pk) == 0


cdef void *_worker(void *arg) noexcept nogil:
    # Threads claim small chunks from one shared counter instead of owning a fixed share: when
    # the OS deschedules a thread (another process on its core), the others take the rest of
    # the batch, so a busy machine costs throughput but never stalls the batch on one thread.
    # Threads write neighbouring bytes of `out`, but once per ~50 us verify: false sharing is
    # noise.
    cdef Job *job = <Job *>arg
    cdef Py_ssize_t start, end, i
    while True:
        start = emrchain_claim(&job.next_item, CLAIM_ITEMS)
        if start >= job.count:
            return NULL
        end = start + CLAIM_ITEMS
        if end > job.count:
            end = job.count
        for i in range(start, end):
            job.out[i] = _verify_item(&job.items[i])


cdef void _run(const Item *items, Py_ssize_t count, unsigned char *out,
               int threads) noexcept nogil:
    """Verify all items on `threads` threads (the calling thread is one of them)."""
    cdef Job job
    cdef pthread_t tids[THREAD_LIMIT]
    cdef bint started[THREAD_LIMIT]
    cdef Py_ssize_t useful = (count + MIN_ITEMS_PER_THREAD - 1) // MIN_ITEMS_PER_THREAD
    cdef int t
    if threads > useful:
        threads = <int>useful if useful > 0 else 1
    job.items = items
    job.out = out
    job.count = count
    job.next_item = 0
    for t in range(1, threads):
        # A thread that cannot be created (e.g. RLIMIT_NPROC) is simply absent: the calling
        # thread and the others claim its chunks.
        started[t] = pthread_create(&tids[t], NULL, _worker, &job) == 0
    _worker(&job)
    for t in range(1, threads):
        if started[t]:
            pthread_join(tids[t], NULL)


def _resolve_threads(threads):
    threads = operator.index(threads)
    if not 0 <= threads <= MAX_THREADS:
        raise LimitError(f"threads must be within 0..{MAX_THREADS}, got {threads}")
    if threads == 0:
        threads = min(os.cpu_count() or 1, MAX_THREADS)
    return threads


cdef tuple _checked_bytes(object items, str what):
    cdef tuple snapshot = tuple(items)
    cdef Py_ssize_t position
    for position in range(len(snapshot)):
        if not PyBytes_Check(snapshot[position]):
            raise TypeError(
                f"{what} {position} is {type(snapshot[position]).__name__}, not bytes")
    return snapshot


cdef bytes _verify_items(Item *items, Py_ssize_t count, int threads):
    """Run the prepared items without the GIL; return the verdict bytes and free `items`."""
    cdef unsigned char *out
    try:
        result = PyBytes_FromStringAndSize(NULL, count)
        # The new bytes object is not shared with anyone yet, so workers may fill it in place.
        out = <unsigned char *>PyBytes_AS_STRING(result)
        with nogil:
            _run(items, count, out, threads)
    finally:
        free(items)
    return result


def _prefilter(public_key, signature):
    """Rules 0-3 only, without libsodium (private; tests compare it with the pure twin's)."""
    if not PyBytes_Check(public_key) or not PyBytes_Check(signature):
        raise TypeError("public_key and signature must be bytes")
    if PyBytes_GET_SIZE(public_key) != 32 or PyBytes_GET_SIZE(signature) != 64:
        return False
    return bool(_rules_allowed(<const unsigned char *>PyBytes_AS_STRING(public_key),
                               <const unsigned char *>PyBytes_AS_STRING(signature)))


cdef Item *_alloc_items(Py_ssize_t count) except NULL:
    cdef Item *items = <Item *>malloc((count if count > 0 else 1) * sizeof(Item))
    if items == NULL:
        raise MemoryError()
    return items


def verify_batch(public_keys, messages, signatures, threads=0):
    """Verify signatures[i] over messages[i] under public_keys[i]; one byte per item (1 = valid).

    Wrong-length keys or signatures are invalid (0), not errors. Raises LimitError for threads
    outside 0..256, CoreError if the sequences differ in length and TypeError for non-bytes
    items. The result never depends on `threads`.
    """
    cdef int workers = _resolve_threads(threads)
    cdef tuple keys = tuple(public_keys)
    cdef tuple texts = tuple(messages)
    cdef tuple sigs = tuple(signatures)
    if not len(keys) == len(texts) == len(sigs):
        raise CoreError(
            f"public_keys, messages and signatures differ in length "
            f"({len(keys)}, {len(texts)}, {len(sigs)})")
    _checked_bytes(keys, "public key")
    _checked_bytes(texts, "message")
    _checked_bytes(sigs, "signature")
    cdef Py_ssize_t count = len(keys)
    cdef Py_ssize_t i
    cdef Item *items = _alloc_items(count)
    for i in range(count):
        key, text, sig = keys[i], texts[i], sigs[i]
        if PyBytes_GET_SIZE(key) != 32 or PyBytes_GET_SIZE(sig) != 64:
            items[i].pk = NULL
            continue
        items[i].pk = <const unsigned char *>PyBytes_AS_STRING(key)
        items[i].sig = <const unsigned char *>PyBytes_AS_STRING(sig)
        items[i].msg = <const unsigned char *>PyBytes_AS_STRING(text)
        items[i].mlen = <unsigned long long>PyBytes_GET_SIZE(text)
    return _verify_items(items, count, workers)


def verify_transactions(txs, threads=0):
    """Verify each transaction's own signature (sender key, message = all but the signature).

    One byte per transaction (1 = valid); an item too short for its envelope is 0. Raises
    LimitError for threads outside 0..256 and TypeError for non-bytes items. Zero-copy: the
    key, message and signature are pointers into the transaction buffers.
    """
    cdef int workers = _resolve_threads(threads)
    cdef tuple items_in = _checked_bytes(txs, "transaction")
    cdef Py_ssize_t count = len(items_in)
    cdef Py_ssize_t i, size, chain_id_length
    cdef const unsigned char *raw
    cdef Item *items = _alloc_items(count)
    for i in range(count):
        raw = <const unsigned char *>PyBytes_AS_STRING(items_in[i])
        size = PyBytes_GET_SIZE(items_in[i])
        items[i].pk = NULL
        if size < ENVELOPE_FIXED_BYTES:
            continue
        chain_id_length = raw[1]
        if size < ENVELOPE_FIXED_BYTES + chain_id_length:
            continue
        # version | chain_id_len | chain_id | kind | sender ...; signature = last 64 bytes.
        items[i].pk = raw + 3 + chain_id_length
        items[i].sig = raw + size - 64
        items[i].msg = raw
        items[i].mlen = <unsigned long long>(size - 64)
    return _verify_items(items, count, workers)


def _init_tables():
    from emrchain import schema

    if schema.ENVELOPE_FIXED_BYTES != ENVELOPE_FIXED_BYTES:
        raise ImportError("_ed25519 was built for another envelope layout; rebuild it")
    cdef bytes encoded = GROUP_ORDER.to_bytes(32, "little")
    cdef int i, k
    for i in range(32):
        _ORDER_LE[i] = encoded[i]
    for k in range(BLOCKLIST_SIZE):
        encoded = SMALL_ORDER_Y[k].to_bytes(32, "little")
        for i in range(32):
            _BLOCKLIST[k][i] = encoded[i]


# sodium_init() picks the CPU-specific code paths and must run before any other call; it
# returns -1 only on failure (0: initialised now, 1: already initialised).
if sodium_init() < 0:
    raise ImportError("sodium_init() failed; libsodium is unusable")
_init_tables()
