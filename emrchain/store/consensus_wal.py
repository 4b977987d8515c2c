"""`ConsensusWal`: the consensus runtime's write-ahead log on disk, one file per height.

Location: `<home>/data/consensus-wal/<height as 20 digits>.wal`, next to `chain.db`
(`unsafe-reset-all` deletes both). The bytes of a file are one WAL segment
(`emrchain/consensus/wal.py`): a header naming the height, then one record per message.

Durability follows the runtime's `AppendToWal.sync`:
- our own signed messages are written and `fdatasync`ed (and the directory entry of a new
  segment file `fsync`ed) before the runtime's next action, which persists the signing state;
  only then is the message sent (docs/spec/consensus.md §4.2);
- received messages are written with one `write` each and not synced: they survive the
  process (kill -9) but not necessarily the machine, and peers re-send them.
A crash can leave a torn last record; `load` cuts it off (on disk too) before appending again.
Files stay open (at most the current and the next height) and are appended with O_APPEND.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from emrchain.consensus.wal import HEADER_BYTES, read_segment, segment_header
from emrchain.store.database import DATA_DIRECTORY
from emrchain.store.errors import StoreError
from emrchain.types.codec import DecodeError

logger = logging.getLogger(__name__)

WAL_DIRECTORY = "consensus-wal"
SEGMENT_SUFFIX = ".wal"
HEIGHT_DIGITS = 20
MAX_OPEN_SEGMENTS = 4
"""Segments kept open for appending (the runtime writes to the current and the next height)."""


def wal_path(home: Path | str) -> Path:
    """Where the node home keeps its consensus WAL."""
    return Path(home) / DATA_DIRECTORY / WAL_DIRECTORY


class ConsensusWal:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._open: dict[int, int] = {}  # height -> file descriptor
        self._unsynced_directory = False

    @classmethod
    def open(cls, home: Path | str) -> ConsensusWal:
        directory = wal_path(home)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory)

    def _segment_path(self, height: int) -> Path:
        return self._directory / f"{height:0{HEIGHT_DIGITS}d}{SEGMENT_SUFFIX}"

    def _heights(self) -> list[int]:
        heights = []
        for path in self._directory.iterdir():
            stem = path.name.removesuffix(SEGMENT_SUFFIX)
            if path.name.endswith(SEGMENT_SUFFIX) and len(stem) == HEIGHT_DIGITS and stem.isdigit():
                heights.append(int(stem))
        return sorted(heights)

    def load(self, max_entry_bytes: int, max_entries: int) -> dict[int, bytes]:
        """Every segment's intact bytes by height. A torn tail is cut off on disk; a file too
        short or too damaged to hold a header holds nothing and is removed."""
        segments: dict[int, bytes] = {}
        for height in self._heights():
            path = self._segment_path(height)
            data = path.read_bytes()
            try:
                segment = read_segment(data, max_entry_bytes, max_entries)
            except DecodeError as error:
                logger.warning("consensus WAL %s removed: %s", path.name, error)
                path.unlink()
                continue
            if segment.torn:
                logger.warning(
                    "consensus WAL %s: torn tail of %d bytes cut off",
                    path.name,
                    len(data) - segment.intact_bytes,
                )
                os.truncate(path, segment.intact_bytes)
            segments[height] = data[: segment.intact_bytes]
        return segments

    def append(self, height: int, record: bytes, *, sync: bool) -> None:
        """Append `record` to the segment of `height` (created with its header if new);
        with `sync`, durable before returning."""
        descriptor = self._open.get(height)
        if descriptor is None:
            descriptor = self._open_segment(height)
        try:
            _write_all(descriptor, record)
            if sync:
                os.fdatasync(descriptor)
                if self._unsynced_directory:
                    self._sync_directory()
        except OSError as error:
            raise StoreError(f"consensus WAL {self._segment_path(height)}: {error}") from None

    def _open_segment(self, height: int) -> int:
        if len(self._open) >= MAX_OPEN_SEGMENTS:
            self._close(min(self._open))
        path = self._segment_path(height)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if os.fstat(descriptor).st_size < HEADER_BYTES:
                os.ftruncate(descriptor, 0)
                _write_all(descriptor, segment_header(height))
                self._unsynced_directory = True
        except OSError as error:
            raise StoreError(f"consensus WAL {path}: {error}") from None
        self._open[height] = descriptor
        return descriptor

    def _sync_directory(self) -> None:
        """Make the names of new segment files durable (their records are synced already)."""
        descriptor = os.open(self._directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        self._unsynced_directory = False

    def discard_below(self, height: int) -> None:
        """Delete the segments of heights below `height`."""
        for known in self._heights():
            if known >= height:
                break
            self._close(known)
            self._segment_path(known).unlink(missing_ok=True)

    def _close(self, height: int) -> None:
        descriptor = self._open.pop(height, None)
        if descriptor is not None:
            os.close(descriptor)

    def close(self) -> None:
        for height in list(self._open):
            self._close(height)


def _write_all(descriptor: int, data: bytes) -> None:
    """One `write` normally; the loop only covers a short write (a signal, a full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        if written <= 0:
            raise OSError(f"write made no progress ({len(view)} bytes left)")
        view = view[written:]


def remove_wal(home: Path | str) -> None:
    """Delete the node's consensus WAL (for `unsafe-reset-all`)."""
    shutil.rmtree(wal_path(home), ignore_errors=True)
