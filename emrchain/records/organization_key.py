"""The organisation key at rest sealed under the node's KEK (in the HSM with `kek_backend = "hsm"`).

SoftHSM2 (and many HSMs) cannot hold an X25519 key, so the organisation's X25519 private key
cannot do its sealed-box work inside the token. What the HSM can do is keep it useless at rest:
the 32-byte private key is wrapped like a custody data key (RFC 5649 by the current KEK version,
inside the token) and only the wrap is on disk:

    {"type": "emrchain-organization-key-sealed", "organization_id": "...",
     "public_key": "<64 hex>", "kek_version": 1, "wrapped_private_key": "<80 hex>"}

At start the node unwraps it once into process memory (one `unwrap` record in the HSM operation
log, caller `...unseal_organization_key`). With `kek_backend = "hsm"` a plain organisation key
file is refused. A KEK rotation that was given the file's path rewraps it before it destroys
the old versions (`emrchain/records/rotation.py`). Format and limits: docs/spec/key-files.md.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import NamedTuple

from nacl.public import PrivateKey

from emrchain.config.node import NodeConfig
from emrchain.hsm.key_ring import InvalidWrappedKeyError
from emrchain.hsm.worker import HsmKeyNotFoundError
from emrchain.keystore.file import KeystoreError, read_private_json, write_private_json
from emrchain.keystore.member import (
    SEALED_ORGANIZATION_TYPE,
    OrganizationKey,
    load_organization_key,
)
from emrchain.records.key_rings import CustodyKeyRing
from emrchain.storage.file_kek import KeyFileError, KeyUnwrapError
from emrchain.storage.interfaces import CustodyWrap

SEALED_FIELDS = ("type", "organization_id", "public_key", "kek_version", "wrapped_private_key")
SEAL_COMMAND = "emrchain seal-organization-key --home"
_WRAP_RECORD_ID = b"organization-key"
"""A label only: custody rings take a record id with each wrap; this one is never stored."""
_HEX32 = re.compile(r"[0-9a-f]{64}")
_WRAPPED_HEX = re.compile(r"[0-9a-f]{80}")


def is_sealed(path: Path) -> bool:
    """Whether `path` holds a sealed organisation key (False for a plain one)."""
    document = read_private_json(path)
    return isinstance(document, dict) and document.get("type") == SEALED_ORGANIZATION_TYPE


def sealed_document(key: OrganizationKey, key_ring: CustodyKeyRing) -> dict[str, object]:
    """`key` wrapped by the ring's current KEK version, as the sealed file's JSON object."""
    wrap = key_ring.wrap(_WRAP_RECORD_ID, key.private_key)
    return {
        "type": SEALED_ORGANIZATION_TYPE,
        "organization_id": key.organization_id,
        "public_key": key.public_key.hex(),
        "kek_version": wrap.kek_version,
        "wrapped_private_key": wrap.wrapped_key.hex(),
    }


def write_sealed_organization_key(
    path: Path, key: OrganizationKey, key_ring: CustodyKeyRing
) -> None:
    """Write `key` sealed to the new file `path` (mode 0600, never overwriting)."""
    write_private_json(path, sealed_document(key, key_ring))


def unseal_organization_key(path: Path, key_ring: CustodyKeyRing) -> OrganizationKey:
    """The organisation key in the sealed file `path`, unwrapped by the KEK that sealed it."""
    document = _sealed_fields(path)
    wrap = CustodyWrap(
        _WRAP_RECORD_ID, document.kek_version, bytes.fromhex(document.wrapped_private_key)
    )
    try:
        private_key = key_ring.unwrap(wrap)
    # Only "this KEK did not seal it" errors: an HSM that is down stays HsmUnavailableError.
    except (InvalidWrappedKeyError, KeyUnwrapError, HsmKeyNotFoundError, KeyFileError) as error:
        raise KeystoreError(
            f"{path}: cannot unseal the organisation key with KEK version {wrap.kek_version} "
            f"(sealed by another HSM token, a destroyed KEK version, or altered): {error}"
        ) from None
    if bytes(PrivateKey(private_key).public_key).hex() != document.public_key:
        raise KeystoreError(f"{path}: the unsealed private key does not match public_key")
    return OrganizationKey(
        document.organization_id, private_key, bytes.fromhex(document.public_key)
    )


def load_node_organization_key(
    config: NodeConfig, key_ring: CustodyKeyRing
) -> OrganizationKey | None:
    """The node's organisation key (None if the home has none): sealed, or plain when the KEK
    backend is the key files. A plain file with `kek_backend = "hsm"` is refused."""
    path = config.organization_key_path
    if not path.exists():
        return None
    if is_sealed(path):
        return unseal_organization_key(path, key_ring)
    if config.records.kek_backend == "hsm":
        raise KeystoreError(
            f'{path}: a plain organisation key is refused with kek_backend = "hsm"; seal it '
            f"under the HSM KEK with `{SEAL_COMMAND} {config.home}`"
        )
    return load_organization_key(path)


def seal_organization_key_file(path: Path, key_ring: CustodyKeyRing) -> OrganizationKey:
    """Replace the plain organisation key file `path` by its sealed form, then zero-fill the
    plain bytes. At every moment `path` holds one of the two forms (atomic rename)."""
    if is_sealed(path):
        raise KeystoreError(f"{path}: the organisation key is already sealed")
    key = load_organization_key(path)
    staged = path.with_name(f".{path.name}.sealed")
    staged.unlink(missing_ok=True)  # left by an earlier attempt cut short
    write_sealed_organization_key(staged, key, key_ring)
    if unseal_organization_key(staged, key_ring) != key:
        staged.unlink()
        raise KeystoreError(f"{path}: the sealed copy does not open to the same key")
    # The plain file's inode stays open across the rename, so its bytes can be overwritten
    # after `path` already names the sealed file. Best effort on SSDs and copy-on-write
    # filesystems, as for destroyed KEK files.
    with open(path, "r+b") as plain:
        os.replace(staged, path)
        plain.write(bytes(os.fstat(plain.fileno()).st_size))
        plain.flush()
        os.fsync(plain.fileno())
    _sync_directory(path.parent)
    return key


def rewrap_sealed_organization_key(path: Path, key_ring: CustodyKeyRing) -> bool:
    """Re-seal the file under the ring's current KEK version (a rotation step); True if it
    changed. A missing or plain file is left alone."""
    if not path.exists() or not is_sealed(path):
        return False
    if _sealed_fields(path).kek_version == key_ring.current().version:
        return False
    key = unseal_organization_key(path, key_ring)
    staged = path.with_name(f".{path.name}.sealed")
    staged.unlink(missing_ok=True)
    write_sealed_organization_key(staged, key, key_ring)
    os.replace(staged, path)
    _sync_directory(path.parent)
    return True


class _SealedFields(NamedTuple):
    organization_id: str
    public_key: str
    kek_version: int
    wrapped_private_key: str


def _sealed_fields(path: Path) -> _SealedFields:
    document = read_private_json(path)
    if not isinstance(document, dict) or set(document) != set(SEALED_FIELDS):
        raise KeystoreError(f"{path}: expected a JSON object with keys {', '.join(SEALED_FIELDS)}")
    if document["type"] != SEALED_ORGANIZATION_TYPE:
        raise KeystoreError(f'{path}: type: must be "{SEALED_ORGANIZATION_TYPE}"')
    if not isinstance(document["organization_id"], str):
        raise KeystoreError(f"{path}: organization_id: must be a string")
    if not isinstance(document["public_key"], str) or not _HEX32.fullmatch(document["public_key"]):
        raise KeystoreError(f"{path}: public_key: must be 64 lowercase hex characters")
    version = document["kek_version"]
    if type(version) is not int or version < 1:
        raise KeystoreError(f"{path}: kek_version: must be a positive integer")
    wrapped = document["wrapped_private_key"]
    if not isinstance(wrapped, str) or not _WRAPPED_HEX.fullmatch(wrapped):
        raise KeystoreError(f"{path}: wrapped_private_key: must be 80 lowercase hex characters")
    return _SealedFields(document["organization_id"], document["public_key"], version, wrapped)


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    with contextlib.suppress(OSError):
        os.fsync(descriptor)
    os.close(descriptor)

