# cython: language_level=3
"""Compiled twin of `reference/merkle.py`: the RFC 6962 / RFC 9162 §2.1 Merkle Tree Hash.

The definition, argument checks and exceptions are documented in `reference/merkle.py` and are
identical here. Speed comes from OpenSSL's low-level SHA256_Init/Update/Final, which use the
CPU's SHA extensions without the per-call EVP/hashlib object overhead, and from hashing the
whole tree without the GIL: leaf pointers are gathered first (the leaves tuple keeps them
alive; bytes are immutable), then the tree is reduced level by level in one scratch buffer.
"""

import operator

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize
from cpython.bytes cimport PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

from emrchain.schema.verdicts import MerkleError

from emrchain._core._sha256 cimport SHA256_CTX, SHA256_Final, SHA256_Init, SHA256_Update

cdef enum:
    HASH_BYTES = 32
    PROOF_LIMIT = 64  # a tree of at most 2^63 leaves is at most 63 levels deep

MAX_TREE_SIZE = 1 << 63
MAX_PROOF_LENGTH = PROOF_LIMIT
EMPTY_ROOT = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

cdef unsigned char _LEAF_PREFIX = 0
cdef unsigned char _NODE_PREFIX = 1


cdef inline void _hash_leaf(const unsigned char *data, size_t length,
                            unsigned char *out) noexcept nogil:
    cdef SHA256_CTX ctx
    SHA256_Init(&ctx)
    SHA256_Update(&ctx, &_LEAF_PREFIX, 1)
    SHA256_Update(&ctx, data, length)
    SHA256_Final(out, &ctx)


cdef inline void _hash_node(const unsigned char *left, const unsigned char *right,
                            unsigned char *out) noexcept nogil:
    # `out` may alias `left`: Update consumes (or copies) all input before Final writes out.
    cdef SHA256_CTX ctx
    SHA256_Init(&ctx)
    SHA256_Update(&ctx, &_NODE_PREFIX, 1)
    SHA256_Update(&ctx, left, HASH_BYTES)
    SHA256_Update(&ctx, right, HASH_BYTES)
    SHA256_Final(out, &ctx)


cdef Py_ssize_t _next_level(unsigned char *nodes, Py_ssize_t count) noexcept nogil:
    """Replace the `count` nodes in `nodes` by their parents in place; return the new count.

    Parent i only reads nodes 2i and 2i+1 (>= i), so writing in place is safe. An odd last node
    is promoted unchanged, which is RFC 6962's unbalanced split (see reference/merkle.py).
    """
    cdef Py_ssize_t i
    cdef Py_ssize_t pairs = count >> 1
    for i in range(pairs):
        _hash_node(nodes + 2 * i * HASH_BYTES, nodes + (2 * i + 1) * HASH_BYTES,
                   nodes + i * HASH_BYTES)
    if count & 1:
        memcpy(nodes + pairs * HASH_BYTES, nodes + (count - 1) * HASH_BYTES, HASH_BYTES)
    return pairs + (count & 1)


cdef tuple _checked_bytes(object items, str what):
    """Snapshot `items` as a tuple (it also keeps the buffers alive) of bytes objects."""
    cdef tuple snapshot = tuple(items)
    cdef Py_ssize_t position
    for position in range(len(snapshot)):
        if not PyBytes_Check(snapshot[position]):
            raise TypeError(
                f"{what} {position} is {type(snapshot[position]).__name__}, not bytes")
    return snapshot


cdef unsigned char *_leaf_level(tuple items) except NULL:
    """Return a malloc'd buffer holding the leaf hashes of `items` (caller frees it)."""
    cdef Py_ssize_t n = len(items)
    cdef Py_ssize_t i
    cdef const unsigned char **data = <const unsigned char **>malloc(n * sizeof(void *))
    cdef size_t *lengths = <size_t *>malloc(n * sizeof(size_t))
    cdef unsigned char *nodes = <unsigned char *>malloc(n * HASH_BYTES)
    if data == NULL or lengths == NULL or nodes == NULL:
        free(data)
        free(lengths)
        free(nodes)
        raise MemoryError()
    for i in range(n):
        data[i] = <const unsigned char *>PyBytes_AS_STRING(items[i])
        lengths[i] = <size_t>PyBytes_GET_SIZE(items[i])
    with nogil:
        for i in range(n):
            _hash_leaf(data[i], lengths[i], nodes + i * HASH_BYTES)
    free(data)
    free(lengths)
    return nodes


