"""Ciphertext and custody keys of the records this node serves (`docs/spec/rpc.md`).

The node never holds plaintext. At upload it receives the ciphertext and the record's data key
sealed to its organisation's X25519 key; it opens that seal in memory, wraps the key with its
key-encryption key (KEK) and keeps only that custody copy. An authorised read gets the data key
sealed to the reader's published X25519 key, made in memory from the custody copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from emrchain.client.envelope import data_key_commits_to, decrypt_with_data_key
from emrchain.config.node import NodeConfig, RecordsSection
from emrchain.keystore.member import OrganizationKey
from emrchain.records.key_rings import CustodyKeyRing, open_key_ring
from emrchain.records.organization_key import load_node_organization_key
from emrchain.records.replication import with_failover
from emrchain.records.rotation import (
    ROTATION_STATE_FILE,
    KekRotation,
    RotationError,
    RotationProgress,
)
from emrchain.storage.cid import compute_cid
from emrchain.storage.interfaces import (
    BlobStore,
    Cache,
    CustodyWrap,
    KeyVault,
    StorageError,
)
from emrchain.storage.read_path import read_through

logger = logging.getLogger(__name__)
DATA_KEY_BYTES = 32
SEALED_KEY_BYTES = 80


class CustodyError(ValueError):
    """The custody wrap cannot be opened with this organisation's key."""


@dataclass(frozen=True, slots=True)
class AnchoredCustody:
    """What the chain says of a record this node is a custodian of."""

    record_id: bytes
    patient_id: bytes
    ciphertext_sha256: bytes
    custody_wrap_sha256: bytes
    """The digest the anchor holds of this node's organisation's wrap."""
    patient_wrap_sha256: bytes


@dataclass(frozen=True, slots=True)
class HandedWraps:
    """What a client hands a custodian after anchoring."""

    ciphertext: bytes
    custody_wrap: bytes
    patient_wrap: bytes


@dataclass(frozen=True, slots=True)
class StoredCiphertext:
    cid: str
    cid_bytes: bytes
    ciphertext_sha256: bytes
    size: int


