"""The record envelope, client side: encrypt a medical record and wrap its key for recipients.

Every record gets a fresh random 256-bit data key. The record is encrypted once with AES-256-GCM
(`cryptography`); the data key is wrapped for each recipient (the author's organisation, the
patient, later each grantee) as an X25519 sealed box (PyNaCl `SealedBox`, 32 → 80 bytes). The
chain only ever sees the ciphertext's SHA-256, its CID and the wrapped keys.

Envelope layout (`docs/spec/records.md`):

    version u8 (= 1) | nonce 12 | key_commitment 32 | AES-256-GCM ciphertext | tag 16

The associated data binds the ciphertext to (format version, record id, patient id), so a
ciphertext cannot be presented as another record's or another patient's. The key commitment
(HMAC-SHA256 under a key derived from the data key, over that same binding) makes a ciphertext
open under exactly one data key: AES-GCM alone does not guarantee that, and with several
recipients a dishonest author could otherwise hand different recipients different keys that
decrypt one ciphertext to different records ("invisible salamanders"; Albertini et al., "How to
Abuse and Fix Authenticated Encryption Without Key Commitment", USENIX Security 2022). It is also
what lets `open_record` tell a wrong record/patient binding apart from tampered ciphertext.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from emrchain.storage.cid import compute_cid

FORMAT_VERSION = 1
NONCE_BYTES = 12
KEY_COMMITMENT_BYTES = 32
TAG_BYTES = 16
HEADER_BYTES = 1 + NONCE_BYTES + KEY_COMMITMENT_BYTES
ENVELOPE_OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES
"""Ciphertext length = plaintext length + 61."""

DATA_KEY_BYTES = 32
X25519_KEY_BYTES = 32
WRAPPED_KEY_BYTES = 80
"""A sealed box of a 32-byte key: ephemeral public key 32, Poly1305 tag 16, encrypted key 32."""
ID_BYTES = 32
"""Record and patient ids are 32-byte hashes, as in ANCHOR_RECORD (`encoding.md` §4.2)."""

DEFAULT_MAX_PLAINTEXT_BYTES = 64 * 1024 * 1024
MAX_RECIPIENTS = 64
MAX_RECIPIENT_NAME_LENGTH = 64
"""As long as an organisation id (`ident[1..64]`)."""

_ASSOCIATED_DATA_LABEL = b"emrchain/record-envelope"
_KEY_DERIVATION_INFO = b"emrchain/record-envelope/v1 encryption+commitment keys"


class EnvelopeError(Exception):
    """Base class of envelope failures; each subclass is one thing a caller can report."""


class MalformedEnvelopeError(EnvelopeError):
    """A ciphertext or wrapped key with the wrong length or an unknown format version."""


class RecordTooLargeError(EnvelopeError):
    """A plaintext (or a ciphertext) above the configured maximum record size."""


class InvalidRecipientKeyError(EnvelopeError):
    """A recipient public key that cannot receive a sealed box (wrong length, low order)."""


class WrongRecipientKeyError(EnvelopeError):
    """The wrapped key does not open with this private key (meant for someone else, or altered)."""


class RecordBindingError(EnvelopeError):
    """The ciphertext is not bound to this record id and patient id (or its header was altered)."""


class TamperedCiphertextError(EnvelopeError):
    """The ciphertext fails AES-GCM authentication: it was altered after sealing."""


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """Everything a client needs to store the record and anchor it."""

    record_id: bytes
    patient_id: bytes
    ciphertext: bytes
    ciphertext_sha256: bytes
    cid_bytes: bytes
    """Binary CID, the ANCHOR_RECORD `cid` field."""
    cid_text: str
    """The same CID as IPFS prints it (the blob store key)."""
    size: int
    """Ciphertext length in bytes, the ANCHOR_RECORD `size_bytes` field."""
    wraps: Mapping[str, bytes] = field(default_factory=dict)
    """Recipient name → 80-byte wrapped data key."""


def new_record_id() -> bytes:
    """A fresh record id: 32 random bytes (unlinkable to the patient or the content)."""
    return secrets.token_bytes(ID_BYTES)


def seal_record(
    plaintext: bytes,
    record_id: bytes,
    patient_id: bytes,
    recipients: Mapping[str, bytes],
    *,
    max_plaintext_bytes: int = DEFAULT_MAX_PLAINTEXT_BYTES,
) -> SealedRecord:
    """Encrypt `plaintext` under a fresh data key and wrap that key for every recipient.

    `recipients` maps a name the caller chooses (e.g. "organisation", "patient") to the
    recipient's X25519 public key; at least one, at most `MAX_RECIPIENTS`.
    """
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        raise TypeError("plaintext must be bytes")
    if len(plaintext) > max_plaintext_bytes:
        raise RecordTooLargeError(
            f"record of {len(plaintext)} bytes exceeds the maximum of {max_plaintext_bytes}"
        )
    _require_id("record_id", record_id)
    _require_id("patient_id", patient_id)
    _require_recipients(recipients)

    data_key = AESGCM.generate_key(bit_length=256)
    ciphertext = encrypt_with_data_key(plaintext, data_key, record_id, patient_id)
    wraps = {name: wrap_data_key(data_key, public_key) for name, public_key in recipients.items()}
    content_id = compute_cid(ciphertext)
    return SealedRecord(
        record_id=record_id,
        patient_id=patient_id,
        ciphertext=ciphertext,
        ciphertext_sha256=hashlib.sha256(ciphertext).digest(),
        cid_bytes=content_id.to_bytes(),
        cid_text=content_id.to_text(),
        size=len(ciphertext),
        wraps=MappingProxyType(wraps),
    )


def open_record(
    ciphertext: bytes,
    wrapped_key: bytes,
    recipient_private_key: bytes,
    record_id: bytes,
    patient_id: bytes,
    *,
    max_plaintext_bytes: int = DEFAULT_MAX_PLAINTEXT_BYTES,
) -> bytes:
    """Unwrap the data key with the recipient's private key and decrypt the record.

    Raises WrongRecipientKeyError, RecordBindingError or TamperedCiphertextError (in the order
    they are checked), MalformedEnvelopeError or RecordTooLargeError.
    """
    _check_envelope_shape(ciphertext, max_plaintext_bytes)
    data_key = unwrap_data_key(wrapped_key, recipient_private_key)
    return decrypt_with_data_key(
        ciphertext, data_key, record_id, patient_id, max_plaintext_bytes=max_plaintext_bytes
    )


def rewrap(wrapped_key: bytes, private_key: bytes, grantee_public_key: bytes) -> bytes:
    """Wrap the data key inside `wrapped_key` (opened with `private_key`) for a grantee.

    The result is the 80-byte `wrapped_key` of a GRANT_ACCESS transaction.
    """
    return wrap_data_key(unwrap_data_key(wrapped_key, private_key), grantee_public_key)


def wrap_data_key(data_key: bytes, public_key: bytes) -> bytes:
    """An X25519 sealed box of the 32-byte data key: 80 bytes only `public_key`'s owner opens."""
    _require_bytes("data_key", data_key, DATA_KEY_BYTES)
    if not isinstance(public_key, bytes) or len(public_key) != X25519_KEY_BYTES:
        raise InvalidRecipientKeyError("an X25519 public key is exactly 32 bytes")
    try:
        wrapped = SealedBox(PublicKey(public_key)).encrypt(data_key)
    except CryptoError:
        # libsodium refuses public keys of small order (the shared secret would be all zeros).
        raise InvalidRecipientKeyError("the X25519 public key is of small order") from None
    return bytes(wrapped)


