"""Merkle trees: both twins against a naive RFC 6962 / 9162 implementation and each other.

The twins compute the tree iteratively (pair adjacent nodes, promote an odd last node); the
reference below is the recursive definition typed straight from the RFC, so agreement on every
tree size up to 300 (and on random trees) is the proof that the two definitions coincide.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.schema.verdicts import MerkleError
from tests.core.conftest import import_twin_module

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "merkle.json").read_text())
MODULES = {"cython": "emrchain._core._merkle", "python": "emrchain._core.reference.merkle"}


def load_twin(name: str) -> ModuleType:
    """Import one twin's module directly (the selector would also need `_txcheck`)."""
    return import_twin_module(MODULES[name], compiled=name == "cython")


@pytest.fixture(scope="module", params=sorted(MODULES))
def merkle_twin(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request.param)


@pytest.fixture(scope="module")
def merkle_twins() -> tuple[ModuleType, ModuleType]:
    return load_twin("cython"), load_twin("python")


# --- Naive reference: RFC 9162 §2.1.1 (MTH) and §2.1.3.1 (PATH), recursive --------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return sha256(b"\x00" + leaves[0])
    k = split_point(len(leaves))
    return sha256(b"\x01" + ref_root(leaves[:k]) + ref_root(leaves[k:]))


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = split_point(len(leaves))
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_root(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_root(leaves[:k])]


def rule_leaves(n: int) -> list[bytes]:
    return [sha256(i.to_bytes(4, "big")) for i in range(n)]


def flip_bit(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


leaf_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=70)
# With repeated leaves another index can be a true statement (leaves [a, a]: leaf 1 is a too).
distinct_leaf_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=70, unique=True)


# --- Vectors --------------------------------------------------------------------------------


def test_vectors_match_reference_and_twin(merkle_twin: ModuleType) -> None:
    for case in VECTORS["roots"]:
        leaves = rule_leaves(case["n"])
        assert ref_root(leaves).hex() == case["root"], case["n"]
        assert merkle_twin.merkle_root(leaves).hex() == case["root"], case["n"]
    for case in VECTORS["proofs"]:
        leaves, index = rule_leaves(case["n"]), case["index"]
        expected = [bytes.fromhex(h) for h in case["path"]]
        assert ref_path(index, leaves) == expected
        assert merkle_twin.merkle_proof(leaves, index) == expected
        assert merkle_twin.verify_merkle_proof(
            ref_root(leaves), leaves[index], index, case["n"], expected
        )


def test_rfc6962_reference_roots(merkle_twin: ModuleType) -> None:
    """Published tree heads (certificate-transparency test data) anchor the reference too."""
    reference = VECTORS["rfc6962_reference"]
    leaves = [bytes.fromhex(h) for h in reference["leaves"]]
    for n, root in enumerate(reference["roots"], start=1):
        assert ref_root(leaves[:n]).hex() == root
        assert merkle_twin.merkle_root(leaves[:n]).hex() == root


def test_empty_tree(merkle_twin: ModuleType) -> None:
    assert merkle_twin.merkle_root([]) == sha256(b"")
    with pytest.raises(MerkleError):
        merkle_twin.merkle_proof([], 0)


def test_iterative_equals_recursive_for_every_size(merkle_twin: ModuleType) -> None:
    """Level-by-level pairing with odd-node promotion == RFC 6962's recursive split."""
    leaves = rule_leaves(300)
    for n in range(301):
        assert merkle_twin.merkle_root(leaves[:n]) == ref_root(leaves[:n]), n
    for n in range(1, 70):
        for index in range(n):
            assert merkle_twin.merkle_proof(leaves[:n], index) == ref_path(index, leaves[:n])


def test_wrong_index_same_total_never_verifies(merkle_twin: ModuleType) -> None:
    for n in range(1, 40):
        leaves = rule_leaves(n)
        root = ref_root(leaves)
        for index in range(n):
            proof = ref_path(index, leaves)
            for other in range(n):
                verdict = merkle_twin.verify_merkle_proof(root, leaves[index], other, n, proof)
                assert verdict == (other == index), (n, index, other)


def test_total_is_bound_only_through_the_path_shape(merkle_twin: ModuleType) -> None:
    """RFC 9162 verification does not bind `total` by itself: leaf 2 of 3 has the same path
    shape as leaf 1 of 2. Pinned so both twins keep the RFC behaviour; callers must take the
    total from an authenticated header."""
    leaves = rule_leaves(3)
    proof = ref_path(2, leaves)
    assert merkle_twin.verify_merkle_proof(ref_root(leaves), leaves[2], 2, 3, proof)
    assert merkle_twin.verify_merkle_proof(ref_root(leaves), leaves[2], 1, 2, proof)


def test_malformed_proofs_are_false(merkle_twin: ModuleType) -> None:
    leaves = rule_leaves(9)
    root, proof = ref_root(leaves), ref_path(3, leaves)
    verify = merkle_twin.verify_merkle_proof
    assert verify(root, leaves[3], 3, 9, proof)
    assert not verify(root, leaves[3], 3, 9, proof[:-1])
    assert not verify(root, leaves[3], 3, 9, [*proof, proof[0]])
    assert not verify(root, leaves[3], 3, 9, [proof[0][:31], *proof[1:]])
    assert not verify(root, leaves[3], 3, 9, [*proof[:-1], proof[-1] + b"\x00"])
    assert not verify(root[:31], leaves[3], 3, 9, proof)
    assert not verify(root, leaves[3], 3, 9, [root] * 64)  # longest allowed: False, no error
    assert verify(ref_root(leaves[:1]), leaves[0], 0, 1, [])
    assert verify(ref_root(leaves[:1]), leaves[0], 0, 2**63, []) is False


