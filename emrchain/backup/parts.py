"""What goes into a backup, and how each part's plaintext is produced and consumed.

A "kv" part is a LevelDB keyspace read from a snapshot, as records
`key length u32 BE | key | value length u32 BE | value` in key order; restore writes them into
a new database in batches. A "blobs" part is the local blob store as the same records, the key
being the blob's path under the store. A "file" part is one home file, byte for byte.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import plyvel

from emrchain.backup.archive import BackupError, ChunkReader, PartSource
from emrchain.config.node import CONFIG_DIR, NodeConfig

CHAIN_PART = "chain"
VAULT_PART = "vault"
BLOBS_PART = "blobs"
FILES_PREFIX = "home/"
_LENGTH = struct.Struct(">I")
BATCH_BYTES = 4 << 20
"""Restore writes a kv part to LevelDB in batches of about this many bytes."""
SKIPPED_DATA_ENTRIES = frozenset({"admin.sock"})
"""Files of the data directory that are not state (the admin socket)."""


def kv_chunks(items: Iterator[tuple[bytes, bytes]]) -> Iterator[bytes]:
    for key, value in items:
        yield _LENGTH.pack(len(key)) + key + _LENGTH.pack(len(value)) + value


def snapshot_source(name: str, path: str, snapshot: Any) -> PartSource:
    """A kv part over a plyvel snapshot (taken by the caller at the moment that defines it)."""

    def open_stream() -> IO[bytes]:
        return io.BufferedReader(ChunkReader(kv_chunks(iter(snapshot.iterator()))))

    return PartSource(name, "kv", path, 0o700, open_stream)


def blob_source(directory: Path, path: str) -> PartSource:
    """The local blob store's files (not its tmp/), as kv records path -> content."""

    def items() -> Iterator[tuple[bytes, bytes]]:
        for file in sorted(directory.rglob("*")):
            relative = file.relative_to(directory)
            if relative.parts[0] == "tmp" or not file.is_file() or file.is_symlink():
                continue
            try:
                content = file.read_bytes()
            except FileNotFoundError:
                continue  # erased since the listing: the snapshot's vault may still name it
            yield str(relative).encode(), content

    def open_stream() -> IO[bytes]:
        return io.BufferedReader(ChunkReader(kv_chunks(items())))

    return PartSource(BLOBS_PART, "blobs", path, 0o700, open_stream)


def home_files(config: NodeConfig) -> list[tuple[str, Path]]:
    """(home-relative path, absolute path) of every file a home needs besides its stores:
    everything under config/ (node.toml, genesis, key files in their stored form, the file
    KEK versions, identity files) and the configured files elsewhere in the home, and the
    small files at the top of the data directory (a KEK rotation's cursor)."""
    home = config.home
    found: dict[str, Path] = {}
    configured = [
        config.node.genesis_file,
        config.keys.validator_key_file,
        config.keys.node_key_file,
        config.keys.organization_key_file,
        config.records.erasure_receipt_key_file,
        config.rpc.tls_certificate_file,
        config.rpc.tls_key_file,
        config.rpc.tls_client_ca_file,
    ]
    roots = [home / CONFIG_DIR, config.resolve(config.records.kek_dir)]
    for root in roots:
        if root.is_dir():
            for file in sorted(root.rglob("*")):
                if file.is_file() and not file.is_symlink():
                    found[str(file.relative_to(home))] = file
    for relative in configured:
        if relative and config.resolve(relative).is_file():
            found[relative] = config.resolve(relative)
    data = config.data_path
    if data.is_dir():
        for file in sorted(data.iterdir()):
            if file.is_file() and not file.is_symlink() and file.name not in SKIPPED_DATA_ENTRIES:
                found[str(file.relative_to(home))] = file
    return sorted(found.items())


def file_source(relative: str, path: Path) -> PartSource:
    """A home file, read now into memory: the files are captured at the moment the store
    snapshots are taken, not when the archive reaches them (`create.capture`)."""
    content = path.read_bytes()
    mode = path.stat().st_mode & 0o777

    def open_stream() -> IO[bytes]:
        return io.BytesIO(content)

    return PartSource(FILES_PREFIX + relative, "file", relative, mode, open_stream)


class KvWriter:
    """Consumes a kv part's plaintext chunks and writes the records into a LevelDB."""

    def __init__(self, put_batch: Callable[[list[tuple[bytes, bytes]]], None]) -> None:
        self._put_batch = put_batch
        self._buffer = bytearray()
        self._batch: list[tuple[bytes, bytes]] = []
        self._batch_bytes = 0
        self.records = 0

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= _LENGTH.size:
            (key_length,) = _LENGTH.unpack_from(buffer, offset)
            value_at = offset + _LENGTH.size + key_length
            if len(buffer) < value_at + _LENGTH.size:
                break
            (value_length,) = _LENGTH.unpack_from(buffer, value_at)
            end = value_at + _LENGTH.size + value_length
            if len(buffer) < end:
                break
            key = bytes(buffer[offset + _LENGTH.size : value_at])
            value = bytes(buffer[value_at + _LENGTH.size : end])
            self._batch.append((key, value))
            self._batch_bytes += len(key) + len(value)
            self.records += 1
            offset = end
            if self._batch_bytes >= BATCH_BYTES:
                self._flush()
        del self._buffer[:offset]

    def _flush(self) -> None:
        if self._batch:
            self._put_batch(self._batch)
        self._batch = []
        self._batch_bytes = 0

    def finish(self) -> None:
        if self._buffer:
            raise BackupError(f"a kv part ends inside a record ({len(self._buffer)} bytes left)")
        self._flush()


def leveldb_batch_writer(db: plyvel.DB) -> Callable[[list[tuple[bytes, bytes]]], None]:
    def put_batch(items: list[tuple[bytes, bytes]]) -> None:
        with db.write_batch(sync=False) as batch:
            for key, value in items:
                batch.put(key, value)

    return put_batch


def blob_batch_writer(directory: Path) -> Callable[[list[tuple[bytes, bytes]]], None]:
    def put_batch(items: list[tuple[bytes, bytes]]) -> None:
        for key, value in items:
            relative = Path(key.decode())
            if relative.is_absolute() or ".." in relative.parts:
                raise BackupError(f"the blobs part names a path outside the store: {relative}")
            target = directory / relative
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            target.write_bytes(value)
            os.chmod(target, 0o600)

    return put_batch
