"""The KEK ring a node wraps custody copies with: key files, or versions inside an HSM.

Both rings offer the same small surface (`CustodyKeyRing`), so the record service and the
rotation (`emrchain/records/rotation.py`) do not care where the key-encryption keys live. Each
custody wrap names the version that made it, and `unwrap` always uses that version: during a
rotation, wraps under the old and the new version are both readable.
"""

from __future__ import annotations

from typing import Protocol

from emrchain.config.node import NodeConfig
from emrchain.hsm.key_ring import HsmKeyEncryptionKey, HsmKeyRing
from emrchain.hsm.worker import HsmKeyNotFoundError
from emrchain.storage.file_kek import FileKeyRing
from emrchain.storage.interfaces import CustodyWrap


class VersionedKey(Protocol):
    @property
    def version(self) -> int: ...


class CustodyKeyRing(Protocol):
    """Versioned key-encryption keys: the newest wraps, any surviving version unwraps."""

    def versions(self) -> list[int]:
        """The versions that can still unwrap, oldest first."""
        ...

    def current(self) -> VersionedKey: ...

    def generate(self) -> VersionedKey:
        """Add version max+1; it becomes current."""
        ...

    def destroy(self, version: int) -> None:
        """Delete `version` for good (never the current one)."""
        ...

    def wrap(self, record_id: bytes, data_key: bytes) -> CustodyWrap: ...

    def unwrap(self, wrap: CustodyWrap) -> bytes: ...

    def rewrap(self, wrap: CustodyWrap) -> CustodyWrap: ...


class HsmCustodyKeyRing:
    """`CustodyKeyRing` over the AES-256 KEK versions of an `HsmKeyRing` (wrapping in the HSM)."""

    def __init__(self, ring: HsmKeyRing) -> None:
        self._ring = ring
        # Listing the token's objects on every upload would cost a C_FindObjects round trip;
        # the current version only changes through this object (generate / destroy).
        self._current_version: int | None = None

    def versions(self) -> list[int]:
        return self._ring.versions()

    def current(self) -> VersionedKey:
        if self._current_version is None:
            self._current_version = self._ring.current().version
        return HsmKeyEncryptionKey(self._ring, self._current_version)

    def generate(self) -> VersionedKey:
        key = self._ring.generate_version()
        self._current_version = key.version
        return key

    def destroy(self, version: int) -> None:
        versions = self._ring.versions()
        if version not in versions:
            raise HsmKeyNotFoundError(f"no KEK version {version} in the token to destroy")
        if version == versions[-1]:
            raise ValueError(
                f"KEK version {version} is the current one; generate a new version and rewrap "
                "the vault before destroying it"
            )
        self._ring.destroy_version(version)

    def wrap(self, record_id: bytes, data_key: bytes) -> CustodyWrap:
        version = self.current().version
        wrapped_key = HsmKeyEncryptionKey(self._ring, version).wrap(data_key)
        return CustodyWrap(record_id, version, wrapped_key)

    def unwrap(self, wrap: CustodyWrap) -> bytes:
        # A missing version surfaces from the HSM as HsmKeyNotFoundError (destroyed or never made).
        return HsmKeyEncryptionKey(self._ring, wrap.kek_version).unwrap(wrap.wrapped_key)

    def rewrap(self, wrap: CustodyWrap) -> CustodyWrap:
        version = self.current().version
        if wrap.kek_version == version:
            return wrap
        data_key = self.unwrap(wrap)
        return CustodyWrap(
            wrap.record_id, version, HsmKeyEncryptionKey(self._ring, version).wrap(data_key)
        )


def open_key_ring(config: NodeConfig) -> CustodyKeyRing:
    """The node's KEK ring from `[records] kek_backend`, with a first version if it has none."""
    section = config.records
    if section.kek_backend == "hsm":
        from emrchain.hsm.node_keys import hsm_config_of
        from emrchain.hsm.process import process_worker

        worker = process_worker(hsm_config_of(config))
        ring: CustodyKeyRing = HsmCustodyKeyRing(
            HsmKeyRing(worker, section.hsm_kek_label_prefix)
        )
    else:
        ring = FileKeyRing(config.resolve(section.kek_dir))
    if not ring.versions():
        ring.generate()
    return ring
