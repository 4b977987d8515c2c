"""Member identities and organisation keys as 0600 JSON files.

A member identity is one 32-byte seed: the Ed25519 signing key comes from it directly, the
X25519 encryption key pair from `derive_member_key_pair` (`emrchain/crypto/encryption_keys.py`:
an HKDF step keeps the two secrets distinct). An organisation key is the X25519 key pair
custody wraps are sealed to.

A member identity file is either encrypted (the seed sealed under a passphrase,
`emrchain/keystore/sealed.py`, format in `docs/spec/key-files.md`) or plain (the seed in hex).
A plain file still loads, with a warning, unless the environment variable named by
`REQUIRE_ENCRYPTED_VARIABLE` is set to 1, which refuses it. The passphrase comes from the
caller (the CLI prompts on a terminal) or from the environment variable `PASSPHRASE_VARIABLE`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emrchain.crypto.encryption_keys import derive_member_key_pair
from emrchain.crypto.keys import Ed25519Signer
from emrchain.keystore.file import KeystoreError, read_private_json, write_private_json
from emrchain.keystore.sealed import DEFAULT_LOG2_N, SEALED_FIELDS, SealError, open_seed, seal_seed

logger = logging.getLogger(__name__)

MEMBER_TYPE = "emrchain-member-identity"
ENCRYPTED_MEMBER_TYPE = "emrchain-member-identity-encrypted"
PASSPHRASE_VARIABLE = "EMRCHAIN_KEY_PASSPHRASE"
REQUIRE_ENCRYPTED_VARIABLE = "EMRCHAIN_REQUIRE_ENCRYPTED_KEYS"
PUBLIC_MEMBER_FIELDS = ("member_key", "encryption_key")
PassphraseSource = str | Callable[[], str] | None
ORGANIZATION_TYPE = "emrchain-organization-key"
SEALED_ORGANIZATION_TYPE = "emrchain-organization-key-sealed"
"""The private key wrapped by the node's KEK (`emrchain/records/organization_key.py`)."""
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


@dataclass(frozen=True)
class OrganizationPublicKey:
    """What clients and tools need of an organisation key: no secret, so sealed files do too."""

    organization_id: str
    public_key: bytes


def write_member_identity(
    path: Path,
    identity: MemberIdentity,
    passphrase: str | None = None,
    *,
    scrypt_log2_n: int = DEFAULT_LOG2_N,
) -> None:
    """Write `identity` to the new file `path`: sealed under `passphrase`, or plain if None."""
    public = {
        "member_key": identity.member_key.hex(),
        "encryption_key": identity.encryption_public_key.hex(),
    }
    if passphrase is None:
        write_private_json(
            path, {"type": MEMBER_TYPE, "seed": identity.signer.seed.hex(), **public}
        )
        return
    try:
        document = seal_seed(
            identity.signer.seed,
            passphrase,
            {"type": ENCRYPTED_MEMBER_TYPE, **public},
            log2_n=scrypt_log2_n,
        )
    except SealError as error:
        raise KeystoreError(f"{path}: {error}") from None
    write_private_json(path, document)


def load_member_identity(
    path: Path, passphrase: PassphraseSource = None, *, require_encrypted: bool | None = None
) -> MemberIdentity:
    """Read a member identity file, plain or encrypted (see the module docstring)."""
    document = read_private_json(path)
    if isinstance(document, dict) and document.get("type") == ENCRYPTED_MEMBER_TYPE:
        seed = _open_encrypted(path, document, passphrase)
        public = {name: str(document[name]) for name in PUBLIC_MEMBER_FIELDS}
    else:
        if require_encrypted is None:
            require_encrypted = os.environ.get(REQUIRE_ENCRYPTED_VARIABLE, "") == "1"
        plain = _document(path, MEMBER_TYPE, ("seed", *PUBLIC_MEMBER_FIELDS))
        if require_encrypted:
            raise KeystoreError(
                f"{path}: unencrypted member identity refused ({REQUIRE_ENCRYPTED_VARIABLE}=1); "
                "encrypt it with `emrchain keys encrypt`"
            )
        logger.warning(
            "%s: member identity file is not encrypted; encrypt it with `emrchain keys encrypt`",
            path,
        )
        seed, public = bytes.fromhex(plain["seed"]), plain
    identity = MemberIdentity.from_seed(seed)
    if (identity.member_key.hex(), identity.encryption_public_key.hex()) != (
        public["member_key"],
        public["encryption_key"],
    ):
        raise KeystoreError(f"{path}: public keys do not match the seed (edited or corrupted)")
    return identity


def _open_encrypted(path: Path, document: dict[str, object], source: PassphraseSource) -> bytes:
    expected = {"type", *PUBLIC_MEMBER_FIELDS, *SEALED_FIELDS}
    if set(document) != expected:
        raise KeystoreError(f"{path}: expected the keys {', '.join(sorted(expected))}")
    for name in PUBLIC_MEMBER_FIELDS:
        value = document[name]
        if not isinstance(value, str) or not _HEX32.fullmatch(value):
            raise KeystoreError(f"{path}: {name}: must be 64 lowercase hex characters")
    if callable(source):
        source = source()
    if source is None:
        source = os.environ.get(PASSPHRASE_VARIABLE)
    if source is None:
        raise KeystoreError(
            f"{path}: the member identity is encrypted: give its passphrase (the CLI prompts "
            f"on a terminal) or set {PASSPHRASE_VARIABLE}"
        )
    try:
        return open_seed(document, source)
    except SealError as error:
        raise KeystoreError(f"{path}: {error}") from None


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


def load_organization_public_key(path: Path) -> OrganizationPublicKey:
    """The organisation id and public key of a plain or sealed organisation key file (the
    private key is neither read nor unsealed)."""
    document = read_private_json(path)
    if not isinstance(document, dict) or document.get("type") not in (
        ORGANIZATION_TYPE,
        SEALED_ORGANIZATION_TYPE,
    ):
        raise KeystoreError(f"{path}: not an organisation key file (plain or sealed)")
    organization_id, public_key = document.get("organization_id"), document.get("public_key")
    if not isinstance(organization_id, str):
        raise KeystoreError(f"{path}: organization_id: must be a string")
    if not isinstance(public_key, str) or not _HEX32.fullmatch(public_key):
        raise KeystoreError(f"{path}: public_key: must be 64 lowercase hex characters")
    return OrganizationPublicKey(organization_id, bytes.fromhex(public_key))


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
