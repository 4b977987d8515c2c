"""Pure-Python twin of `_merkle.pyx`: the RFC 6962 / RFC 9162 §2.1 Merkle Tree Hash.

Definition (normative, `docs/spec/encoding.md`):

* MTH([]) = SHA-256(b"")
* MTH([d0]) = SHA-256(0x00 || d0)                      (leaf hash)
* MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k = largest power of two < n

Leaves are arbitrary `bytes` (the chain feeds 32-byte transaction ids). Both twins compute the
tree level by level: adjacent nodes are paired and an odd last node is promoted unchanged to the
next level. That gives exactly the recursive definition above because the left subtree of every
split holds a power-of-two number of leaves, so pairing never crosses a split point
(tests/core/test_merkle.py checks it against a naive recursive implementation).

Argument checks, in this order, are the same in both twins: every leaf / proof element must be
`bytes` (TypeError), index and total must be integers (TypeError, via `operator.index`), then
the range checks raise MerkleError.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Sequence

from emrchain.schema.verdicts import MerkleError

HASH_BYTES = 32
MAX_TREE_SIZE = 1 << 63
"""Largest `total` verify_merkle_proof accepts (the compiled twin keeps sizes in a uint64)."""
MAX_PROOF_LENGTH = 64
"""A tree of at most 2^63 leaves is at most 63 levels deep; a longer proof is refused."""

_LEAF = b"\x00"
_NODE = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def _checked_bytes(items: Iterable[bytes], what: str) -> tuple[bytes, ...]:
    """Snapshot `items` as a tuple and make sure every element is a bytes object."""
    snapshot = tuple(items)
    for position, item in enumerate(snapshot):
        if not isinstance(item, bytes):
            raise TypeError(f"{what} {position} is {type(item).__name__}, not bytes")
    return snapshot


def _leaf_level(leaves: tuple[bytes, ...]) -> list[bytes]:
    sha256 = hashlib.sha256
    return [sha256(_LEAF + leaf).digest() for leaf in leaves]


def _next_level(level: list[bytes]) -> list[bytes]:
    """Pair adjacent nodes; an odd last node is promoted unchanged (RFC 6962's unbalanced split)."""
    sha256 = hashlib.sha256
    parents = [
        sha256(_NODE + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
    ]
    if len(level) & 1:
        parents.append(level[-1])
    return parents


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Return the 32-byte RFC 6962 Merkle Tree Hash of `leaves` (SHA-256(b"") when empty).

    Raises TypeError if a leaf is not bytes.
    """
    items = _checked_bytes(leaves, "leaf")
    if not items:
        return EMPTY_ROOT
    level = _leaf_level(items)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Return the audit path of leaf `index`, bottom-up (RFC 9162 §2.1.3.1).

    Raises TypeError for non-bytes leaves or a non-integer index and MerkleError if `index` is
    not in range(len(leaves)) (so always for an empty tree).
    """
    items = _checked_bytes(leaves, "leaf")
    index = operator.index(index)
    if not 0 <= index < len(items):
        raise MerkleError(f"leaf index {index} out of range for a tree of {len(items)} leaves")
    level = _leaf_level(items)
    path: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        # A promoted last node has no sibling on this level and contributes nothing.
        if sibling < len(level):
            path.append(level[sibling])
        level = _next_level(level)
        index >>= 1
    return path


def verify_merkle_proof(
    root: bytes, leaf: bytes, index: int, total: int, proof: Sequence[bytes]
) -> bool:
    """Check an audit path with the RFC 9162 §2.1.3.2 algorithm.

    Returns False for every proof that does not verify, including a path of the wrong length
    for (index, total) and elements that are not 32 bytes long. Raises TypeError for non-bytes
    root/leaf/elements or non-integer index/total, and MerkleError only for impossible
    arguments: total < 1, total > 2^63, index outside range(total), more than 64 elements.

    Note: the algorithm binds the leaf's position only through the path's shape, so the same
    proof can also verify for another (index, total) with the same shape (e.g. leaf 2 of 3 and
    leaf 1 of 2). Callers must take `total` from an authenticated source such as a block header.
    """
    if not isinstance(root, bytes) or not isinstance(leaf, bytes):
        raise TypeError("root and leaf must be bytes")
    index = operator.index(index)
    total = operator.index(total)
    path = _checked_bytes(proof, "proof element")
    if not 1 <= total <= MAX_TREE_SIZE:
        raise MerkleError(f"tree size {total} outside 1..2^63")
    if not 0 <= index < total:
        raise MerkleError(f"leaf index {index} out of range for a tree of {total} leaves")
    if len(path) > MAX_PROOF_LENGTH:
        raise MerkleError(f"proof has {len(path)} elements, more than {MAX_PROOF_LENGTH}")

    sha256 = hashlib.sha256
    fn, sn = index, total - 1
    node = sha256(_LEAF + leaf).digest()
    for element in path:
        if sn == 0 or len(element) != HASH_BYTES:
            return False
        if fn & 1 or fn == sn:
            node = sha256(_NODE + element + node).digest()
            # Skip the levels where this node was promoted without a sibling.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = sha256(_NODE + node + element).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == root
