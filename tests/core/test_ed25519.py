"""Ed25519 batch verification: RFC 8032 vectors, pinned edge cases, differential fuzzing.

The edge vectors are produced by `build_edge_vectors()` below from deterministic seeds with an
independent pure-Python Edwards-curve implementation (RFC 8032 §5.1 formulas), which also
derives the small-order points instead of trusting the twins' constants. Regenerate the file
with `python -m tests.core.test_ed25519 --write`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import time
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from emrchain.schema.verdicts import CoreError, LimitError
from tests.core import txgen
from tests.core.conftest import import_twin_module

VECTOR_DIR = Path(__file__).parents[1] / "vectors"
MODULES = {"cython": "emrchain._core._ed25519", "python": "emrchain._core.reference.ed25519"}

# --- Independent Edwards-curve arithmetic (extended coordinates, RFC 8032 §5.1.4) -------------
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
IDENTITY = (0, 1, 1, 0)


def pt_add(a: tuple, b: tuple) -> tuple:
    e1, e2 = (a[1] - a[0]) * (b[1] - b[0]) % P, (a[1] + a[0]) * (b[1] + b[0]) % P
    c, dd = 2 * a[3] * b[3] * D % P, 2 * a[2] * b[2] % P
    e, f, g, h = e2 - e1, dd - c, dd + c, e2 + e1
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def pt_mul(k: int, point: tuple) -> tuple:
    result = IDENTITY
    while k:
        if k & 1:
            result = pt_add(result, point)
        point, k = pt_add(point, point), k >> 1
    return result


def pt_eq(a: tuple, b: tuple) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def pt_from_y(y: int, sign: int) -> tuple | None:
    """Lenient decode (y taken mod p, as a careless verifier would); None if not on the curve."""
    y %= P
    x2 = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = (P - x) % P
    return (x, y, 1, x * y % P)


def pt_decode(raw: bytes) -> tuple | None:
    value = int.from_bytes(raw, "little")
    return pt_from_y(value & ((1 << 255) - 1), value >> 255) if len(raw) == 32 else None


def pt_encode(point: tuple) -> bytes:
    zi = pow(point[2], -1, P)
    x, y = point[0] * zi % P, point[1] * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def enc(y: int, sign: int = 0) -> bytes:
    return (y | sign << 255).to_bytes(32, "little")


def challenge(r: bytes, a: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + message).digest(), "little") % L


BASE = pt_from_y(4 * pow(5, -1, P) % P, 0)


@cache
def torsion_points() -> list[tuple]:
    """The 8 points of order dividing 8: multiples of [L]Q for a point Q of order 8L."""
    for y in range(2, 100):
        q = pt_from_y(y, 0)
        if q is None:
            continue
        t = pt_mul(L, q)
        if not pt_eq(pt_mul(4, t), IDENTITY):  # order exactly 8
            return [pt_mul(j, t) for j in range(8)]
    raise AssertionError("no order-8 point found")


SMALL_Y = {int.from_bytes(pt_encode(t), "little") & ((1 << 255) - 1) for t in torsion_points()}
SMALL_Y |= {P, P + 1}


def equation_holds(public_key: bytes, message: bytes, signature: bytes) -> bool | None:
    """Cofactorless [S]B == R + [k]A on leniently decoded points; None if undecodable."""
    if len(signature) != 64:
        return None
    r, a = pt_decode(signature[:32]), pt_decode(public_key)
    if r is None or a is None:
        return None
    k = challenge(signature[:32], public_key, message)
    s = int.from_bytes(signature[32:], "little")
    return pt_eq(pt_mul(s, BASE), pt_add(r, pt_mul(k, a)))


# --- Edge vector generator ------------------------------------------------------------------


def _scalar(label: bytes, counter: int) -> int:
    return int.from_bytes(hashlib.sha512(label + counter.to_bytes(4, "big")).digest(), "little") % L


def _forge_for_small_order_key(a_point: tuple, a_enc: bytes, message: bytes) -> bytes:
    """(R, S) = ([s]B, s) with [k]A = 0: satisfies the equation for a small-order key A."""
    for counter in range(1000):
        s = _scalar(b"small-order", counter)
        r_enc = pt_encode(pt_mul(s, BASE))
        if pt_eq(pt_mul(challenge(r_enc, a_enc, message), a_point), IDENTITY):
            return r_enc + s.to_bytes(32, "little")
    raise AssertionError("no forgery found")


def _mixed_key_signature(
    a: int, a_enc: bytes, message: bytes, torsion_shift: int, cofactor_ok: bool
) -> bytes:
    """Sign for A' = [a]B + T under the real scalar a; R = [r]B + [torsion_shift]T.

    The equation holds iff [k]T + [torsion_shift]T = 0, so search r until that holds
    (cofactor_ok) or until it does not.
    """
    t8 = torsion_points()[1]
    for counter in range(1000):
        r = _scalar(b"mixed", counter)
        r_enc = pt_encode(pt_add(pt_mul(r, BASE), pt_mul(torsion_shift, t8)))
        k = challenge(r_enc, a_enc, message)
        if ((k + torsion_shift) % 8 == 0) == cofactor_ok:
            return r_enc + ((r + k * a) % L).to_bytes(32, "little")
    raise AssertionError("no signature found")


def build_edge_vectors() -> list[dict]:
    seed = hashlib.sha256(b"emrchain-ed25519-edge").digest()
    key, other = SigningKey(seed), SigningKey(hashlib.sha256(b"emrchain-other").digest())
    a = int.from_bytes(hashlib.sha512(seed).digest()[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)  # RFC 8032 §5.1.5 clamping
    pk, msg = bytes(key.verify_key), b"emrchain edge vector"
    assert pt_encode(pt_mul(a, BASE)) == pk
    sig = key.sign(msg).signature
    r_enc, s = sig[:32], int.from_bytes(sig[32:], "little")
    vectors: list[dict] = []

    def add(name: str, expected: int, why: str, pk=pk, msg=msg, sig=sig, repeat=1) -> None:
        equation = equation_holds(pk, msg * repeat, sig)
        vectors.append(
            {"name": name, "expected": expected, "why": why, "public_key": pk.hex(),
             "message": msg.hex(), "repeat": repeat, "signature": sig.hex(),
             "equation_holds": equation}
        )  # fmt: skip

    def flip(data: bytes, byte: int, bit: int) -> bytes:
        return data[:byte] + bytes([data[byte] ^ (1 << bit)]) + data[byte + 1 :]

    long_msg, eq_ok = bytes(range(256)), "satisfies the equation"
    add("valid", 1, "honest signature")
    add("zero_length_message", 1, "honest, empty message", msg=b"", sig=key.sign(b"").signature)
    add("long_message", 1, "honest, 1 MiB message (hex repeated 4096 times)", msg=long_msg,
        sig=key.sign(long_msg * 4096).signature, repeat=4096)  # fmt: skip
    add("wrong_message", 0, "equation fails: the message differs", msg=msg + b"!")
    add("wrong_key", 0, "equation fails: another key", pk=bytes(other.verify_key))
    add("negated_key", 0, "sign bit of A flipped (-A): equation fails", pk=flip(pk, 31, 7))
    add("flipped_bit_R", 0, "R changed (not on the curve)", sig=flip(sig, 0, 0))
    add("flipped_sign_bit_R", 0, "R's sign bit changed: equation fails", sig=flip(sig, 31, 7))
    add("flipped_bit_S", 0, "S changed: equation fails", sig=flip(sig, 32, 0))
    add("S_plus_L", 0, f"rule 1: S + L >= L ({eq_ok})", sig=r_enc + (s + L).to_bytes(32, "little"))
    add("S_equals_L", 0, "rule 1: S = L", sig=r_enc + L.to_bytes(32, "little"))
    add("S_all_ones", 0, "rule 1: S = 2^256 - 1", sig=r_enc + b"\xff" * 32)
    add("short_key", 0, "A is 31 bytes", pk=pk[:31])
    add("long_key", 0, "A is 33 bytes", pk=pk + b"\x00")
    add("short_signature", 0, "signature is 63 bytes", sig=sig[:63])
    add("long_signature", 0, "signature is 65 bytes", sig=sig + b"\x00")

    torsion = torsion_points()
    labels = {}  # y (sign bit cleared) -> readable label, from the derived torsion points
    for j, point in enumerate(torsion):
        y = int.from_bytes(pt_encode(point), "little") & ((1 << 255) - 1)
        order = 8 // math.gcd(j, 8)  # order of [j]T for T of order 8
        prefix = y.to_bytes(32, "little")[:4].hex()
        labels[y] = {1: "1", 2: "p-1", 4: "0"}.get(order, f"order8_{prefix}")
    labels.update({P: "p", P + 1: "p+1"})
    for y, label in labels.items():
        for sign in (0, 1):
            a_enc = enc(y, sign)
            forged = _forge_for_small_order_key(pt_from_y(y, sign), a_enc, msg)
            why = f"rule 3 (rule 2 too if y >= p): small-order A; ([s]B, s) {eq_ok}"
            add(f"small_order_A_y={label}_sign{sign}", 0, why, pk=a_enc, sig=forged)
    for y in sorted(y for y in labels if y < P):
        add(f"small_order_R_y={labels[y]}", 0, "rule 3: small-order R", sig=enc(y) + sig[32:])
    a_enc = pt_encode(torsion[1])
    for counter in range(1000):  # R and A both small order, S = 0, equation holds
        m = msg + counter.to_bytes(2, "big")
        hits = [j for j in range(8) if (challenge(pt_encode(torsion[j]), a_enc, m) + j) % 8 == 0]
        if hits:
            forged = pt_encode(torsion[hits[0]]) + bytes(32)
            why = f"rule 3: A of order 8, R = -[k]A, S = 0 {eq_ok}"
            add("small_order_R_and_A", 0, why, pk=a_enc, msg=m, sig=forged)
            break
    y_nc = next(y for y in range(2, 19) if pt_from_y(y, 0) is not None)
    add("non_canonical_A", 0, f"rule 2: A's y = {y_nc} + p >= p", pk=enc(y_nc + P))
    add("non_canonical_A_all_ones", 0, "rule 2: A's y = 2^255 - 1", pk=b"\xff" * 32)
    add("non_canonical_R", 0, "rule 2: R's y >= p", sig=enc(y_nc + P) + sig[32:])
    mixed = pt_encode(pt_add(pt_mul(a, BASE), torsion[1]))
    why = "A + T8 is canonical, not small-order; k = 0 mod 8 so the cofactorless equation holds"
    add("mixed_order_A", 1, why + ": ACCEPTED (the rules do not reject mixed-order keys)",
        pk=mixed, sig=_mixed_key_signature(a, mixed, msg, 0, True))  # fmt: skip
    why = "A + T8, k != 0 mod 8: only a cofactored [8]-equation would accept; rejected"
    add("mixed_order_A_cofactor_only", 0, why, pk=mixed,
        sig=_mixed_key_signature(a, mixed, msg, 0, False))  # fmt: skip
    why = "R = [r]B + [3]T8, A + T8, (k + 3) = 0 mod 8: equation holds, accepted"
    add("mixed_order_R_and_A", 1, why, pk=mixed, sig=_mixed_key_signature(a, mixed, msg, 3, True))
    return vectors


def edge_vectors_file() -> list[dict]:
    return json.loads((VECTOR_DIR / "ed25519_edge.json").read_text())["vectors"]


def write_edge_vectors() -> None:
    document = {
        "description": "Ed25519 acceptance edge cases (emrchain rules, docs/spec/encoding.md 2.1). "
        "Fields are hex; the message is bytes.fromhex(message) * repeat. 'expected' is the "
        "verdict both twins must give; 'equation_holds' is the cofactorless equation "
        "[S]B == R + [k]A on leniently decoded points (null: not decodable), computed "
        "independently of libsodium. Generated by tests/core/test_ed25519.py.",
        "vectors": build_edge_vectors(),
    }
    (VECTOR_DIR / "ed25519_edge.json").write_text(json.dumps(document, indent=1) + "\n")


# --- Twins ----------------------------------------------------------------------------------


def load_twin(name: str) -> ModuleType:
    """Import one twin's module directly (the selector would also need `_txcheck`)."""
    return import_twin_module(MODULES[name], compiled=name == "cython")


