"""X25519 encryption key pairs: a member's, derived from the seed of its signing key, or a
random one (an organisation's custody key). Record keys are sealed to their public halves
(`emrchain/client/envelope.py`, `docs/spec/records.md`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from nacl.public import PrivateKey

SEED_BYTES = 32
_MEMBER_KEY_DERIVATION_INFO = b"emrchain/member-x25519/v1"


@dataclass(frozen=True, slots=True)
class MemberKeyPair:
    """A member's X25519 encryption key pair (raw 32-byte keys)."""

    private_key: bytes = field(repr=False)
    public_key: bytes


def derive_member_key_pair(seed: bytes) -> MemberKeyPair:
    """The X25519 key pair of a member, derived deterministically from a 32-byte secret seed.

    The seed goes through HKDF with an X25519-specific label before libsodium's seeded key
    generation. Without it, the same seed used for the member's Ed25519 signing key would give
    the very same secret scalar (both hash the seed with SHA-512 and keep 32 bytes), reusing one
    key for signatures and key agreement.
    """
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be exactly {SEED_BYTES} bytes")
    derived = HKDFExpand(hashes.SHA256(), 32, _MEMBER_KEY_DERIVATION_INFO).derive(seed)
    private_key = PrivateKey.from_seed(derived)
    return MemberKeyPair(bytes(private_key), bytes(private_key.public_key))


def generate_member_key_pair() -> MemberKeyPair:
    """A random X25519 key pair."""
    private_key = PrivateKey.generate()
    return MemberKeyPair(bytes(private_key), bytes(private_key.public_key))
