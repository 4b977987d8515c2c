"""`is_prime_order_key` (libsodium) decides exactly as `is_prime_order_key_reference` (the
definition in integer arithmetic) on every class of edge encoding and on random strings: the
member registry's key rule must not depend on which libsodium a node runs (keycheck.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.crypto.keycheck import (
    _IDENTITY,
    FIELD_PRIME,
    GROUP_ORDER,
    _add,
    _decompress,
    _multiply,
    is_prime_order_key,
    is_prime_order_key_reference,
)
from emrchain.crypto.keys import Ed25519Signer

_Y_MASK = (1 << 255) - 1


def compress(point: tuple[int, int, int, int]) -> bytes:
    x, y, z, _ = point
    inverse = pow(z, FIELD_PRIME - 2, FIELD_PRIME)
    x, y = x * inverse % FIELD_PRIME, y * inverse % FIELD_PRIME
    return (y | (x & 1) << 255).to_bytes(32, "little")


def small_order_points() -> list[tuple[int, int, int, int]]:
    """The eight points of order 1, 2, 4 and 8 (the torsion subgroup): [L]P of a random point
    has order dividing 8; its multiples give the whole subgroup."""
    while True:
        point = _decompress(os.urandom(32))
        if point is None:
            continue
        torsion = _multiply(point, GROUP_ORDER)
        multiples = [_IDENTITY]
        for _ in range(7):
            multiples.append(_add(multiples[-1], torsion))
        encodings = {compress(item) for item in multiples}
        if len(encodings) == 8:  # a generator of the order-8 subgroup
            return multiples


SMALL_ORDER = small_order_points()
PRIME_ORDER_KEYS = [Ed25519Signer(bytes([index]) * 32).public_key for index in range(4)]


def edge_encodings() -> list[bytes]:
    encodings = []
    for torsion in SMALL_ORDER:
        encodings.append(compress(torsion))  # small order: refused
        for key in PRIME_ORDER_KEYS:
            point = _decompress(key)
            assert point is not None
            encodings.append(compress(_add(point, torsion)))  # mixed order (or the key itself)
    for y in range(FIELD_PRIME, 1 << 255):  # y >= p: not canonical, 19 values
        for sign in (0, 1):
            encodings.append((y | sign << 255).to_bytes(32, "little"))
    for y in (1, FIELD_PRIME - 1, 0):  # x = 0 points with the sign bit set ("negative zero")
        encodings.append((y | 1 << 255).to_bytes(32, "little"))
    for y in range(64):  # small y: on and off the curve, both signs
        for sign in (0, 1):
            encodings.append((y | sign << 255).to_bytes(32, "little"))
    return encodings


def test_the_edge_classes_are_what_they_claim() -> None:
    assert len({compress(point) for point in SMALL_ORDER}) == 8
    assert all(is_prime_order_key_reference(key) for key in PRIME_ORDER_KEYS)
    assert not any(is_prime_order_key_reference(compress(point)) for point in SMALL_ORDER)


@pytest.mark.parametrize("encoding", edge_encodings(), ids=lambda encoding: encoding.hex()[:12])
def test_libsodium_agrees_with_the_definition_on_edge_encodings(encoding: bytes) -> None:
    assert is_prime_order_key(encoding) is is_prime_order_key_reference(encoding)


@settings(max_examples=1_500, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_libsodium_agrees_with_the_definition_on_random_strings(encoding: bytes) -> None:
    assert is_prime_order_key(encoding) is is_prime_order_key_reference(encoding)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(min_value=0, max_value=7))
def test_libsodium_agrees_on_keys_and_their_mixed_order_twins(seed: bytes, torsion: int) -> None:
    point = _decompress(Ed25519Signer(seed).public_key)
    assert point is not None
    encoding = compress(_add(point, SMALL_ORDER[torsion]))
    assert is_prime_order_key(encoding) is is_prime_order_key_reference(encoding)
    assert is_prime_order_key(encoding) is (torsion == 0)


@pytest.mark.parametrize("value", [b"", b"\x00" * 31, b"\x00" * 33, bytearray(32), "0" * 32])
def test_anything_but_32_bytes_is_not_a_key(value: object) -> None:
    assert is_prime_order_key(value) is False  # type: ignore[arg-type]
    assert is_prime_order_key_reference(value) is False  # type: ignore[arg-type]
