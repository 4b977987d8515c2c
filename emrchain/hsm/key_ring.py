"""Versioned AES-256 key-encryption keys inside the HSM, behind `KeyEncryptionKey`.

Each version is its own token object labelled `<prefix>-v<version>` (id = version, 4 bytes big
endian), generated in the token, sensitive and non-extractable, usable only to wrap and unwrap.
Data keys are wrapped with CKM_AES_KEY_WRAP_PAD, which SoftHSM implements as RFC 5649 (AES key
wrap with padding) — the same bytes `cryptography`'s `aes_key_wrap_with_padding` produces, so
a wrap made by the file KEK and one made by the HSM are the same format.

Rotation: `generate_version` adds version n+1 and makes it current; custody wraps are
re-wrapped under it (by the caller, iterating the vault); then `destroy_version` deletes the
old key object from the token, after which nothing wrapped only under it can be unwrapped.
"""

from __future__ import annotations

import re
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass

from emrchain.hsm.worker import HsmContext, HsmKeyNotFoundError, HsmWorker

DATA_KEY_LENGTH = 32
KEK_LENGTH_BITS = 256
WRAP_MECHANISM = Mechanism.AES_KEY_WRAP_PAD
DEFAULT_LABEL_PREFIX = "emrchain-kek"


class InvalidWrappedKeyError(ValueError):
    """The wrapped key is malformed or was not wrapped by this key-encryption key."""


def version_label(prefix: str, version: int) -> str:
    return f"{prefix}-v{version}"