@pytest.mark.parametrize(
    ("index", "total", "proof_length"),
    [(0, 0, 0), (-1, 5, 0), (5, 5, 0), (0, 2**63 + 1, 0), (2**63, 2**63, 0), (0, 5, 65)],
)
def test_impossible_arguments_raise(
    merkle_twin: ModuleType, index: int, total: int, proof_length: int
) -> None:
    with pytest.raises(MerkleError):
        merkle_twin.verify_merkle_proof(bytes(32), b"x", index, total, [bytes(32)] * proof_length)


def test_type_errors(merkle_twin: ModuleType) -> None:
    for bad_leaves in ([b"a", "b"], [b"a", bytearray(b"b")], [1], b"abc", None):
        with pytest.raises(TypeError):
            merkle_twin.merkle_root(bad_leaves)
        with pytest.raises(TypeError):
            merkle_twin.merkle_proof(bad_leaves, 0)
    with pytest.raises(TypeError):
        merkle_twin.merkle_proof([b"a"], 0.0)
    with pytest.raises(MerkleError):
        merkle_twin.merkle_proof([b"a"], 1)
    with pytest.raises(TypeError):
        merkle_twin.verify_merkle_proof("r", b"x", 0, 1, [])
    with pytest.raises(TypeError):
        merkle_twin.verify_merkle_proof(bytes(32), b"x", 0, 2, [memoryview(bytes(32))])
    with pytest.raises(TypeError):
        merkle_twin.verify_merkle_proof(bytes(32), b"x", 0, "2", [])


def test_large_tree_matches(merkle_twins: tuple[ModuleType, ModuleType]) -> None:
    compiled, pure = merkle_twins
    leaves = rule_leaves(20_000)
    assert compiled.merkle_root(leaves) == pure.merkle_root(leaves)
    assert compiled.merkle_proof(leaves, 12_345) == pure.merkle_proof(leaves, 12_345)


# --- Hypothesis -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_twins_agree_with_reference(
    merkle_twins: tuple[ModuleType, ModuleType], leaves: list[bytes], data: st.DataObject
) -> None:
    compiled, pure = merkle_twins
    root = ref_root(leaves)
    assert compiled.merkle_root(leaves) == pure.merkle_root(leaves) == root
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = ref_path(index, leaves)
    assert compiled.merkle_proof(leaves, index) == pure.merkle_proof(leaves, index) == proof


@settings(max_examples=60, deadline=None)
@given(leaves=leaf_lists)
def test_every_proof_verifies(
    merkle_twins: tuple[ModuleType, ModuleType], leaves: list[bytes]
) -> None:
    root, total = ref_root(leaves), len(leaves)
    for twin in merkle_twins:
        for index, leaf in enumerate(leaves):
            proof = twin.merkle_proof(leaves, index)
            assert twin.verify_merkle_proof(root, leaf, index, total, proof)


@settings(max_examples=200, deadline=None)
@given(leaves=distinct_leaf_lists, data=st.data())
def test_any_single_change_fails(
    merkle_twins: tuple[ModuleType, ModuleType], leaves: list[bytes], data: st.DataObject
) -> None:
    root, total = ref_root(leaves), len(leaves)
    index = data.draw(st.integers(0, total - 1))
    leaf, proof = leaves[index], ref_path(index, leaves)
    bit = data.draw(st.integers(0, 2**16))
    forged = [
        (flip_bit(root, bit), leaf, index, total, proof),
        (root, flip_bit(leaf, bit) if leaf else b"\x00", index, total, proof),
    ]
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1))
        changed = [*proof[:element], flip_bit(proof[element], bit), *proof[element + 1 :]]
        forged.append((root, leaf, index, total, changed))
    if total > 1:
        other = data.draw(st.integers(0, total - 1).filter(lambda i: i != index))
        forged.append((root, leaf, other, total, proof))
    # A different total whose audit path has another length can never verify.
    other_total = data.draw(st.integers(index + 1, 2 * total + 2))
    if other_total != total and len(ref_path(index, rule_leaves(other_total))) != len(proof):
        forged.append((root, leaf, index, other_total, proof))
    for arguments in forged:
        for twin in merkle_twins:
            assert twin.verify_merkle_proof(*arguments) is False, arguments[1:4]


@settings(max_examples=300, deadline=None)
@given(
    root=st.binary(min_size=30, max_size=33),
    leaf=st.binary(max_size=8),
    index=st.integers(-2, 2**64),
    total=st.integers(-2, 2**64),
    proof=st.lists(st.binary(min_size=31, max_size=33), max_size=66),
)
def test_verify_twins_agree_on_arbitrary_input(
    merkle_twins: tuple[ModuleType, ModuleType],
    root: bytes,
    leaf: bytes,
    index: int,
    total: int,
    proof: list[bytes],
) -> None:
    outcomes = []
    for twin in merkle_twins:
        try:
            outcomes.append(twin.verify_merkle_proof(root, leaf, index, total, proof))
        except MerkleError:
            outcomes.append(MerkleError)
    assert outcomes[0] == outcomes[1]