class RecordService:
    """Storage backends plus the organisation key and KEK ring of one node."""

    def __init__(
        self,
        blob_store: BlobStore,
        cache: Cache,
        vault: KeyVault,
        key_ring: CustodyKeyRing,
        organization_key: OrganizationKey | None,
        max_record_bytes: int,
        rotation_state_path: Path | None = None,
    ) -> None:
        self.blob_store = blob_store
        self.cache = cache
        self.vault = vault
        self.key_ring = key_ring
        self.organization_key = organization_key
        self.max_record_bytes = max_record_bytes
        self.rotation_state_path = rotation_state_path

    @property
    def organization_id(self) -> str | None:
        return self.organization_key.organization_id if self.organization_key else None

    async def accept_custody(
        self, anchored: AnchoredCustody, handed: HandedWraps
    ) -> StoredCiphertext:
        """Become a custodian of an anchored record (`docs/spec/records.md` §9): check the
        handed wraps against the digests on chain, check that the data key is the envelope's
        (its key commitment, without decrypting), then keep the ciphertext, the KEK-wrapped
        custody copy and the patient's wrap. Nothing is stored unless every check passes."""
        if self.organization_key is None:
            raise CustodyError("this node serves no organisation; it keeps no custody keys")
        ciphertext = handed.ciphertext
        for name, wrap, digest in (
            ("custody_wrap", handed.custody_wrap, anchored.custody_wrap_sha256),
            ("patient_wrap", handed.patient_wrap, anchored.patient_wrap_sha256),
        ):
            if len(wrap) != SEALED_KEY_BYTES:
                raise CustodyError(f"{name} must be {SEALED_KEY_BYTES} bytes")
            if hashlib.sha256(wrap).digest() != digest:
                raise CustodyError(f"{name} is not the wrap whose SHA-256 the anchor holds")
        if hashlib.sha256(ciphertext).digest() != anchored.ciphertext_sha256:
            raise CustodyError("the ciphertext is not the anchored one (SHA-256 differs)")
        data_key = self._open_custody_wrap(handed.custody_wrap)
        if not data_key_commits_to(ciphertext, data_key, anchored.record_id, anchored.patient_id):
            raise CustodyError("custody_wrap holds a key that does not open the anchored envelope")
        self.vault.put_member_wrap(
            anchored.record_id, anchored.patient_wrap_sha256, handed.patient_wrap
        )
        return await self._keep(anchored.record_id, ciphertext, data_key)

    async def store(
        self, record_id: bytes, ciphertext: bytes, custody_wrap: bytes
    ) -> StoredCiphertext:
        """Keep the ciphertext and the KEK-wrapped custody copy of its data key, with no check
        against the chain (operator tools and benchmarks; the RPC uses `accept_custody`)."""
        if self.organization_key is None:
            raise CustodyError("this node serves no organisation; it keeps no custody keys")
        if len(custody_wrap) != SEALED_KEY_BYTES:
            raise CustodyError(f"custody_wrap must be {SEALED_KEY_BYTES} bytes")
        return await self._keep(record_id, ciphertext, self._open_custody_wrap(custody_wrap))

    async def _keep(self, record_id: bytes, ciphertext: bytes, data_key: bytes) -> StoredCiphertext:
        content_id = compute_cid(ciphertext)
        cid = await self.blob_store.put(ciphertext)
        if cid != content_id.to_text():
            raise CustodyError(f"blob store returned CID {cid}, expected {content_id.to_text()}")
        self.vault.put(self.key_ring.wrap(record_id, data_key))
        await self.cache.set(cid, ciphertext)
        return StoredCiphertext(
            cid, content_id.to_bytes(), hashlib.sha256(ciphertext).digest(), len(ciphertext)
        )

    def _open_custody_wrap(self, custody_wrap: bytes) -> bytes:
        assert self.organization_key is not None
        try:
            box = SealedBox(PrivateKey(self.organization_key.private_key))
            data_key = box.decrypt(custody_wrap)
        except CryptoError:
            raise CustodyError("custody_wrap does not open with this organisation's key") from None
        if len(data_key) != DATA_KEY_BYTES:
            raise CustodyError("custody_wrap does not hold a 32-byte data key")
        return data_key

    def keep_member_wrap(self, record_id: bytes, wrap_sha256: bytes, sealed_wrap: bytes) -> None:
        """Keep a grantee's wrap whose digest a grant on chain holds (checked by the caller)."""
        if len(sealed_wrap) != SEALED_KEY_BYTES:
            raise CustodyError(f"a wrap is {SEALED_KEY_BYTES} bytes")
        if hashlib.sha256(sealed_wrap).digest() != wrap_sha256:
            raise CustodyError("the wrap is not the one whose SHA-256 the grant holds")
        self.vault.put_member_wrap(record_id, wrap_sha256, sealed_wrap)

    def member_wrap(self, record_id: bytes, wrap_sha256: bytes) -> bytes | None:
        return self.vault.member_wrap(record_id, wrap_sha256)

    async def ciphertext(self, cid: str, ciphertext_sha256: bytes) -> bytes:
        """Cache, then blob store; every byte checked against the anchored hash."""
        return await read_through(self.cache, self.blob_store, cid, ciphertext_sha256)

    def has_custody(self, record_id: bytes) -> bool:
        return self.vault.get(record_id) is not None

    def seal_data_key_for(self, record_id: bytes, reader_encryption_key: bytes) -> bytes | None:
        """The record's data key sealed to the reader, or None without a custody copy."""
        wrap: CustodyWrap | None = self.vault.get(record_id)
        if wrap is None:
            return None
        try:
            data_key = self.key_ring.unwrap(wrap)
        except (StorageError, ValueError):
            # A rotation may have re-wrapped this record and destroyed the version we read
            # between our vault read and the unwrap: read the wrap again, under its new version.
            fresh = self.vault.get(record_id)
            if fresh is None or fresh.kek_version == wrap.kek_version:
                raise
            data_key = self.key_ring.unwrap(fresh)
        return SealedBox(PublicKey(reader_encryption_key)).encrypt(data_key)

    async def custody_plaintext(
        self, record_id: bytes, patient_id: bytes, cid: str, ciphertext_sha256: bytes
    ) -> bytes | None:
        """The record decrypted in memory with this organisation's custody copy of its data
        key, for the study worker's local computation (`docs/spec/analytics.md` §4); None
        without a custody copy. The plaintext never leaves the caller."""
        wrap = self.vault.get(record_id)
        if wrap is None:
            return None
        data_key = self.key_ring.unwrap(wrap)
        ciphertext = await self.ciphertext(cid, ciphertext_sha256)
        return decrypt_with_data_key(
            ciphertext, data_key, record_id, patient_id, max_plaintext_bytes=self.max_record_bytes
        )

    def reseal_with_organization_key(self, wrapped_key: bytes, reader_key: bytes) -> bytes:
        """Open a grant's wrap made for our organisation and seal it to a member of it."""
        if self.organization_key is None:
            raise CustodyError("this node serves no organisation")
        try:
            data_key = SealedBox(PrivateKey(self.organization_key.private_key)).decrypt(wrapped_key)
        except CryptoError:
            raise CustodyError("the grant's wrapped key is not for this organisation") from None
        return SealedBox(PublicKey(reader_key)).encrypt(data_key)

    def begin_rotation(self, **options: object) -> KekRotation:
        """Generate a new KEK version and record a rotation to it (run it with `run()`)."""
        return KekRotation.begin(self.key_ring, self.vault, self._rotation_path(), **options)

    def resume_rotation(self, **options: object) -> KekRotation | None:
        """The unfinished rotation of this node, if any."""
        return KekRotation.resume(self.key_ring, self.vault, self._rotation_path(), **options)

    async def finish_unfinished_rotation(self) -> RotationProgress | None:
        """Run to its end the rotation recorded in the state file (begun with `emrchain kek
        begin`, or cut short by a crash or a stop), as a background job of a running node: reads
        and uploads go on meanwhile. None if there is none. A failure is logged, not raised: the
        rotation stays recorded and resumes at the next start. Cancel-safe."""
        if self.rotation_state_path is None:
            return None
        try:
            rotation = self.resume_rotation()
            if rotation is None:
                return None
            logger.info("resuming %s", rotation.progress.describe())
            return await rotation.run()
        except (RotationError, StorageError) as error:
            logger.error("KEK rotation stopped (it resumes at the next start): %s", error)
            return None

    def _rotation_path(self) -> Path:
        if self.rotation_state_path is None:
            raise RotationError("this record service has no rotation state file configured")
        return self.rotation_state_path

    async def erase(self, record_id: bytes, cid: str | None) -> None:
        """Delete the blob, the cache entry, the custody copy and the patient's and grantees'
        wraps (idempotent)."""
        self.vault.delete(record_id)
        self.vault.delete_member_wraps(record_id)
        self.vault.compact_record(record_id)
        if cid:
            # The blob first: a read racing the erasure can then no longer refill the cache
            # after its entry is gone. Either delete raises when it could not confirm (the
            # worker retries the whole erasure).
            await self.blob_store.delete(cid)
            await self.cache.delete(cid)
        logger.info("erased record %s from this node's stores", record_id.hex()[:16])

    async def close(self) -> None:
        await self.blob_store.close()
        await self.cache.close()
        self.vault.close()


