"""Where ciphertext and key material live, behind small interfaces.

Embedded defaults (a content-addressed directory, an in-process LRU, a LevelDB vault, a key
file) make everything work with nothing installed; IPFS, Redis and a PKCS#11 HSM implement the
same protocols. Nothing here ever sees plaintext: blobs are AES-256-GCM ciphertext, vault
entries are wrapped data keys.

Integrity is never delegated: `BlobStore.get` and the record read path check every byte
against the SHA-256 anchored on chain before returning it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """Base class of storage failures; each subclass maps to one RPC status."""


class BlobNotFoundError(StorageError):
    """No store we can reach holds this CID (RPC 404, or 410 after erasure)."""


class BlobCorruptedError(StorageError):
    """A store returned bytes whose SHA-256 differs from the anchor (never served)."""


class StorageUnavailableError(StorageError):
    """The backing service is down or too slow (RPC 503 with this message as the reason)."""


class KeyUnavailableError(StorageError):
    """The key-encryption key (file or HSM) cannot be used right now."""


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed ciphertext storage. CIDs are CIDv1, raw leaves, sha2-256, base32 text
    (`bafk...`), exactly as IPFS computes them for the same bytes."""

    async def put(self, data: bytes) -> str:
        """Store `data`, pin it, and return its CID."""
        ...

    async def get(self, cid: str, expected_sha256: bytes) -> bytes:
        """The bytes of `cid`, checked against `expected_sha256`; BlobCorruptedError if they
        differ, BlobNotFoundError if absent, StorageUnavailableError if unreachable."""
        ...

    async def pin(self, cid: str) -> None:
        """Keep `cid` (fetching it from the network if this store is replicated)."""
        ...

    async def delete(self, cid: str) -> None:
        """Unpin and remove `cid` as far as this store can (erasure). Idempotent."""
        ...

    async def has(self, cid: str) -> bool:
        """Whether this store holds `cid` locally right now."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Cache(Protocol):
    """A bounded hot cache of ciphertext keyed by CID. Best effort: a cache that is down
    behaves as a miss, never as an error, and whatever it returns is hash-checked by the
    caller before use."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None:
        """Remove `key`'s entry (absent is fine); StorageUnavailableError when the cache
        cannot confirm it is gone (the one call that is not best effort: erasure needs it)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CustodyWrap:
    """A record's data key wrapped by the node's key-encryption key `kek_version`."""

    record_id: bytes
    kek_version: int
    wrapped_key: bytes


@runtime_checkable
class KeyVault(Protocol):
    """Custody copies of wrapped data keys, by record id (LevelDB by default)."""

    def put(self, wrap: CustodyWrap) -> None: ...

    def get(self, record_id: bytes) -> CustodyWrap | None: ...

    def delete(self, record_id: bytes) -> None: ...

    def iterate(self, after: bytes = b"", limit: int = 1000) -> list[CustodyWrap]:
        """Up to `limit` wraps with record id > `after`, in record-id order (for rotation)."""
        ...

    def put_member_wrap(self, record_id: bytes, wrap_sha256: bytes, sealed_wrap: bytes) -> None:
        """The patient's or a grantee's sealed box, under the digest the chain holds."""
        ...

    def member_wrap(self, record_id: bytes, wrap_sha256: bytes) -> bytes | None: ...

    def delete_member_wraps(self, record_id: bytes) -> int: ...

    def compact_record(self, record_id: bytes) -> None:
        """Make deleted entries of the record leave the database files."""
        ...

    def enqueue_erasure(self, record_id: bytes, cid_text: str) -> None:
        """Durably queue the deletion of a record's copies (retried until it finishes)."""
        ...

    def pending_erasures(self, limit: int) -> list[tuple[bytes, str]]: ...

    def finish_erasure(self, record_id: bytes) -> None: ...

    def erasure_cursor(self) -> int | None:
        """The height through which every committed erasure is queued; None if never set."""
        ...

    def set_erasure_cursor(self, height: int) -> None: ...

    def notification_cursor(self, destination: str) -> int | None:
        """The height through which `destination` was sent every review event."""
        ...

    def set_notification_cursor(self, destination: str, height: int) -> None: ...

    def put_contribution(
        self, study_id: bytes, query_id: bytes, masked: bool, vector: list[int]
    ) -> None:
        """Keep this organisation's computed contribution to a study query, synced."""
        ...

    def contribution(self, study_id: bytes, query_id: bytes) -> tuple[bool, list[int]] | None:
        ...

    def delete_contribution(self, study_id: bytes, query_id: bytes) -> None: ...

    def contribution_count(self) -> int: ...

    def close(self) -> None: ...


@runtime_checkable
class KeyEncryptionKey(Protocol):
    """Wraps and unwraps 32-byte data keys (AES key wrap with padding, RFC 5649). The key
    itself never leaves its holder (a key file, or an HSM where it is non-extractable)."""

    @property
    def version(self) -> int: ...

    def wrap(self, data_key: bytes) -> bytes: ...

    def unwrap(self, wrapped_key: bytes) -> bytes: ...