class HsmKeyRing:
    """All KEK versions under one label prefix in the token."""

    def __init__(
        self,
        worker: HsmWorker,
        label_prefix: str = DEFAULT_LABEL_PREFIX,
        *,
        timeout_ms: int = 5_000,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,20}", label_prefix):
            raise ValueError("label_prefix is 1-20 characters of A-Z a-z 0-9 . _ -")
        self._worker = worker
        self._prefix = label_prefix
        self._timeout_ms = timeout_ms
        self._label_pattern = re.compile(re.escape(label_prefix) + r"-v([1-9][0-9]{0,8})")

    def versions(self) -> list[int]:
        """Every KEK version in the token, ascending."""

        def list_versions(context: HsmContext) -> list[int]:
            found = []
            for label in context.labels(ObjectClass.SECRET_KEY, KeyType.AES):
                match = self._label_pattern.fullmatch(label)
                if match:
                    found.append(int(match.group(1)))
            return sorted(found)

        return self._worker.call(
            list_versions,
            self._timeout_ms,
            name="list_kek_versions",
            key_label=f"{self._prefix}-v*",
        )

    def current(self) -> HsmKeyEncryptionKey:
        """The newest version (the one new wraps use); HsmKeyNotFoundError if there is none."""
        versions = self.versions()
        if not versions:
            raise HsmKeyNotFoundError(f"no KEK labelled {self._prefix}-v<n> in the token")
        return HsmKeyEncryptionKey(self, versions[-1])

    def key(self, version: int) -> HsmKeyEncryptionKey:
        """Version `version`; HsmKeyNotFoundError if the token does not hold it."""
        label = version_label(self._prefix, version)
        self._worker.call(
            lambda context: context.find_key(ObjectClass.SECRET_KEY, KeyType.AES, label),
            self._timeout_ms,
            name="find_kek",
            key_label=label,
        )
        return HsmKeyEncryptionKey(self, version)

    def generate_version(self) -> HsmKeyEncryptionKey:
        """Generate version max+1 (1 for the first) in the token and return it."""

        def generate(context: HsmContext) -> int:
            # Listing and generating in one worker call: no other caller can interleave.
            versions = [
                int(match.group(1))
                for label in context.labels(ObjectClass.SECRET_KEY, KeyType.AES)
                if (match := self._label_pattern.fullmatch(label))
            ]
            version = max(versions, default=0) + 1
            context.session.generate_key(
                KeyType.AES,
                KEK_LENGTH_BITS,
                label=version_label(self._prefix, version),
                id=version.to_bytes(4, "big"),
                store=True,
                capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
                template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                    Attribute.TOKEN: True,
                    # Wrapping only: this key never encrypts data directly.
                    Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False,
                },
            )
            return version

        version = self._worker.call(
            generate, self._timeout_ms, name="generate_kek", key_label=f"{self._prefix}-v*"
        )
        return HsmKeyEncryptionKey(self, version)

    def destroy_version(self, version: int) -> None:
        """Delete version `version` from the token (idempotent). Irreversible."""
        label = version_label(self._prefix, version)

        def destroy(context: HsmContext) -> None:
            context.forget(label)
            objects = list(
                context.session.get_objects(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.KEY_TYPE: KeyType.AES,
                        Attribute.LABEL: label,
                    }
                )
            )
            for key in objects:
                key.destroy()

        self._worker.call(destroy, self._timeout_ms, name="destroy_kek", key_label=label)

    # -- used by HsmKeyEncryptionKey -------------------------------------------------------

    def _wrap(self, version: int, data_key: bytes) -> bytes:
        label = version_label(self._prefix, version)

        def wrap(context: HsmContext) -> bytes:
            kek = context.find_key(ObjectClass.SECRET_KEY, KeyType.AES, label)
            # C_WrapKey wraps key objects, not bytes: the data key becomes a short-lived,
            # extractable session object (never stored in the token), destroyed right after.
            data_key_object = context.session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: data_key,
                    Attribute.TOKEN: False,
                    Attribute.SENSITIVE: False,
                    Attribute.EXTRACTABLE: True,
                }
            )
            try:
                return bytes(kek.wrap_key(data_key_object, mechanism=WRAP_MECHANISM))
            finally:
                data_key_object.destroy()

        return self._worker.call(wrap, self._timeout_ms, name="wrap", key_label=label)

    def _unwrap(self, version: int, wrapped_key: bytes) -> bytes:
        label = version_label(self._prefix, version)

        def unwrap(context: HsmContext) -> bytes:
            kek = context.find_key(ObjectClass.SECRET_KEY, KeyType.AES, label)
            try:
                data_key_object: Any = kek.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.AES,
                    wrapped_key,
                    mechanism=WRAP_MECHANISM,
                    store=False,
                    template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
                )
            except (
                pkcs11.exceptions.WrappedKeyInvalid,
                pkcs11.exceptions.WrappedKeyLenRange,
                pkcs11.exceptions.EncryptedDataInvalid,
                pkcs11.exceptions.EncryptedDataLenRange,
                pkcs11.exceptions.DataInvalid,
                pkcs11.exceptions.DataLenRange,
                pkcs11.exceptions.AttributeValueInvalid,
                pkcs11.exceptions.TemplateInconsistent,
                pkcs11.exceptions.GeneralError,
            ) as error:
                raise InvalidWrappedKeyError(
                    f"cannot unwrap with KEK version {version}: {type(error).__name__}"
                ) from None
            try:
                return bytes(data_key_object[Attribute.VALUE])
            finally:
                # Unwrapped session objects live until the session closes (the process's
                # lifetime here): destroy each one now.
                data_key_object.destroy()

        data_key = self._worker.call(unwrap, self._timeout_ms, name="unwrap", key_label=label)
        if len(data_key) != DATA_KEY_LENGTH:
            raise InvalidWrappedKeyError(
                f"unwrapped key is {len(data_key)} bytes, a data key is {DATA_KEY_LENGTH}"
            )
        return data_key


class HsmKeyEncryptionKey:
    """One KEK version of an `HsmKeyRing` (the `KeyEncryptionKey` protocol)."""

    __slots__ = ("_ring", "_version")

    def __init__(self, ring: HsmKeyRing, version: int) -> None:
        if version < 1:
            raise ValueError("KEK versions start at 1")
        self._ring = ring
        self._version = version

    @property
    def version(self) -> int:
        return self._version

    def wrap(self, data_key: bytes) -> bytes:
        """RFC 5649 wrap of a 32-byte data key, done inside the HSM."""
        if not isinstance(data_key, bytes) or len(data_key) != DATA_KEY_LENGTH:
            raise ValueError(f"a data key is exactly {DATA_KEY_LENGTH} bytes")
        return self._ring._wrap(self._version, data_key)

    def unwrap(self, wrapped_key: bytes) -> bytes:
        """The data key inside `wrapped_key`; InvalidWrappedKeyError if it does not verify."""
        if not isinstance(wrapped_key, bytes) or not wrapped_key:
            raise InvalidWrappedKeyError("a wrapped key is non-empty bytes")
        return self._ring._unwrap(self._version, wrapped_key)