@pytest.fixture(scope="module", params=sorted(MODULES))
def ed_twin(request: pytest.FixtureRequest) -> ModuleType:
    return load_twin(request.param)


@pytest.fixture(scope="module")
def ed_twins() -> tuple[ModuleType, ModuleType]:
    return load_twin("cython"), load_twin("python")


@cache
def key_for(seed: int) -> SigningKey:
    return SigningKey(hashlib.sha256(b"emrchain-ed25519-test-%d" % seed).digest())


def signed_batch(count: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    keys = [bytes(key_for(i % 5).verify_key) for i in range(count)]
    messages = [b"message %d " % i * (i % 7) for i in range(count)]
    sigs = [key_for(i % 5).sign(m).signature for i, m in enumerate(messages)]
    return keys, messages, sigs


# --- Vectors --------------------------------------------------------------------------------


def test_rfc8032_vectors(ed_twin: ModuleType) -> None:
    vectors = json.loads((VECTOR_DIR / "ed25519_rfc8032.json").read_text())["vectors"]
    names = [v["name"] for v in vectors]
    assert names == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]
    keys, messages, sigs = [], [], []
    for vector in vectors:
        secret = SigningKey(bytes.fromhex(vector["secret_key"]))
        message = bytes.fromhex(vector["message"])
        assert bytes(secret.verify_key).hex() == vector["public_key"]
        assert secret.sign(message).signature.hex() == vector["signature"]
        keys.append(bytes.fromhex(vector["public_key"]))
        messages.append(message)
        sigs.append(bytes.fromhex(vector["signature"]))
    assert ed_twin.verify_batch(keys, messages, sigs) == b"\x01" * 5
    assert ed_twin.verify_batch(keys, messages[1:] + messages[:1], sigs) == bytes(5)


