"""Signing keys behind one small protocol, and single-signature verification.

Every verification in the node goes through `emrchain._core.verify_batch`, so one set of
Ed25519 acceptance rules applies everywhere (`docs/spec/encoding.md` §2).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from nacl.signing import SigningKey

from emrchain import _core


@runtime_checkable
class Signer(Protocol):
    """Anything that holds an Ed25519 private key: a key file, an HSM token."""

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `message`."""
        ...


class Ed25519Signer:
    """A software Ed25519 key (PyNaCl); the devnet's default keystore holds these."""

    __slots__ = ("_key", "_public_key")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("an Ed25519 seed is exactly 32 bytes")
        self._key = SigningKey(seed)
        self._public_key = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(bytes(SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Verify one signature under the chain's acceptance rules."""
    verdicts: bytes = _core.verify_batch([public_key], [message], [signature], 1)
    return verdicts == b"\x01"
