"""Pure-Python twin of `_ed25519.pyx`: Ed25519 batch verification with a fixed acceptance rule.

Acceptance rules (normative, `docs/spec/encoding.md`; identical in both twins). An item is
valid (1) only if all of these hold, otherwise it is invalid (0):

0. The public key A is 32 bytes and the signature is 64 bytes: R = sig[0:32], S = sig[32:64].
1. S, read as a little-endian integer, is < L = 2^252 + 27742317777372353535851937790883648493.
2. R and A are canonical point encodings: y = the 255 low bits (sign bit masked off) is
   < p = 2^255 - 19.
3. R and A are not small-order encodings: y (sign bit ignored) is none of 0, 1, p - 1, the two
   y values of the order-8 points (SMALL_ORDER_Y), p, p + 1. (p and p + 1 are already
   non-canonical; they are listed because libsodium's own blocklist has them.)
4. libsodium's crypto_sign_verify_detached accepts: the cofactorless equation
   [S]B = R + [SHA-512(R || A || M) mod L]A, checked by re-encoding the right-hand R.

Rules 1-3 run before libsodium so that the verdict does not depend on the libsodium version:
the compiled twin links Debian's libsodium 1.0.18 and PyNaCl bundles 1.0.20, whose ref10 checks
differ in edge cases. Under these rules a mixed-order key (A = A' + T, T a torsion point) is
NOT rejected: a signature whose challenge is a multiple of 8 satisfies the cofactorless
equation and verifies (see tests/vectors/ed25519_edge.json).

`verify_transactions` takes the key and signature from the transaction envelope:
version u8 | chain_id_len u8 | chain_id | kind u8 | sender 32 | nonce u64 | payload_len u16 |
payload | signature 64; message = raw[:-64], A = raw[3+L:35+L] with L = raw[1]. An item too
short to hold that (len < 109 + L) is 0; no other structural checks happen here.

Argument checks, in this order, are the same in both twins: `threads` must be an integer
(TypeError) in 0..256 (LimitError; 0 means os.cpu_count()); the three sequences of
verify_batch must have equal lengths (CoreError); every item must be bytes (TypeError).
This twin verifies one item after another; `threads` is validated and otherwise ignored.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Sequence

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from emrchain import schema
from emrchain.schema.verdicts import CoreError, LimitError

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
"""y coordinates (sign bit ignored) whose encodings are refused for R and A: 0 (order 4),
1 (order 1), p - 1 (order 2), the two order-8 values, and the non-canonical p and p + 1."""
MAX_THREADS = 256

_SMALL_ORDER = frozenset(SMALL_ORDER_Y)
_Y_MASK = (1 << 255) - 1
_MIN_TX_BYTES = schema.ENVELOPE_FIXED_BYTES  # 109 + chain id length


def resolve_threads(threads: int) -> int:
    """Validate `threads` and return the worker count it means (0 -> all cores)."""
    threads = operator.index(threads)
    if not 0 <= threads <= MAX_THREADS:
        raise LimitError(f"threads must be within 0..{MAX_THREADS}, got {threads}")
    if threads == 0:
        threads = min(os.cpu_count() or 1, MAX_THREADS)
    return threads


def _checked_bytes(items: Iterable[bytes], what: str) -> tuple[bytes, ...]:
    snapshot = tuple(items)
    for position, item in enumerate(snapshot):
        if not isinstance(item, bytes):
            raise TypeError(f"{what} {position} is {type(item).__name__}, not bytes")
    return snapshot


def _point_allowed(encoding: bytes) -> bool:
    """Rules 2 and 3: canonical y and not a small-order encoding."""
    y = int.from_bytes(encoding, "little") & _Y_MASK
    return y < FIELD_PRIME and y not in _SMALL_ORDER


def _prefilter(public_key: bytes, signature: bytes) -> bool:
    """Rules 0-3 only, without libsodium (private; tests compare it with the compiled twin's)."""
    return (
        len(public_key) == 32
        and len(signature) == 64
        and int.from_bytes(signature[32:], "little") < GROUP_ORDER
        and _point_allowed(signature[:32])
        and _point_allowed(public_key)
    )


def _verify_one(public_key: bytes, message: bytes, signature: bytes) -> int:
    if not _prefilter(public_key, signature):
        return 0
    try:
        # PyNaCl's cffi lib does not expose crypto_sign_verify_detached; open() calls it.
        crypto_sign_open(signature + message, public_key)
    except BadSignatureError:
        return 0
    return 1


def verify_batch(
    public_keys: Sequence[bytes],
    messages: Sequence[bytes],
    signatures: Sequence[bytes],
    threads: int = 0,
) -> bytes:
    """Verify signatures[i] over messages[i] under public_keys[i]; one byte per item (1 = valid).

    Wrong-length keys or signatures are invalid (0), not errors. Raises LimitError for threads
    outside 0..256, CoreError if the sequences differ in length and TypeError for non-bytes
    items. The result never depends on `threads`.
    """
    resolve_threads(threads)
    keys = tuple(public_keys)
    texts = tuple(messages)
    sigs = tuple(signatures)
    if not len(keys) == len(texts) == len(sigs):
        raise CoreError(
            f"public_keys, messages and signatures differ in length "
            f"({len(keys)}, {len(texts)}, {len(sigs)})"
        )
    _checked_bytes(keys, "public key")
    _checked_bytes(texts, "message")
    _checked_bytes(sigs, "signature")
    return bytes(_verify_one(k, m, s) for k, m, s in zip(keys, texts, sigs, strict=True))


def _verify_transaction(raw: bytes) -> int:
    if len(raw) < _MIN_TX_BYTES:
        return 0
    chain_id_length = raw[1]
    if len(raw) < _MIN_TX_BYTES + chain_id_length:
        return 0
    return _verify_one(raw[3 + chain_id_length : 35 + chain_id_length], raw[:-64], raw[-64:])


def verify_transactions(txs: Sequence[bytes], threads: int = 0) -> bytes:
    """Verify each transaction's own signature (sender key, message = all but the signature).

    One byte per transaction (1 = valid); an item too short for its envelope is 0. Raises
    LimitError for threads outside 0..256 and TypeError for non-bytes items.
    """
    resolve_threads(threads)
    items = _checked_bytes(txs, "transaction")
    return bytes(_verify_transaction(raw) for raw in items)
