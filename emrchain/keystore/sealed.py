"""A 32-byte secret seed sealed under a passphrase: scrypt, then AES-256-GCM.

The format (version 1, `docs/spec/key-files.md`) is a JSON object whose public fields travel in
the clear and are bound to the ciphertext as GCM associated data, so editing any of them (the
KDF cost, the salt, the public keys next to the seed) makes opening fail like a wrong
passphrase does. The KDF is `hashlib.scrypt` (OpenSSL), whose cost is stored in the file and
bounded on load: a file cannot make a loader spend more than `MAX_LOG2_N` worth of memory, nor
be written with less than `MIN_LOG2_N`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
KDF_NAME = "scrypt"
CIPHER_NAME = "aes-256-gcm"
SEED_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
DEFAULT_LOG2_N = 17
"""scrypt N = 2^17, r = 8, p = 1: 128 MiB and a fraction of a second per open (the cost the
scrypt paper and OWASP give for interactive logins to files)."""
MIN_LOG2_N = 14
MAX_LOG2_N = 20
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSPHRASE_CHARACTERS = 8
MAX_PASSPHRASE_BYTES = 1024
SEALED_FIELDS: tuple[str, ...] = (
    "format_version", "kdf", "scrypt_log2_n", "scrypt_r", "scrypt_p", "salt", "cipher", "nonce",
    "sealed_seed",
)  # fmt: skip
_HEX = re.compile(r"[0-9a-f]*")


class SealError(ValueError):
    """A sealed seed cannot be opened (wrong passphrase, altered file) or made (weak input)."""


def seal_seed(
    seed: bytes,
    passphrase: str,
    public_fields: Mapping[str, object],
    *,
    log2_n: int = DEFAULT_LOG2_N,
) -> dict[str, object]:
    """The document holding `seed` sealed under `passphrase`, with `public_fields` bound to it."""
    if len(seed) != SEED_BYTES:
        raise SealError(f"a seed is {SEED_BYTES} bytes")
    _check_passphrase(passphrase)
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
        raise SealError(f"scrypt_log2_n must be {MIN_LOG2_N}..{MAX_LOG2_N}")
    document: dict[str, object] = dict(public_fields)
    document.update(
        {
            "format_version": FORMAT_VERSION,
            "kdf": KDF_NAME,
            "scrypt_log2_n": log2_n,
            "scrypt_r": SCRYPT_R,
            "scrypt_p": SCRYPT_P,
            "salt": os.urandom(SALT_BYTES).hex(),
            "cipher": CIPHER_NAME,
            "nonce": os.urandom(NONCE_BYTES).hex(),
        }
    )
    key = _derive_key(passphrase, document)
    sealed = AESGCM(key).encrypt(
        bytes.fromhex(str(document["nonce"])), seed, associated_data(document)
    )
    document["sealed_seed"] = sealed.hex()
    return document


def open_seed(document: Mapping[str, object], passphrase: str) -> bytes:
    """The seed in `document`; SealError if the passphrase is wrong or anything was altered."""
    _check_parameters(document)
    key = _derive_key(passphrase, document)
    try:
        return AESGCM(key).decrypt(
            bytes.fromhex(str(document["nonce"])),
            bytes.fromhex(str(document["sealed_seed"])),
            associated_data(document),
        )
    except InvalidTag:
        raise SealError("wrong passphrase, or the file was altered") from None


def associated_data(document: Mapping[str, object]) -> bytes:
    """Every field but the ciphertext, as sorted compact JSON (one encoding per document)."""
    public = {name: value for name, value in document.items() if name != "sealed_seed"}
    return json.dumps(public, sort_keys=True, separators=(",", ":")).encode()


def _derive_key(passphrase: str, document: Mapping[str, object]) -> bytes:
    _check_passphrase(passphrase)
    log2_n, r, p = (int(str(document[name])) for name in ("scrypt_log2_n", "scrypt_r", "scrypt_p"))
    n = 1 << log2_n
    return hashlib.scrypt(
        passphrase.encode("utf-8"),
        salt=bytes.fromhex(str(document["salt"])),
        n=n,
        r=r,
        p=p,
        # OpenSSL's own bound on the work area (128·r·(N + p + 2) bytes), plus slack.
        maxmem=128 * r * (n + p + 2) + (1 << 20),
        dklen=32,
    )


def _check_passphrase(passphrase: str) -> None:
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE_CHARACTERS:
        raise SealError(f"a passphrase has at least {MIN_PASSPHRASE_CHARACTERS} characters")
    if len(passphrase.encode("utf-8")) > MAX_PASSPHRASE_BYTES:
        raise SealError(f"a passphrase has at most {MAX_PASSPHRASE_BYTES} bytes")


def _check_parameters(document: Mapping[str, object]) -> None:
    """Refuse unknown versions and out-of-range costs before any work is done."""
    missing = [name for name in SEALED_FIELDS if name not in document]
    if missing:
        raise SealError(f"missing {', '.join(missing)}")
    expected = {"format_version": FORMAT_VERSION, "kdf": KDF_NAME, "cipher": CIPHER_NAME}
    expected.update({"scrypt_r": SCRYPT_R, "scrypt_p": SCRYPT_P})
    for name, value in expected.items():
        if document[name] != value:
            raise SealError(f"{name}: must be {value!r}, got {document[name]!r}")
    log2_n = document["scrypt_log2_n"]
    if type(log2_n) is not int or not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
        raise SealError(f"scrypt_log2_n: must be an integer {MIN_LOG2_N}..{MAX_LOG2_N}")
    lengths = {"salt": SALT_BYTES, "nonce": NONCE_BYTES, "sealed_seed": SEED_BYTES + TAG_BYTES}
    for name, length in lengths.items():
        value = document[name]
        if not isinstance(value, str) or len(value) != 2 * length or not _HEX.fullmatch(value):
            raise SealError(f"{name}: must be {2 * length} lowercase hex characters")