def unwrap_data_key(wrapped_key: bytes, private_key: bytes) -> bytes:
    """Open a sealed-box wrapped data key; WrongRecipientKeyError if it is not for this key."""
    if not isinstance(wrapped_key, bytes) or len(wrapped_key) != WRAPPED_KEY_BYTES:
        raise MalformedEnvelopeError(f"a wrapped data key is exactly {WRAPPED_KEY_BYTES} bytes")
    _require_bytes("private_key", private_key, X25519_KEY_BYTES)
    try:
        return SealedBox(PrivateKey(private_key)).decrypt(wrapped_key)
    except CryptoError:
        raise WrongRecipientKeyError(
            "the wrapped key does not open with this private key (it was wrapped for another "
            "recipient, or altered)"
        ) from None


def encrypt_with_data_key(
    plaintext: bytes, data_key: bytes, record_id: bytes, patient_id: bytes
) -> bytes:
    """The envelope of `plaintext` under `data_key` (a fresh random nonce each call)."""
    _require_bytes("data_key", data_key, DATA_KEY_BYTES)
    associated_data = _associated_data(record_id, patient_id)
    encryption_key, commitment_key = _derive_keys(data_key)
    nonce = secrets.token_bytes(NONCE_BYTES)
    commitment = hmac.digest(commitment_key, associated_data, "sha256")
    sealed = AESGCM(encryption_key).encrypt(nonce, bytes(plaintext), associated_data)
    return bytes((FORMAT_VERSION,)) + nonce + commitment + sealed


