"""Is a 32-byte string an Ed25519 public key of the prime-order subgroup?

Signatures are verified with the cofactorless equation (`docs/spec/encoding.md` §2.1), under
which a mixed-order key A' = A + T (T a small-order point) still verifies some signatures. Keys
that enter the member registry are therefore required to be canonical, not of small order, and
in the prime-order subgroup ([L]A = identity), as the spec recommends.

`is_prime_order_key_reference` is that definition in pure integer arithmetic (RFC 8032
decoding, a double-and-add [L]A): it is the spec, but costs ~1.4 ms per key, and a block of
registrations spent seconds in it (14 % of a loaded node's samples). Execution calls
`is_prime_order_key`, libsodium's `crypto_core_ed25519_is_valid_point` (canonical, on the
curve, not of small order, in the main subgroup: the same set, ~45 µs). Consensus must not hang
on a library's reading of that set, so `tests/crypto/test_keycheck.py` proves the two agree
on every class of edge encoding (non-canonical y, negative zero, the eight small-order points,
every mixed-order sum, off-curve values) and on random strings, for the libsodium that is
installed; a libsodium that disagreed would fail the suite, not split the chain.
"""

from __future__ import annotations

from nacl.bindings import crypto_core_ed25519_is_valid_point

FIELD_PRIME = 2**255 - 19
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, FIELD_PRIME - 2, FIELD_PRIME)) % FIELD_PRIME
_SQRT_MINUS_ONE = pow(2, (FIELD_PRIME - 1) // 4, FIELD_PRIME)
_Y_MASK = (1 << 255) - 1

_Point = tuple[int, int, int, int]
"""Extended twisted Edwards coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, T = XY/Z."""
_IDENTITY: _Point = (0, 1, 1, 0)


def _decompress(encoding: bytes) -> _Point | None:
    """RFC 8032 §5.1.3 point decoding; None if the encoding is not a canonical point."""
    value = int.from_bytes(encoding, "little")
    y = value & _Y_MASK
    sign = value >> 255
    if y >= FIELD_PRIME:
        return None
    u = (y * y - 1) % FIELD_PRIME
    v = (_D * y * y + 1) % FIELD_PRIME
    x = (
        u
        * pow(v, 3, FIELD_PRIME)
        * pow(u * pow(v, 7, FIELD_PRIME), (FIELD_PRIME - 5) // 8, FIELD_PRIME)
    )
    x %= FIELD_PRIME
    check = v * x * x % FIELD_PRIME
    if check == (-u) % FIELD_PRIME:
        x = x * _SQRT_MINUS_ONE % FIELD_PRIME
    elif check != u:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = FIELD_PRIME - x
    return (x, y, 1, x * y % FIELD_PRIME)


def _add(a: _Point, b: _Point) -> _Point:
    """Unified addition on -x^2 + y^2 = 1 + d x^2 y^2 (add-2008-hwcd-3)."""
    p = FIELD_PRIME
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    first = (y1 - x1) * (y2 - x2) % p
    second = (y1 + x1) * (y2 + x2) % p
    third = t1 * 2 * _D * t2 % p
    fourth = z1 * 2 * z2 % p
    e, f, g, h = second - first, fourth - third, fourth + third, second + first
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _multiply(point: _Point, scalar: int) -> _Point:
    result = _IDENTITY
    addend = point
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        scalar >>= 1
    return result


def _is_identity(point: _Point) -> bool:
    x, y, z, _ = point
    return x % FIELD_PRIME == 0 and (y - z) % FIELD_PRIME == 0


def is_prime_order_key(public_key: bytes) -> bool:
    """True iff `public_key` decodes canonically to a point P != identity with [L]P = identity
    (so P has order exactly L: no small-order component, usable and unambiguous as a key).
    libsodium's answer, proven equal to `is_prime_order_key_reference` by the tests."""
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        return False
    return bool(crypto_core_ed25519_is_valid_point(public_key))


def is_prime_order_key_reference(public_key: bytes) -> bool:
    """The definition, in pure integer arithmetic (see the module docstring)."""
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        return False
    point = _decompress(public_key)
    if point is None or _is_identity(point):
        return False
    return _is_identity(_multiply(point, GROUP_ORDER))