def test_edge_vectors_reproducible() -> None:
    assert edge_vectors_file() == build_edge_vectors()


def test_edge_vectors(ed_twin: ModuleType) -> None:
    vectors = edge_vectors_file()
    keys = [bytes.fromhex(v["public_key"]) for v in vectors]
    messages = [bytes.fromhex(v["message"]) * v["repeat"] for v in vectors]
    sigs = [bytes.fromhex(v["signature"]) for v in vectors]
    got = ed_twin.verify_batch(keys, messages, sigs, threads=2)
    failures = [(v["name"], got[i]) for i, v in enumerate(vectors) if got[i] != v["expected"]]
    assert not failures


def test_small_order_blocklist_derived_independently(ed_twin: ModuleType) -> None:
    torsion = torsion_points()
    assert all(pt_eq(pt_mul(8, t), IDENTITY) for t in torsion)
    derived = {int.from_bytes(pt_encode(t), "little") & ((1 << 255) - 1) for t in torsion}
    assert len(derived) == 5  # 1, p-1, 0 and the two order-8 values (x and -x share y)
    assert set(ed_twin.SMALL_ORDER_Y) == derived | {P, P + 1}
    assert ed_twin.GROUP_ORDER == L and pt_eq(pt_mul(L, BASE), IDENTITY)


