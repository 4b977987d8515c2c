"""Member identities and organisation keys as 0600 JSON files.

A member identity is one 32-byte seed: the Ed25519 signing key comes from it directly, the
X25519 encryption key pair from `derive_member_key_pair` (`emrchain/crypto/encryption_keys.py`:
an HKDF step keeps the two secrets distinct). An organisation key is the X25519 key pair
custody wraps are sealed to.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from emrchain.crypto.encryption_keys import derive_member_key_pair
from emrchain.crypto.keys import Ed25519Signer
from emrchain.keystore.file import KeystoreError, read_private_json, write_private_json

MEMBER_TYPE = "emrchain-member-identity"
ORGANIZATION_TYPE = "emrchain-organization-key"
_HEX32 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class MemberIdentity:
    signer: Ed25519Signer
    # Secrets stay out of repr, so logs and tracebacks never print them.
    encryption_private_key: bytes = field(repr=False)
    encryption_public_key: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> MemberIdentity:
        pair = derive_member_key_pair(seed)
        return cls(Ed25519Signer(seed), pair.private_key, pair.public_key)

    @classmethod
    def generate(cls) -> MemberIdentity:
        return cls.from_seed(os.urandom(32))

    @property
    def member_key(self) -> bytes:
        return self.signer.public_key


@dataclass(frozen=True)
class OrganizationKey:
    organization_id: str
    private_key: bytes = field(repr=False)
    public_key: bytes

    @classmethod
    def generate(cls, organization_id: str) -> OrganizationKey:
        pair = derive_member_key_pair(os.urandom(32))
        return cls(organization_id, pair.private_key, pair.public_key)


def write_member_identity(path: Path, identity: MemberIdentity) -> None:
    write_private_json(
        path,
        {
            "type": MEMBER_TYPE,
            "seed": identity.signer.seed.hex(),
            "member_key": identity.member_key.hex(),
            "encryption_key": identity.encryption_public_key.hex(),
        },
    )


def load_member_identity(path: Path) -> MemberIdentity:
    document = _document(path, MEMBER_TYPE, ("seed", "member_key", "encryption_key"))
    identity = MemberIdentity.from_seed(bytes.fromhex(document["seed"]))
    if (identity.member_key.hex(), identity.encryption_public_key.hex()) != (
        document["member_key"],
        document["encryption_key"],
    ):
        raise KeystoreError(f"{path}: public keys do not match the seed (edited or corrupted)")
    return identity


def write_organization_key(path: Path, key: OrganizationKey) -> None:
    write_private_json(
        path,
        {
            "type": ORGANIZATION_TYPE,
            "organization_id": key.organization_id,
            "private_key": key.private_key.hex(),
            "public_key": key.public_key.hex(),
        },
    )


def load_organization_key(path: Path) -> OrganizationKey:
    document = _document(path, ORGANIZATION_TYPE, ("organization_id", "private_key", "public_key"))
    from nacl.public import PrivateKey

    private_key = bytes.fromhex(document["private_key"])
    if bytes(PrivateKey(private_key).public_key).hex() != document["public_key"]:
        raise KeystoreError(f"{path}: public_key does not match private_key")
    return OrganizationKey(
        document["organization_id"], private_key, bytes.fromhex(document["public_key"])
    )


def _document(path: Path, kind: str, fields: tuple[str, ...]) -> dict[str, str]:
    document = read_private_json(path)
    if not isinstance(document, dict) or set(document) != {"type", *fields}:
        raise KeystoreError(f"{path}: expected a JSON object with keys type, {', '.join(fields)}")
    if document["type"] != kind:
        raise KeystoreError(f'{path}: type: must be "{kind}"')
    for name in fields:
        value = document[name]
        if not isinstance(value, str):
            raise KeystoreError(f"{path}: {name}: must be a string")
        if name != "organization_id" and not _HEX32.fullmatch(value):
            raise KeystoreError(f"{path}: {name}: must be 64 lowercase hex characters")
    return document