def open_redis_cache(section: RecordsSection) -> Cache:
    """The Redis cache of `[records]`: its URL, and AUTH with the password from the
    environment variable the config names (unset or empty: no AUTH)."""
    from emrchain.storage.redis_cache import RedisCache

    unix = section.redis_url.startswith("unix://")
    return RedisCache(
        None if unix else section.redis_url,
        unix_socket=section.redis_url.removeprefix("unix://") if unix else None,
        ttl_ms=section.cache_ttl_ms,
        max_value_bytes=section.max_record_bytes,
        username=section.redis_username or None,
        password=os.environ.get(section.redis_password_environment_variable) or None,
        tls_ca_file=section.redis_tls_ca_file or None,
    )


def open_record_service(config: NodeConfig) -> RecordService:
    """Build the record service from `[records]` and `[keys]` (embedded defaults, or IPFS,
    Redis and an HSM when configured)."""
    from emrchain.storage.local import LocalBlobStore
    from emrchain.storage.memory_cache import MemoryCache
    from emrchain.storage.vault import LevelDbKeyVault

    section = config.records
    if section.blob_backend == "ipfs":
        from emrchain.storage.ipfs import IpfsBlobStore

        blob_store: BlobStore = IpfsBlobStore(
            section.ipfs_api_url,
            timeout_ms=section.ipfs_timeout_ms,
            max_blob_bytes=section.max_record_bytes,
        )
    else:
        blob_store = LocalBlobStore(config.resolve(section.blob_dir), section.max_record_bytes)
    blob_store = with_failover(config, blob_store)  # reads fall back to peers' IPFS nodes
    if section.cache_backend == "redis":
        cache: Cache = open_redis_cache(section)
    else:
        cache = MemoryCache(
            section.cache_max_bytes,
            section.cache_max_entries,
            section.cache_ttl_ms,
            lambda: time.monotonic_ns() // 1_000_000,
        )
    key_ring = open_key_ring(config)
    # Sealed under the KEK (required with the HSM backend): emrchain/records/organization_key.py
    organization_key = load_node_organization_key(config, key_ring)
    vault_path = config.resolve(section.vault_dir)
    vault_path.parent.mkdir(parents=True, exist_ok=True)
    return RecordService(
        blob_store,
        cache,
        LevelDbKeyVault(vault_path),
        key_ring,
        organization_key,
        section.max_record_bytes,
        config.data_path / ROTATION_STATE_FILE,
    )