def prefilter_expected(y: int, s: int) -> bool:
    return y < P and y not in SMALL_Y and s < L


def check_prefilter(twins: tuple[ModuleType, ModuleType], y: int, sign: int, s: int) -> None:
    """Put (y, sign) in R and in A in turn, with S = s; both twins must apply rules 1-3."""
    honest = edge_vectors_file()[0]
    good_pk, good_r = bytes.fromhex(honest["public_key"]), bytes.fromhex(honest["signature"])[:32]
    point, scalar = enc(y, sign), s.to_bytes(32, "little")
    for pk, sig in ((good_pk, point + scalar), (point, good_r + scalar)):
        for twin in twins:
            assert twin._prefilter(pk, sig) is prefilter_expected(y, s), (twin.__name__, y, s)


def test_prefilter_rules_at_boundaries(ed_twins: tuple[ModuleType, ModuleType]) -> None:
    """Rules 1-3 checked directly: with 1.0.18 the compiled twin's C checks overlap libsodium's
    own, so verdicts alone would not reveal a bug in them. Every byte position is probed."""
    good_s = 1
    ys = [0, 1, 2, 18, 19, 2**255 - 1, *(P + k for k in range(-3, 19))]
    ys += [P - 256**i for i in range(32)]  # one byte below p at each position: canonical
    ys += [y ^ (1 << bit) for y in sorted(SMALL_Y) for bit in range(0, 255, 7)]
    ys += sorted(SMALL_Y)
    for y in ys:
        for sign in (0, 1):
            check_prefilter(ed_twins, y, sign, good_s)
    good_y = 9  # on no list, canonical
    scalars = [0, 1, L - 1, L, L + 1, 2**252 - 1, 2**252, 2**253, 2**255, 2**256 - 1]
    scalars += [v for i in range(32) for v in (L - 256**i, L + 256**i) if v < 2**256]
    for scalar in scalars:
        check_prefilter(ed_twins, good_y, 0, scalar)


