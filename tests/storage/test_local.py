"""LocalBlobStore: content addressing, hash-checked reads, quarantine, erasure, bounds."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path

import pytest

from emrchain.storage.cid import CHUNK_SIZE, InvalidCidError, compute_cid
from emrchain.storage.interfaces import (
    BlobCorruptedError,
    BlobNotFoundError,
    BlobStore,
    StorageUnavailableError,
)
from emrchain.storage.local import BlobTooLargeError, LocalBlobStore

MAX_BYTES = 2 * CHUNK_SIZE


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def blob_files(root: Path, directory: str = "blobs") -> list[Path]:
    return sorted(path for path in (root / directory).rglob("*") if path.is_file())


def test_implements_the_protocol(tmp_path: Path) -> None:
    assert isinstance(LocalBlobStore(tmp_path, MAX_BYTES), BlobStore)


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, MAX_BYTES])
def test_put_returns_the_ipfs_cid_and_get_returns_the_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)

    async def scenario() -> None:
        store = LocalBlobStore(tmp_path, MAX_BYTES)
        cid = await store.put(data)
        assert cid == compute_cid(data).to_text()
        assert await store.has(cid)
        assert await store.get(cid, sha256(data)) == data
        await store.pin(cid)
        await store.close()

    asyncio.run(scenario())
    (path,) = blob_files(tmp_path)
    cid = compute_cid(data).to_text()
    assert path.name == cid and path.parent.name == cid[-3:-1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list((tmp_path / "tmp").iterdir()) == []


def test_blobs_survive_reopening_and_putting_twice_keeps_one_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = LocalBlobStore(tmp_path, MAX_BYTES)
        cid = await first.put(b"record")
        assert await first.put(b"record") == cid
        await first.close()
        second = LocalBlobStore(tmp_path, MAX_BYTES)
        assert await second.get(cid, sha256(b"record")) == b"record"

    asyncio.run(scenario())
    assert len(blob_files(tmp_path)) == 1


def test_corrupted_blob_is_not_served_and_is_quarantined(tmp_path: Path) -> None:
    data = b"ciphertext" * 100

    async def scenario() -> None:
        store = LocalBlobStore(tmp_path, MAX_BYTES)
        cid = await store.put(data)
        (path,) = blob_files(tmp_path)
        damaged = bytearray(path.read_bytes())
        damaged[5] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(BlobCorruptedError, match="do not match the anchored SHA-256"):
            await store.get(cid, sha256(data))
        # Gone from the served tree, kept aside for inspection.
        assert not await store.has(cid)
        assert blob_files(tmp_path) == []
        assert [p.read_bytes() for p in blob_files(tmp_path, "quarantine")] == [bytes(damaged)]
        with pytest.raises(BlobNotFoundError):
            await store.get(cid, sha256(data))
        # Writing the right bytes again repairs the store.
        assert await store.put(data) == cid
        assert await store.get(cid, sha256(data)) == data

    asyncio.run(scenario())


def test_a_wrong_expected_hash_is_never_served(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalBlobStore(tmp_path, MAX_BYTES)
        cid = await store.put(b"record")
        with pytest.raises(BlobCorruptedError):
            await store.get(cid, sha256(b"another record"))

    asyncio.run(scenario())


def test_delete_erases_and_is_idempotent(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalBlobStore(tmp_path, MAX_BYTES)
        cid = await store.put(b"to be erased")
        await store.delete(cid)
        assert not await store.has(cid)
        with pytest.raises(BlobNotFoundError, match="not in the local blob store"):
            await store.get(cid, sha256(b"to be erased"))
        with pytest.raises(BlobNotFoundError):
            await store.pin(cid)
        await store.delete(cid)  # idempotent

    asyncio.run(scenario())
    assert blob_files(tmp_path) == []


def test_delete_also_removes_a_quarantined_copy(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalBlobStore(tmp_path, MAX_BYTES)
        cid = await store.put(b"record")
        (path,) = blob_files(tmp_path)
        path.write_bytes(b"damaged")
        with pytest.raises(BlobCorruptedError):
            await store.get(cid, sha256(b"record"))
        assert blob_files(tmp_path, "quarantine") != []
        await store.delete(cid)

    asyncio.run(scenario())
    assert blob_files(tmp_path, "quarantine") == []


def test_size_limit_on_put_and_get(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalBlobStore(tmp_path, 100)
        with pytest.raises(BlobTooLargeError, match="101 bytes exceeds this store's maximum"):
            await store.put(bytes(101))
        assert blob_files(tmp_path) == []
        cid = await store.put(bytes(100))
        # A file that grew past the bound on disk is refused without being read whole.
        (path,) = blob_files(tmp_path)
        path.write_bytes(bytes(1000))
        with pytest.raises(BlobTooLargeError, match="1000 bytes"):
            await store.get(cid, sha256(bytes(100)))

    asyncio.run(scenario())


@pytest.mark.parametrize("max_blob_bytes", [0, (1 << 40) + 1])
def test_bound_itself_is_bounded(tmp_path: Path, max_blob_bytes: int) -> None:
    with pytest.raises(ValueError, match="max_blob_bytes"):
        LocalBlobStore(tmp_path, max_blob_bytes)


@pytest.mark.parametrize(
    "cid",
    [
        "../../etc/passwd",
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk/",
        "BAFKREIHDWDCEFGH4DQKJV67UZCMW7OJEE6XEDZDETOJUZJEVTENXQUVYKU",
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
        "",
    ],
)
def test_only_canonical_cids_reach_the_filesystem(tmp_path: Path, cid: str) -> None:
    async def scenario() -> None:
        store = LocalBlobStore(tmp_path, MAX_BYTES)
        with pytest.raises(InvalidCidError):
            await store.has(cid)
        with pytest.raises(InvalidCidError):
            await store.get(cid, bytes(32))
        with pytest.raises(InvalidCidError):
            await store.delete(cid)

    asyncio.run(scenario())


def test_arguments_are_checked(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalBlobStore(tmp_path, MAX_BYTES)
        cid = await store.put(b"x")
        with pytest.raises(ValueError, match="32 bytes"):
            await store.get(cid, b"short")
        with pytest.raises(TypeError):
            await store.put("text")  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_interrupted_writes_are_cleaned_up_on_open(tmp_path: Path) -> None:
    LocalBlobStore(tmp_path, MAX_BYTES)
    leftover = tmp_path / "tmp" / "tmpabc123"
    leftover.write_bytes(b"half a blob")
    LocalBlobStore(tmp_path, MAX_BYTES)
    assert not leftover.exists()


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalBlobStore(tmp_path, MAX_BYTES)
        await store.close()
        with pytest.raises(StorageUnavailableError, match="closed"):
            await store.put(b"x")

    asyncio.run(scenario())


def test_unusable_directory_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageUnavailableError, match="blob directory"):
        LocalBlobStore(blocker / "store", MAX_BYTES)
