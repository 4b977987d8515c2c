"""The node side of state sync: build a snapshot every `snapshot_interval_blocks` heights in a
background thread, vouch for it as a validator, and serve offers and chunks to joining peers.

Consensus is never blocked: at the commit of a snapshot height only a LevelDB snapshot (a
sequence number) is taken on the event loop; reading it, cutting chunks and writing files run
in a worker thread. One build at a time; a height reached while one is running is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from emrchain.crypto.keys import Signer
from emrchain.statesync.manifest import Manifest, sign_vouch
from emrchain.statesync.messages import (
    MAX_SET_CHANGES,
    ChunkRequest,
    ChunkResponse,
    CommitRequest,
    CommitResponse,
    Offer,
    OffersRequest,
    SetChange,
    SetChanges,
    SetChangesRequest,
    StateSyncMessage,
)
from emrchain.statesync.snapshots import SnapshotSkippedError, SnapshotStore, open_database_snapshot
from emrchain.store import BlockStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SnapshotSettings:
    """The `[statesync]` settings the serving side uses."""

    snapshot_interval_blocks: int
    snapshot_keep: int
    chunk_size_bytes: int


class SnapshotService:
    def __init__(
        self,
        settings: SnapshotSettings,
        snapshots: SnapshotStore,
        store: BlockStore,
        chain_id: bytes,
        signer: Signer,
        send: Callable[[str, StateSyncMessage], bool],
    ) -> None:
        self._settings = settings
        self.snapshots = snapshots
        self._store = store
        self._chain_id = chain_id
        self._signer = signer
        self._send = send
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self._building: Future[Manifest] | None = None
        self.built = 0
        self.skipped = 0
        self.last_build_s = 0.0

    def latest_snapshot_height(self) -> int | None:
        return self.snapshots.latest_snapshot_height()

    def on_commit(self, height: int) -> None:
        """After block `height` is committed: start its snapshot if it is a snapshot height."""
        interval = self._settings.snapshot_interval_blocks
        if not interval or height % interval:
            return
        if self._building is not None and not self._building.done():
            self.skipped += 1
            logger.warning("snapshot %d skipped: the previous one is still being built", height)
            return
        snapshot = open_database_snapshot(self._store.database.db)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._building = self._executor.submit(
            self.snapshots.build, snapshot, self._chain_id, height, self._settings.chunk_size_bytes
        )
        self._building.add_done_callback(
            lambda done: loop.call_soon_threadsafe(self._built, height, done, started)
        )

    def _built(self, height: int, done: Future[Manifest], started: float) -> None:
        try:
            manifest = done.result()
        except SnapshotSkippedError as error:
            self.skipped += 1
            logger.warning("snapshot %d skipped: %s", height, error)
            return
        except OSError as error:
            self.skipped += 1
            logger.error("snapshot %d failed: %s", height, error)
            return
        self.built += 1
        self.last_build_s = time.monotonic() - started
        if self._signer.public_key in manifest.validators:
            self.snapshots.add_vouch(height, sign_vouch(self._signer, manifest))
        logger.info(
            "snapshot %d: %d entries in %d chunks, digest %s, %.2f s",
            height,
            manifest.entry_count,
            len(manifest.chunk_hashes),
            manifest.digest.hex()[:16],
            self.last_build_s,
        )

    def on_message(self, peer_id: str, message: StateSyncMessage) -> None:
        try:
            self._answer(peer_id, message)
        except ValueError as error:  # a chunk over this node's frame: its config's mistake
            logger.error("state sync: cannot answer %s: %s", type(message).__name__, error)

    def _answer(self, peer_id: str, message: StateSyncMessage) -> None:
        if isinstance(message, OffersRequest):
            for height in self.snapshots.heights():
                manifest = self.snapshots.manifest(height)
                if manifest is not None:
                    self._send(peer_id, Offer(manifest, self.snapshots.vouches(height)))
        elif isinstance(message, ChunkRequest):
            chunk = self.snapshots.chunk(message.height, message.index)
            self._send(peer_id, ChunkResponse(message.height, message.index, chunk))
        elif isinstance(message, CommitRequest):
            self._send(peer_id, CommitResponse(message.height, self._store.commit(message.height)))
        elif isinstance(message, SetChangesRequest):
            self._send(peer_id, SetChanges(self._set_changes(message.after_height)))

    def _set_changes(self, after_height: int) -> tuple[SetChange, ...]:
        """The validator-set changes above `after_height`, each with the header and commit of
        the block before it (whose next_validators_hash names the new set), while kept."""
        proven: list[SetChange] = []
        for height, validators in self._store.validator_set_changes(after_height, MAX_SET_CHANGES):
            block = self._store.block(height - 1)
            commit = self._store.commit(height - 1)
            if block is None or commit is None:
                break  # below our base height, or not committed yet (the set of head + 2)
            proven.append(SetChange(block.header, commit, validators))
        return tuple(proven)
        # Offers and chunks are for a joining node; a running node has no use for them.

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