def merkle_root(leaves):
    """Return the 32-byte RFC 6962 Merkle Tree Hash of `leaves` (SHA-256(b"") when empty).

    Raises TypeError if a leaf is not bytes.
    """
    cdef tuple items = _checked_bytes(leaves, "leaf")
    cdef Py_ssize_t count = len(items)
    if count == 0:
        return EMPTY_ROOT
    cdef unsigned char *nodes = _leaf_level(items)
    with nogil:
        while count > 1:
            count = _next_level(nodes, count)
    root = PyBytes_FromStringAndSize(<char *>nodes, HASH_BYTES)
    free(nodes)
    return root


def merkle_proof(leaves, index):
    """Return the audit path of leaf `index`, bottom-up (RFC 9162 §2.1.3.1).

    Raises TypeError for non-bytes leaves or a non-integer index and MerkleError if `index` is
    not in range(len(leaves)) (so always for an empty tree).
    """
    cdef tuple items = _checked_bytes(leaves, "leaf")
    index = operator.index(index)
    if not 0 <= index < len(items):
        raise MerkleError(f"leaf index {index} out of range for a tree of {len(items)} leaves")
    cdef Py_ssize_t position = index
    cdef Py_ssize_t count = len(items)
    cdef Py_ssize_t sibling
    cdef unsigned char *nodes = _leaf_level(items)
    cdef unsigned char path[PROOF_LIMIT * HASH_BYTES]
    cdef int depth = 0
    with nogil:
        while count > 1:
            sibling = position ^ 1
            # A promoted last node has no sibling on this level and contributes nothing.
            if sibling < count:
                memcpy(path + depth * HASH_BYTES, nodes + sibling * HASH_BYTES, HASH_BYTES)
                depth += 1
            count = _next_level(nodes, count)
            position >>= 1
    free(nodes)
    cdef list result = []
    cdef int i
    for i in range(depth):
        result.append(PyBytes_FromStringAndSize(<char *>path + i * HASH_BYTES, HASH_BYTES))
    return result


cdef bint _verify_path(const unsigned char *root, const unsigned char *leaf, size_t leaf_length,
                       uint64_t fn, uint64_t sn, const unsigned char **path,
                       Py_ssize_t depth) noexcept nogil:
    """RFC 9162 §2.1.3.2 steps 2-5; every path element is known to be 32 bytes long."""
    cdef unsigned char node[HASH_BYTES]
    cdef int i
    _hash_leaf(leaf, leaf_length, node)
    for i in range(depth):
        if sn == 0:
            return False
        if (fn & 1) or fn == sn:
            _hash_node(path[i], node, node)
            # Skip the levels where this node was promoted without a sibling.
            while not (fn & 1) and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            _hash_node(node, path[i], node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and memcmp(node, root, HASH_BYTES) == 0


def verify_merkle_proof(root, leaf, index, total, proof):
    """Check an audit path with the RFC 9162 §2.1.3.2 algorithm.

    Returns False for every proof that does not verify, including a path of the wrong length
    for (index, total) and elements that are not 32 bytes long. Raises TypeError for non-bytes
    root/leaf/elements or non-integer index/total, and MerkleError only for impossible
    arguments: total < 1, total > 2^63, index outside range(total), more than 64 elements.
    The same proof can verify for another (index, total) of the same path shape; callers take
    `total` from an authenticated source (see reference/merkle.py).
    """
    if not PyBytes_Check(root) or not PyBytes_Check(leaf):
        raise TypeError("root and leaf must be bytes")
    index = operator.index(index)
    total = operator.index(total)
    cdef tuple elements = _checked_bytes(proof, "proof element")
    if not 1 <= total <= MAX_TREE_SIZE:
        raise MerkleError(f"tree size {total} outside 1..2^63")
    if not 0 <= index < total:
        raise MerkleError(f"leaf index {index} out of range for a tree of {total} leaves")
    cdef Py_ssize_t depth = len(elements)
    if depth > MAX_PROOF_LENGTH:
        raise MerkleError(f"proof has {depth} elements, more than {MAX_PROOF_LENGTH}")
    if PyBytes_GET_SIZE(root) != HASH_BYTES:
        return False
    cdef const unsigned char *path[PROOF_LIMIT]
    cdef int i
    for i in range(depth):
        # The pure twin rejects a short element when the loop reaches it; rejecting up front
        # gives the same answer because the result is False either way.
        if PyBytes_GET_SIZE(elements[i]) != HASH_BYTES:
            return False
        path[i] = <const unsigned char *>PyBytes_AS_STRING(elements[i])
    return _verify_path(<const unsigned char *>PyBytes_AS_STRING(root),
                        <const unsigned char *>PyBytes_AS_STRING(leaf),
                        <size_t>PyBytes_GET_SIZE(leaf), <uint64_t>index,
                        <uint64_t>(total - 1), path, depth)