@settings(max_examples=300, deadline=None)
@given(
    y=st.one_of(st.integers(0, 2**255 - 1), st.integers(P - 40, 2**255 - 1)),
    sign=st.integers(0, 1),
    s=st.one_of(st.integers(0, 2**256 - 1), st.integers(L - 40, L + 40)),
)
def test_prefilter_random(
    ed_twins: tuple[ModuleType, ModuleType], y: int, sign: int, s: int
) -> None:
    check_prefilter(ed_twins, y, sign, s)


# --- Argument handling ----------------------------------------------------------------------


def test_argument_errors(ed_twin: ModuleType) -> None:
    keys, messages, sigs = signed_batch(3)
    with pytest.raises(CoreError) as caught:
        ed_twin.verify_batch(keys, messages[:2], sigs)
    assert type(caught.value) is CoreError
    for bad in (bytearray(keys[0]), "text", None, memoryview(keys[0])):
        with pytest.raises(TypeError):
            ed_twin.verify_batch([bad], [b""], [sigs[0]])
        with pytest.raises(TypeError):
            ed_twin.verify_batch([keys[0]], [bad], [sigs[0]])
        with pytest.raises(TypeError):
            ed_twin.verify_transactions([bad])
    for threads in (-1, 257, 10**30):
        with pytest.raises(LimitError):
            ed_twin.verify_batch(keys, messages, sigs, threads=threads)
        with pytest.raises(LimitError):
            ed_twin.verify_transactions([], threads=threads)
    for threads in (1.0, "2", None):
        with pytest.raises(TypeError):
            ed_twin.verify_batch(keys, messages, sigs, threads=threads)
    assert ed_twin.verify_batch([], [], []) == b""
    assert ed_twin.verify_batch(keys, messages, sigs, threads=256) == b"\x01" * 3


def test_threads_do_not_change_results(ed_twin: ModuleType) -> None:
    keys, messages, sigs = signed_batch(300)
    sigs = [s if i % 3 else s[:40] + bytes([s[40] ^ 4]) + s[41:] for i, s in enumerate(sigs)]
    expected = bytes(int(i % 3 != 0) for i in range(300))
    for threads in (0, 1, 2, 3, 7, 64, 256):
        assert ed_twin.verify_batch(keys, messages, sigs, threads=threads) == expected


def test_fork_after_threaded_verify(ed_twin: ModuleType) -> None:
    """Threads are per call, so a forked child (the node forks workers) verifies normally."""
    batch = signed_batch(200)
    assert ed_twin.verify_batch(*batch, threads=0) == b"\x01" * 200
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 3
        try:
            code = 0 if ed_twin.verify_batch(*batch, threads=2) == b"\x01" * 200 else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("verify_batch hung in a forked child")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(waited[1]) == 0


# --- verify_transactions --------------------------------------------------------------------


def test_verify_transactions(ed_twin: ModuleType) -> None:
    txs = [txgen.make_anchor_tx(nonce, seed=1 + nonce % 3) for nonce in range(40)]
    assert ed_twin.verify_transactions(txs, threads=3) == b"\x01" * 40
    middle = len(txs[0]) // 2
    broken = [
        txs[0][:middle] + bytes([txs[0][middle] ^ 1]) + txs[0][middle + 1 :],  # body changed
        txs[1][:-1] + bytes([txs[1][-1] ^ 1]),  # signature changed
        txs[2] + b"\x00",  # the signature is always the last 64 bytes
        b"",
        b"\x01",
        bytes(108),  # shorter than the fixed envelope
        txs[3][:1] + b"\xff" + txs[3][2:],  # chain id length 255 > what the bytes hold
    ]
    assert ed_twin.verify_transactions(broken) == bytes(len(broken))


