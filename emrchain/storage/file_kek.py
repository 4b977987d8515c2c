"""Key-encryption keys in owner-only files, and a ring of versions for rotation.

A `FileKeyEncryptionKey` is one AES-256 key that wraps 32-byte data keys with AES key wrap with
padding (RFC 5649, from `cryptography`): a data key becomes 40 bytes, and unwrapping with any
other key fails its integrity check. The file holds the version with the key, so a custody wrap
(which records `kek_version`) always finds the key that made it:

    {"type": "aes256-kek", "version": 3, "key": "<64 lowercase hex>"}

A `FileKeyRing` is a directory of such files, `kek-v<version>.json`. Rotation: `generate()`
adds version n+1, which becomes current for new wraps; rewrap every vault entry
(`KeyVault.iterate`, `FileKeyRing.rewrap`); then `destroy(n)`. A destroyed version leaves a
`kek-v<version>.destroyed` marker so its number is never reused and a late request for it says
"destroyed" rather than "missing".

Files are created with mode 0600 and refused if group or others may access them, as the node's
signing key files are (`emrchain/keystore/file.py`). Python cannot wipe the key bytes it holds
in memory; the HSM twin exists for deployments that need the key to stay in hardware.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from emrchain.keystore.file import KeystoreError, read_private_json, write_private_json
from emrchain.storage.interfaces import CustodyWrap, KeyUnavailableError, StorageError

KEY_FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
KEY_TYPE = "aes256-kek"
KEK_BYTES = 32
DATA_KEY_BYTES = 32
WRAPPED_KEY_BYTES = 40
"""RFC 5649 output for a 32-byte key: 8-byte integrity block + 32 bytes."""
MAX_VERSION = 0xFFFF_FFFF
"""Versions are stored as u32 in the vault."""

_HEX32 = re.compile(r"[0-9a-f]{64}")
_KEY_FILE_NAME = re.compile(r"kek-v([1-9][0-9]{0,9})\.json")
_DESTROYED_NAME = re.compile(r"kek-v([1-9][0-9]{0,9})\.destroyed")


class KeyFileError(KeyUnavailableError):
    """A key file is missing, unreadable, malformed or too widely readable; names the file."""


class KeyUnwrapError(StorageError):
    """A wrapped key fails its integrity check: wrong KEK (version) or altered bytes."""


class FileKeyEncryptionKey:
    """A `KeyEncryptionKey` whose AES-256 key was loaded from (or written to) a key file."""

    __slots__ = ("_key", "_version")

    def __init__(self, version: int, key: bytes) -> None:
        if not 1 <= version <= MAX_VERSION:
            raise ValueError(f"a KEK version is 1..{MAX_VERSION}")
        if not isinstance(key, bytes) or len(key) != KEK_BYTES:
            raise ValueError(f"a KEK is exactly {KEK_BYTES} bytes")
        self._version = version
        self._key = key

    def __repr__(self) -> str:
        return f"FileKeyEncryptionKey(version={self._version})"  # never the key

    @classmethod
    def generate(cls, path: Path, version: int) -> FileKeyEncryptionKey:
        """Create a random KEK of `version` in `path` (which must not exist yet)."""
        kek = cls(version, secrets.token_bytes(KEK_BYTES))
        _write_key_file(path, kek._version, kek._key)
        return kek

    @classmethod
    def load(cls, path: Path) -> FileKeyEncryptionKey:
        """Load a key file, refusing one that group or others may access."""
        version, key = _read_key_file(path)
        return cls(version, key)

    @property
    def version(self) -> int:
        return self._version

    def wrap(self, data_key: bytes) -> bytes:
        """RFC 5649 wrap of a 32-byte data key (40 bytes)."""
        if not isinstance(data_key, bytes) or len(data_key) != DATA_KEY_BYTES:
            raise ValueError(f"a data key is exactly {DATA_KEY_BYTES} bytes")
        return aes_key_wrap_with_padding(self._key, data_key)

    def unwrap(self, wrapped_key: bytes) -> bytes:
        """The data key inside `wrapped_key`; KeyUnwrapError if this KEK did not wrap it."""
        if not isinstance(wrapped_key, bytes) or len(wrapped_key) != WRAPPED_KEY_BYTES:
            raise KeyUnwrapError(f"a wrapped data key is exactly {WRAPPED_KEY_BYTES} bytes")
        try:
            data_key = aes_key_unwrap_with_padding(self._key, wrapped_key)
        except InvalidUnwrap:
            raise KeyUnwrapError(
                f"the wrapped key does not unwrap with KEK version {self._version} "
                "(wrapped by another version, or altered)"
            ) from None
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyUnwrapError("the wrapped key does not hold a 32-byte data key")
        return data_key


class FileKeyRing:
    """The KEK versions of a node, one key file each, in one owner-only directory."""

    def __init__(self, directory: Path | str) -> None:
        self._directory = Path(directory)
        try:
            self._directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        except OSError as error:
            raise KeyFileError(f"{self._directory}: cannot create key directory: {error}") from None
        self._loaded: dict[int, FileKeyEncryptionKey] = {}

    def versions(self) -> list[int]:
        """The versions that can still unwrap, oldest first."""
        return sorted(self._scan(_KEY_FILE_NAME) - self._scan(_DESTROYED_NAME))

    def current(self) -> FileKeyEncryptionKey:
        """The newest version: the one new custody wraps use."""
        versions = self.versions()
        if not versions:
            raise KeyFileError(f"{self._directory}: no key-encryption key yet (generate one)")
        return self.get(versions[-1])

    def get(self, version: int) -> FileKeyEncryptionKey:
        """KEK `version`; KeyFileError if it was destroyed or never existed here."""
        kek = self._loaded.get(version)
        if kek is not None:
            return kek
        if version in self._scan(_DESTROYED_NAME):
            raise KeyFileError(f"{self._directory}: KEK version {version} was destroyed")
        path = self._key_path(version)
        kek = FileKeyEncryptionKey.load(path)
        if kek.version != version:
            raise KeyFileError(f"{path}: holds version {kek.version}, its name says {version}")
        self._loaded[version] = kek
        return kek

    def generate(self) -> FileKeyEncryptionKey:
        """Add a new version (one above every version ever used here); it becomes current."""
        used = self._scan(_KEY_FILE_NAME) | self._scan(_DESTROYED_NAME)
        version = max(used, default=0) + 1
        if version > MAX_VERSION:
            raise KeyFileError(f"{self._directory}: KEK versions exhausted")
        kek = FileKeyEncryptionKey.generate(self._key_path(version), version)
        self._loaded[version] = kek
        return kek

    def destroy(self, version: int) -> None:
        """Delete KEK `version` for good; wraps it made can no longer be unwrapped.

        The newest version is refused: generate its successor and rewrap first. The file is
        overwritten with zeros before it is unlinked; on SSDs and copy-on-write filesystems that
        is best effort only.
        """
        versions = sorted(self._scan(_KEY_FILE_NAME))  # with a destruction a crash cut short
        if version not in versions:
            raise KeyFileError(f"{self._directory}: no KEK version {version} to destroy")
        if version == versions[-1]:
            raise ValueError(
                f"KEK version {version} is the current one; generate a new version and rewrap "
                "the vault before destroying it"
            )
        path = self._key_path(version)
        marker = self._directory / f"kek-v{version}.destroyed"
        # The marker first: a crash after it leaves a key that `get` already refuses.
        marker.touch(mode=KEY_FILE_MODE)
        with open(path, "r+b") as handle:
            handle.write(bytes(os.fstat(handle.fileno()).st_size))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
        _sync_directory(self._directory)
        self._loaded.pop(version, None)

    def wrap(self, record_id: bytes, data_key: bytes) -> CustodyWrap:
        """A custody wrap of `data_key` under the current version."""
        kek = self.current()
        return CustodyWrap(record_id, kek.version, kek.wrap(data_key))

    def unwrap(self, wrap: CustodyWrap) -> bytes:
        """The data key of a custody wrap, with the version that made it."""
        return self.get(wrap.kek_version).unwrap(wrap.wrapped_key)

    def rewrap(self, wrap: CustodyWrap) -> CustodyWrap:
        """`wrap` under the current version (unchanged if it already is): one rotation step."""
        current = self.current()
        if wrap.kek_version == current.version:
            return wrap
        return CustodyWrap(wrap.record_id, current.version, current.wrap(self.unwrap(wrap)))

    def _key_path(self, version: int) -> Path:
        return self._directory / f"kek-v{version}.json"

    def _scan(self, pattern: re.Pattern[str]) -> set[int]:
        try:
            names = os.listdir(self._directory)
        except OSError as error:
            raise KeyFileError(f"{self._directory}: cannot list key directory: {error}") from None
        return {int(match[1]) for name in names if (match := pattern.fullmatch(name))}


def _write_key_file(path: Path, version: int, key: bytes) -> None:
    """Write a key file with mode 0600, synced, never overwriting one (the keystore's writer)."""
    try:
        write_private_json(path, {"type": KEY_TYPE, "version": version, "key": key.hex()})
    except KeystoreError as error:
        raise KeyFileError(str(error)) from None


def _read_key_file(path: Path) -> tuple[int, bytes]:
    """(version, key) of a key file, after checking its mode, size and every field."""
    try:
        document = read_private_json(path)
    except KeystoreError as error:
        raise KeyFileError(str(error)) from None
    if not isinstance(document, dict) or set(document) != {"type", "version", "key"}:
        raise KeyFileError(
            f'{path}: a key file is a JSON object with exactly the keys "type", "version" and "key"'
        )
    if document["type"] != KEY_TYPE:
        raise KeyFileError(f'{path}: type: must be "{KEY_TYPE}", got {document["type"]!r}')
    version = document["version"]
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise KeyFileError(f"{path}: version: must be an integer 1..{MAX_VERSION}")
    if not isinstance(document["key"], str) or not _HEX32.fullmatch(document["key"]):
        raise KeyFileError(f"{path}: key: must be 64 lowercase hex characters")
    return version, bytes.fromhex(document["key"])


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