def decrypt_with_data_key(
    ciphertext: bytes,
    data_key: bytes,
    record_id: bytes,
    patient_id: bytes,
    *,
    max_plaintext_bytes: int = DEFAULT_MAX_PLAINTEXT_BYTES,
) -> bytes:
    """Decrypt an envelope with an already unwrapped data key (custody and break-glass paths)."""
    _check_envelope_shape(ciphertext, max_plaintext_bytes)
    _require_bytes("data_key", data_key, DATA_KEY_BYTES)
    associated_data = _associated_data(record_id, patient_id)
    encryption_key, commitment_key = _derive_keys(data_key)
    nonce = ciphertext[1 : 1 + NONCE_BYTES]
    commitment = ciphertext[1 + NONCE_BYTES : HEADER_BYTES]
    expected = hmac.digest(commitment_key, associated_data, "sha256")
    if not hmac.compare_digest(commitment, expected):
        raise RecordBindingError(
            "the ciphertext is not bound to this record id and patient id (or this data key), "
            "or its header was altered"
        )
    try:
        return AESGCM(encryption_key).decrypt(nonce, ciphertext[HEADER_BYTES:], associated_data)
    except InvalidTag:
        raise TamperedCiphertextError(
            "the ciphertext fails authentication: it was altered after sealing"
        ) from None


def _check_envelope_shape(ciphertext: bytes, max_plaintext_bytes: int) -> None:
    if not isinstance(ciphertext, bytes):
        raise TypeError("ciphertext must be bytes")
    if len(ciphertext) < ENVELOPE_OVERHEAD_BYTES:
        raise MalformedEnvelopeError(
            f"an envelope is at least {ENVELOPE_OVERHEAD_BYTES} bytes, got {len(ciphertext)}"
        )
    if len(ciphertext) - ENVELOPE_OVERHEAD_BYTES > max_plaintext_bytes:
        raise RecordTooLargeError(
            f"envelope of {len(ciphertext)} bytes exceeds the maximum record size of "
            f"{max_plaintext_bytes} bytes"
        )
    if ciphertext[0] != FORMAT_VERSION:
        raise MalformedEnvelopeError(
            f"unknown envelope format version {ciphertext[0]} (this client reads {FORMAT_VERSION})"
        )


def data_key_commits_to(
    ciphertext: bytes, data_key: bytes, record_id: bytes, patient_id: bytes
) -> bool:
    """Whether `data_key` is the one key that opens this envelope for this record and patient
    (its key commitment, §3), checked without decrypting: a custodian checks a wrap it is
    handed this way and never holds the plaintext (`records.md` §9)."""
    if len(ciphertext) < HEADER_BYTES or ciphertext[0] != FORMAT_VERSION:
        return False
    if len(data_key) != DATA_KEY_BYTES:
        return False
    _, commitment_key = _derive_keys(data_key)
    expected = hmac.digest(commitment_key, _associated_data(record_id, patient_id), "sha256")
    return hmac.compare_digest(ciphertext[1 + NONCE_BYTES : HEADER_BYTES], expected)


def _derive_keys(data_key: bytes) -> tuple[bytes, bytes]:
    """Separate keys for AES-GCM and the commitment HMAC, so no key serves two primitives.

    HKDF-Expand alone is enough: the data key is already uniformly random (RFC 5869 §3.3).
    """
    derived = HKDFExpand(hashes.SHA256(), 64, _KEY_DERIVATION_INFO).derive(data_key)
    return derived[:32], derived[32:]


def _associated_data(record_id: bytes, patient_id: bytes) -> bytes:
    _require_id("record_id", record_id)
    _require_id("patient_id", patient_id)
    return _ASSOCIATED_DATA_LABEL + bytes((FORMAT_VERSION,)) + record_id + patient_id


def _require_bytes(name: str, value: object, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        raise ValueError(f"{name} must be exactly {length} bytes")


def _require_id(name: str, value: object) -> None:
    _require_bytes(name, value, ID_BYTES)
    if value == bytes(ID_BYTES):
        raise ValueError(f"{name} must not be all zeros (the chain rejects a zero id)")


def _require_recipients(recipients: Mapping[str, bytes]) -> None:
    if not isinstance(recipients, Mapping) or not recipients:
        raise ValueError("a record needs at least one recipient (its organisation, its patient)")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValueError(f"at most {MAX_RECIPIENTS} recipients per record")
    for name in recipients:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_RECIPIENT_NAME_LENGTH:
            raise ValueError(
                f"recipient names are strings of 1..{MAX_RECIPIENT_NAME_LENGTH} characters"
            )
