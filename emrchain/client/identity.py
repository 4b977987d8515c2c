"""Member identities on the client side: one seed, an Ed25519 signing key and an X25519 pair.

The identity type and its key-file format belong to the keystore (`emrchain/keystore/member.py`,
one 0600 JSON file, never overwritten), so the files `emrchain testnet` writes into node homes
(`config/admin_key.json`) and the files `emrchain keys new` writes are the same thing:

    {"type": "emrchain-member-identity", "seed": "<64 hex>",
     "member_key": "<64 hex>", "encryption_key": "<64 hex>"}

The signing key is the seed itself (RFC 8032); the encryption key pair is
`derive_member_key_pair(seed)` (`emrchain/crypto/encryption_keys.py`), whose HKDF label keeps
the two secret scalars apart. An encrypted file holds the seed sealed under a passphrase
instead (`docs/spec/key-files.md`).
"""

from __future__ import annotations

from pathlib import Path

from emrchain.keystore.member import (
    PASSPHRASE_VARIABLE,
    MemberIdentity,
    OrganizationKey,
    OrganizationPublicKey,
    PassphraseSource,
    load_member_identity,
    load_organization_key,
    load_organization_public_key,
    write_member_identity,
)


def create_identity_file(path: Path, passphrase: str | None = None) -> MemberIdentity:
    """A fresh random identity, written to `path` (mode 0600; an existing file is refused),
    sealed under `passphrase` unless it is None."""
    identity = MemberIdentity.generate()
    write_member_identity(path, identity, passphrase)
    return identity


def load_identity(path: Path, passphrase: PassphraseSource = None) -> MemberIdentity:
    """Read a member key file, plain or encrypted (`passphrase`, else the environment variable
    `PASSPHRASE_VARIABLE`); KeystoreError (one line, naming the file) if it cannot."""
    return load_member_identity(path, passphrase)


def save_identity(path: Path, identity: MemberIdentity, passphrase: str | None = None) -> None:
    write_member_identity(path, identity, passphrase)


__all__ = [
    "PASSPHRASE_VARIABLE",
    "MemberIdentity",
    "OrganizationKey",
    "OrganizationPublicKey",
    "create_identity_file",
    "load_identity",
    "load_organization_key",
    "load_organization_public_key",
    "save_identity",
]
