"""`LocalBlobStore`: ciphertext blobs as files in a content-addressed directory.

Layout under the store's directory:

    blobs/<shard>/<cid text>   one file per blob; <shard> is the two characters before the
                               CID's last one (IPFS flatfs's "next-to-last/2" scheme: the end of a
                               base32 CID is its digest, so shards fill evenly)
    tmp/                       files being written; emptied when the store opens
    quarantine/<cid text>      the last copy that failed its hash check, kept for inspection

A write goes to `tmp/`, is fsynced, renamed into place and the shard directory is fsynced, so a
crash leaves either the whole blob or none of it. One process owns a store directory at a time.

File I/O runs in a worker thread (`asyncio.to_thread`) so a 64 MiB blob does not stall the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from emrchain.storage.cid import ContentId, InvalidCidError, compute_cid
from emrchain.storage.interfaces import (
    BlobCorruptedError,
    BlobNotFoundError,
    StorageError,
    StorageUnavailableError,
)

BLOBS_DIRECTORY = "blobs"
TEMPORARY_DIRECTORY = "tmp"
QUARANTINE_DIRECTORY = "quarantine"
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
MAX_BLOB_BYTES_LIMIT = 1 << 40
"""The largest `size_bytes` an ANCHOR_RECORD can state (`encoding.md` §4.2)."""


class BlobTooLargeError(StorageError):
    """A blob larger than the store's `max_blob_bytes` (refused on put and on get)."""


