"""Snapshots on disk and how one is built from a consistent LevelDB snapshot.

`<home>/data/snapshots/<height, 20 digits>/` holds `manifest`, `chunk-<index>` and `vouches`
(this node's own vouch, if it is a validator of that height). A snapshot is built in a
`<height>.building` directory and renamed once complete, so only complete snapshots are ever
listed or served; the newest `snapshot_keep` are kept (docs/spec/statesync.md §1).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import plyvel

from emrchain.statesync.chunks import chunk_hash, cut_chunks
from emrchain.statesync.manifest import Manifest, Vouch, encode_vouches, read_vouches
from emrchain.store import layout
from emrchain.types.block import Block
from emrchain.types.codec import DecodeError, Reader
from emrchain.types.limits import Limits
from emrchain.types.validator import ValidatorSet

logger = logging.getLogger(__name__)

SNAPSHOTS_DIRECTORY = "snapshots"
BUILDING_SUFFIX = ".building"
MANIFEST_FILE = "manifest"
VOUCHES_FILE = "vouches"


class SnapshotSkippedError(RuntimeError):
    """The database snapshot is not at the height asked for (a later block was already
    written): no snapshot of that height is made."""


def chunk_file(index: int) -> str:
    return f"chunk-{index:08d}"


class SnapshotStore:
    """The complete snapshots under one directory."""

    def __init__(self, root: Path, keep: int, limits: Limits) -> None:
        self.root = root
        self.keep = keep
        self.limits = limits
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(f"*{BUILDING_SUFFIX}"):
            shutil.rmtree(leftover, ignore_errors=True)  # a build a stop or crash cut short

    def heights(self) -> list[int]:
        """Heights of the complete snapshots, oldest first."""
        return sorted(int(path.name) for path in self.root.iterdir() if path.name.isdigit())

    def latest_snapshot_height(self) -> int | None:
        """The newest complete snapshot's height (blocks above it must not be pruned)."""
        heights = self.heights()
        return heights[-1] if heights else None

    def directory(self, height: int) -> Path:
        return self.root / f"{height:020d}"

    def manifest(self, height: int) -> Manifest | None:
        raw = self._read(height, MANIFEST_FILE)
        return None if raw is None else Manifest.decode(raw, self.limits)

    def vouches(self, height: int) -> tuple[Vouch, ...]:
        raw = self._read(height, VOUCHES_FILE)
        if raw is None:
            return ()
        reader = Reader(raw, "vouches")
        vouches = read_vouches(reader, self.limits)
        reader.finish()
        return vouches

    def chunk(self, height: int, index: int) -> bytes | None:
        return self._read(height, chunk_file(index))

    def _read(self, height: int, name: str) -> bytes | None:
        try:
            return (self.directory(height) / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def add_vouch(self, height: int, vouch: Vouch) -> None:
        directory = self.directory(height)
        if not directory.is_dir():
            return  # pruned meanwhile
        temporary = directory / f"{VOUCHES_FILE}.tmp"
        temporary.write_bytes(encode_vouches((*self.vouches(height), vouch)))
        os.replace(temporary, directory / VOUCHES_FILE)

    def prune(self) -> None:
        for height in self.heights()[: -self.keep]:
            shutil.rmtree(self.directory(height), ignore_errors=True)

    def build(self, snapshot: Any, chain_id: bytes, height: int, chunk_size_bytes: int) -> Manifest:
        """Write the snapshot of `height` from the LevelDB `snapshot` (closed afterwards), then
        make it complete; SnapshotSkippedError if `snapshot` is not at `height`."""
        building = self.root / f"{height:020d}{BUILDING_SUFFIX}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        try:
            manifest = _write_snapshot(
                snapshot, chain_id, height, chunk_size_bytes, building, self.limits
            )
            (building / MANIFEST_FILE).write_bytes(manifest.encode())
            final = self.directory(height)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(building, final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        finally:
            snapshot.close()
        self.prune()
        return manifest


def _write_snapshot(
    snapshot: Any,
    chain_id: bytes,
    height: int,
    chunk_size_bytes: int,
    directory: Path,
    limits: Limits,
) -> Manifest:
    head = snapshot.get(layout.META_HEAD)
    if head is None or len(head) != layout.HEAD.size:
        raise SnapshotSkippedError("the store has no head")
    head_height, block_id, app_hash = layout.HEAD.unpack(head)
    if head_height != height:
        raise SnapshotSkippedError(f"the database snapshot is at height {head_height}")
    raw_block = snapshot.get(layout.block_key(height))
    if raw_block is None:
        raise SnapshotSkippedError(f"block {height} is not stored")
    header = Block.decode(raw_block, limits).header
    if header.block_id != block_id:
        raise SnapshotSkippedError("the head's block id is not the stored block's")
    validators, next_validators, after_next = (
        _validator_set(snapshot, height + offset, limits) for offset in range(3)
    )
    skip = len(layout.STATE)
    hashes: list[bytes] = []
    total = 0
    with snapshot.iterator(prefix=layout.STATE) as iterator:
        entries = ((key[skip:], value) for key, value in iterator)
        for index, (chunk, count) in enumerate(cut_chunks(entries, chunk_size_bytes)):
            (directory / chunk_file(index)).write_bytes(chunk)
            hashes.append(chunk_hash(chunk))
            total += count
    return Manifest(
        chain_id,
        height,
        header,
        app_hash,
        validators,
        next_validators,
        after_next,
        total,
        tuple(hashes),
    )


def _validator_set(snapshot: Any, height: int, limits: Limits) -> ValidatorSet:
    """The validator set in force at `height`: the last V entry at or below it."""
    iterator = snapshot.iterator(
        start=layout.VALIDATOR_SET, stop=layout.validator_set_key(height + 1), reverse=True
    )
    with iterator:
        entry = next(iterator, None)
    if entry is None:
        raise SnapshotSkippedError(f"no validator set for height {height}")
    try:
        return ValidatorSet.decode(entry[1], limits)
    except DecodeError as error:
        raise SnapshotSkippedError(f"stored validator set undecodable: {error}") from None


def open_database_snapshot(db: plyvel.DB) -> Any:
    """A consistent read view of the database as of now (LevelDB snapshot)."""
    return db.snapshot()