@settings(max_examples=80, deadline=None)
@given(tx=txgen.valid_transactions(), cut=st.integers(0, 400), bit=st.integers(0, 7))
def test_transactions_twins_agree(
    ed_twins: tuple[ModuleType, ModuleType], tx: bytes, cut: int, bit: int
) -> None:
    position = cut % len(tx)
    tampered = tx[:position] + bytes([tx[position] ^ (1 << bit)]) + tx[position + 1 :]
    items = [tx, tampered, tx[:cut]]
    compiled, pure = ed_twins
    assert compiled.verify_transactions(items) == pure.verify_transactions(items)
    assert compiled.verify_transactions([tx]) == b"\x01"


# --- Differential fuzzing -------------------------------------------------------------------

MUTATIONS = (
    "none", "flip_pk", "flip_msg", "flip_sig", "random_pk", "random_sig", "resize", "s_plus_l",
    "small_r", "small_a", "noncanonical_a",
)  # fmt: skip


def mutate(item: tuple[bytes, bytes, bytes], how: str, bit: int, blob: bytes) -> tuple:
    pk, msg, sig = item

    def flip(data: bytes) -> bytes:
        if not data:
            return b"\x00"
        out = bytearray(data)
        out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
        return bytes(out)

    small = enc(sorted(SMALL_Y)[bit % len(SMALL_Y)], bit & 1)
    s_plus_l = sig[:32] + (int.from_bytes(sig[32:], "little") + L).to_bytes(32, "little")
    return {
        "none": (pk, msg, sig),
        "flip_pk": (flip(pk), msg, sig),
        "flip_msg": (pk, flip(msg), sig),
        "flip_sig": (pk, msg, flip(sig)),
        "random_pk": ((blob * 2)[:32], msg, sig),
        "random_sig": (pk, msg, (blob * 4)[:64]),
        "resize": (pk + blob[:1], msg, sig) if bit & 1 else (pk, msg, sig[: 64 - 1 - bit % 8]),
        "s_plus_l": (pk, msg, s_plus_l),
        "small_r": (pk, msg, small + sig[32:]),
        "small_a": (small, msg, sig),
        "noncanonical_a": (enc(P + bit % 19, bit & 1), msg, sig),
    }[how]


# (key seed, message, mutation, bit to flip / selector, random bytes)
items_strategy = st.tuples(
    st.integers(0, 4), st.binary(max_size=300), st.sampled_from(MUTATIONS),
    st.integers(0, 511), st.binary(min_size=16, max_size=16),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(specs=st.lists(items_strategy, min_size=1, max_size=120))
def test_twins_agree_and_threads_are_irrelevant(
    ed_twins: tuple[ModuleType, ModuleType], specs: list
) -> None:
    batch = []
    for seed, message, how, bit, blob in specs:
        item = (bytes(key_for(seed).verify_key), message, key_for(seed).sign(message).signature)
        batch.append(mutate(item, how, bit, blob))
    # Tile to >= 64 items so that threads=2/3 really start threads (16+ items per thread).
    batch = batch * (64 // len(batch) + 1)
    keys, messages, sigs = (list(column) for column in zip(*batch, strict=True))
    compiled, pure = ed_twins
    expected = pure.verify_batch(keys, messages, sigs)
    for threads in (1, 2, 3):
        assert compiled.verify_batch(keys, messages, sigs, threads=threads) == expected
    for (seed, _, how, _, _), verdict in zip(specs, expected[: len(specs)], strict=True):
        if how == "none":
            assert verdict == 1, seed


@settings(max_examples=40, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=2000))
def test_random_keys_valid_signatures_verify(
    ed_twins: tuple[ModuleType, ModuleType], seed: bytes, message: bytes
) -> None:
    key = SigningKey(seed)
    args = ([bytes(key.verify_key)], [message], [key.sign(message).signature])
    for twin in ed_twins:
        assert twin.verify_batch(*args) == b"\x01"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write_edge_vectors()