class LocalBlobStore:
    """A `BlobStore` over a local directory (the embedded default)."""

    def __init__(self, directory: Path | str, max_blob_bytes: int) -> None:
        if not 1 <= max_blob_bytes <= MAX_BLOB_BYTES_LIMIT:
            raise ValueError(f"max_blob_bytes must be 1..{MAX_BLOB_BYTES_LIMIT}")
        self._root = Path(directory)
        self._max_blob_bytes = max_blob_bytes
        self._closed = False
        try:
            for name in (BLOBS_DIRECTORY, TEMPORARY_DIRECTORY, QUARANTINE_DIRECTORY):
                (self._root / name).mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
            # Leftovers of writes interrupted by a crash: never renamed, so never a blob.
            for leftover in (self._root / TEMPORARY_DIRECTORY).iterdir():
                leftover.unlink()
        except OSError as error:
            raise StorageUnavailableError(
                f"blob directory {self._root}: {error.strerror or error}"
            ) from None

    @property
    def max_blob_bytes(self) -> int:
        return self._max_blob_bytes

    async def put(self, data: bytes) -> str:
        """Store `data` and return its CID (the one IPFS would give it)."""
        self._require_open()
        if not isinstance(data, bytes):
            raise TypeError("a blob is bytes")
        if len(data) > self._max_blob_bytes:
            raise BlobTooLargeError(
                f"blob of {len(data)} bytes exceeds this store's maximum of {self._max_blob_bytes}"
            )
        return await asyncio.to_thread(self._put, data)

    async def get(self, cid: str, expected_sha256: bytes) -> bytes:
        """The blob's bytes, only if their SHA-256 is `expected_sha256`.

        A file that fails the check is moved to `quarantine/` (never served again) and
        BlobCorruptedError is raised; a later `put` of the right bytes repairs the store.
        """
        self._require_open()
        if not isinstance(expected_sha256, bytes) or len(expected_sha256) != 32:
            raise ValueError("expected_sha256 is exactly 32 bytes")
        return await asyncio.to_thread(self._get, self._path(cid), expected_sha256)

    async def pin(self, cid: str) -> None:
        """Nothing to do: a local store keeps every blob until `delete`, and has no network to
        fetch from. Raises BlobNotFoundError if the blob is absent, so a caller that pins to make
        sure a blob is kept learns that it is not there."""
        self._require_open()
        if not await asyncio.to_thread(self._path(cid).is_file):
            raise BlobNotFoundError(f"{cid}: not in the local blob store")

    async def delete(self, cid: str) -> None:
        """Remove the blob (and any quarantined copy): erasure. Idempotent.

        Unlinking frees the file; it does not overwrite the disk blocks (on SSDs and
        copy-on-write filesystems nothing can guarantee that). Erasure rests on destroying the
        data key; removing the ciphertext is the second line.
        """
        self._require_open()
        path = self._path(cid)
        await asyncio.to_thread(self._delete, path, cid)

    async def has(self, cid: str) -> bool:
        self._require_open()
        return await asyncio.to_thread(self._path(cid).is_file)

    async def close(self) -> None:
        self._closed = True

    def _put(self, data: bytes) -> str:
        cid = compute_cid(data).to_text()
        path = self._path(cid)
        try:
            path.parent.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=self._root / TEMPORARY_DIRECTORY)
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    os.fchmod(handle.fileno(), FILE_MODE)
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                # Replacing is safe: the name is the content's hash, so whatever was there is
                # either the same bytes or a damaged copy this write repairs.
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                raise
            _sync_directory(path.parent)
        except OSError as error:
            raise StorageUnavailableError(
                f"cannot write blob {cid}: {error.strerror or error}"
            ) from None
        return cid

    def _get(self, path: Path, expected_sha256: bytes) -> bytes:
        cid = path.name
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > self._max_blob_bytes:
                    raise BlobTooLargeError(
                        f"{cid}: stored blob of {size} bytes exceeds this store's maximum of "
                        f"{self._max_blob_bytes}"
                    )
                # Read one byte past the maximum, so a file that grows meanwhile is caught too.
                data = handle.read(self._max_blob_bytes + 1)
        except FileNotFoundError:
            raise BlobNotFoundError(f"{cid}: not in the local blob store") from None
        except OSError as error:
            raise StorageUnavailableError(f"cannot read blob {cid}: {error.strerror}") from None
        if len(data) > self._max_blob_bytes:
            raise BlobTooLargeError(f"{cid}: stored blob exceeds this store's maximum")
        if hashlib.sha256(data).digest() != expected_sha256:
            self._quarantine(path)
            raise BlobCorruptedError(
                f"{cid}: stored bytes do not match the anchored SHA-256; the file was moved "
                f"to {QUARANTINE_DIRECTORY}/ and will not be served"
            )
        return data

    def _quarantine(self, path: Path) -> None:
        # One quarantined copy per CID (a newer failure replaces the older), so the
        # quarantine never holds more files than the store ever did.
        target = self._root / QUARANTINE_DIRECTORY / path.name
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return  # already moved by a concurrent read
        except OSError:
            # Cannot move it: remove it. Should that fail too, it is still never served, since
            # every read checks the hash.
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            _sync_directory(path.parent)

    def _delete(self, path: Path, cid: str) -> None:
        try:
            for victim in (path, self._root / QUARANTINE_DIRECTORY / path.name):
                with contextlib.suppress(FileNotFoundError):
                    victim.unlink()
            if path.parent.exists():
                _sync_directory(path.parent)
        except OSError as error:
            raise StorageUnavailableError(
                f"cannot delete blob {cid}: {error.strerror or error}"
            ) from None

    def _path(self, cid: str) -> Path:
        """The file of `cid`; the CID is parsed first, so no text ever reaches the filesystem
        unless it is a canonical CID (no `..`, no `/`, one spelling per blob)."""
        try:
            text = ContentId.from_text(cid).to_text()
        except InvalidCidError as error:
            raise InvalidCidError(f"{cid!r}: {error}") from None
        return self._root / BLOBS_DIRECTORY / text[-3:-1] / text

    def _require_open(self) -> None:
        if self._closed:
            raise StorageUnavailableError("the blob store is closed (the node is stopping)")


def _sync_directory(directory: Path) -> None:
    """fsync a directory, so a rename or unlink in it survives a crash."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
