"""Pruning: old blocks, their commits, results, undo records and tx index entries deleted in
the background, so a node's disk use stays flat (`docs/spec/pruning.md`).

The retain height is `min(head - retain_blocks + 1, what every reader still needs)`: each
reader of old blocks is a *protection*, a callable returning the lowest height it still needs
(None: nothing). Heights below the retain height are deleted in batches of at most
`prune_batch_heights`, each one LevelDB batch that also moves the base (`Mbase`), so a crash
leaves the store at some batch boundary, consistent. The deleted key ranges are compacted
afterwards so the space comes back. Validator sets (`V`) and the app hash just below the base
are kept: they are tiny, evidence verification reads the sets of old heights, and the startup
check links the base block to the app hash before it.

`decide` runs on the event loop (the protections read live node state); `prune_batch` and
`compact` touch only LevelDB and run on the pruner's own worker thread, so consensus never
waits for a deletion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from emrchain.store import layout
from emrchain.store.block_store import BlockStore
from emrchain.store.errors import StoreError

logger = logging.getLogger(__name__)

LowestNeeded = Callable[[], int | None]
"""A reader of old blocks: the lowest height it still needs, or None when it needs none."""

COMPACTED_PREFIXES = (
    layout.BLOCK,
    layout.COMMIT,
    layout.TX_RESULTS,
    layout.UNDO,
    layout.APP_HASH,
)
"""Keyspaces keyed by height, compacted over the pruned range. The tx index and block id
index are keyed by hashes spread over the whole keyspace: LevelDB's own compactions drop
their deleted entries."""


@dataclass(frozen=True, slots=True)
class PruneSettings:
    """`[storage] retain_blocks`, `prune_*` (their docs in `emrchain/config/node.py`)."""

    retain_blocks: int
    prune_batch_heights: int
    prune_interval_ms: int
    prune_peer_lag_max_blocks: int


@dataclass(frozen=True, slots=True)
class RetainDecision:
    """Blocks below `height` may go; `limited_by` names what set it."""

    height: int
    limited_by: str


def retain_height(head: int, retain_blocks: int, needs: Mapping[str, int | None]) -> RetainDecision:
    """The rule: keep the last `retain_blocks` blocks (0: all), and every height a protection
    in `needs` (name -> lowest needed height, None for none) still needs. Never above `head`:
    the last block and its commit are what the next proposal and block sync start from."""
    if retain_blocks == 0 or head < 1:
        return RetainDecision(1, "retain_blocks = 0: every block is kept")
    height = max(1, head - retain_blocks + 1)
    limited_by = "retain_blocks"
    for name, needed in sorted(needs.items()):
        if needed is not None and needed < height:
            height = max(1, needed)
            limited_by = name
    return RetainDecision(height, limited_by)


def lagging_peer_floor(
    head: int, lowest_peer_height: int | None, lag_max_blocks: int
) -> int | None:
    """What connected peers still need from us: a peer at height c syncs from c + 1. A peer
    more than `lag_max_blocks` behind is not waited for (one slow or lying peer must not stop
    pruning for ever); it can fetch from a node that keeps more, or state-sync."""
    if lowest_peer_height is None:
        return None
    return max(lowest_peer_height + 1, head - lag_max_blocks + 1)


class Pruner:
    """Deletes what lies below the retain height, in the background. Create it, add the
    protections, then `await run()` (until cancelled) and `close()` on shutdown."""

    def __init__(
        self,
        store: BlockStore,
        settings: PruneSettings,
        protections: Mapping[str, LowestNeeded] | None = None,
    ) -> None:
        if settings.prune_batch_heights < 1 or settings.prune_interval_ms < 1:
            raise ValueError("prune_batch_heights and prune_interval_ms must be at least 1")
        self._store = store
        self.settings = settings
        self.protections: dict[str, LowestNeeded] = dict(protections or {})
        self._executor: ThreadPoolExecutor | None = None
        self.heights_pruned = 0
        self.batches_written = 0
        self.last_decision: RetainDecision | None = None

    def protect(self, name: str, lowest_needed: LowestNeeded) -> None:
        """Add a reader of old blocks (`lowest_needed` is called on the event loop)."""
        self.protections[name] = lowest_needed

    def protect_snapshots(self, latest_snapshot_height: Callable[[], int | None]) -> None:
        """A node state-syncing from our newest snapshot at height s needs the blocks after
        it (the state-sync service's `latest_snapshot_height`)."""

        def after_snapshot() -> int | None:
            height = latest_snapshot_height()
            return None if height is None else height + 1

        self.protect("state_sync_snapshot", after_snapshot)

    def decide(self) -> RetainDecision:
        """The retain height now. A protection that fails keeps everything this time."""
        head = self._store.last_height()
        needs: dict[str, int | None] = {}
        for name, lowest_needed in self.protections.items():
            try:
                needs[name] = lowest_needed()
            except Exception as error:  # a reader that cannot say: keep what is there
                logger.warning(
                    "pruning: protection %s failed (%s); nothing pruned now", name, error
                )
                needs[name] = 1
        decision = retain_height(head, self.settings.retain_blocks, needs)
        self.last_decision = decision
        return decision

    # -- worker thread ------------------------------------------------------------------------

    def prune_batch(self, target: int) -> int:
        """Delete at most `prune_batch_heights` heights from the base up to (not including)
        `target` in one batch that also moves the base; returns the new base."""
        store = self._store
        database = store.database
        base = store.base_height()
        stop = min(target, base + self.settings.prune_batch_heights, store.last_height())
        if stop <= base:
            return base
        batch = database.db.write_batch(sync=True)
        tx_ids: list[bytes] = []
        for height in range(base, stop):
            block = store.block(height)
            if block is not None:
                batch.delete(layout.block_height_key(block.block_id))
                tx_ids.extend(block.tx_ids)
            batch.delete(layout.block_key(height))
            batch.delete(layout.commit_key(height))
            batch.delete(layout.tx_results_key(height))
            batch.delete(layout.undo_key(height))
            batch.delete(layout.app_hash_key(height - 1))
        with store.index_lock:
            # Under the lock: a commit cannot re-point one of these entries in between.
            for tx_id in tx_ids:
                raw = database.get(layout.tx_location_key(tx_id))
                if raw is not None and layout.TX_LOCATION_VALUE.unpack(raw)[0] < stop:
                    batch.delete(layout.tx_location_key(tx_id))
            store.set_base_height(stop, batch)
            store.write_batch(batch)
        self.heights_pruned += stop - base
        self.batches_written += 1
        return stop

    def compact(self, below: int) -> None:
        """Compact the height-keyed ranges below `below`, so deleted blocks free their space."""
        for prefix in COMPACTED_PREFIXES:
            self._store.database.db.compact_range(start=prefix, stop=prefix + layout.u64(below))

    def prune_to(self, target: int) -> int:
        """Every batch up to `target`, then the compaction (synchronously; tests, tools)."""
        start = base = self._store.base_height()
        while base < target:
            moved = self.prune_batch(target)
            if moved == base:
                break
            base = moved
        if base > start:
            self.compact(base)
        return base

    # -- event loop ---------------------------------------------------------------------------

    async def prune_once(self) -> int:
        """One pass: decide on the loop, delete and compact on the worker thread."""
        decision = self.decide()
        store = self._store
        if store.base_height() >= decision.height:
            return store.base_height()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="pruner")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.prune_to, decision.height)

    async def run(self) -> None:
        """Prune every `prune_interval_ms` until cancelled."""
        interval_s = self.settings.prune_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                before = self._store.base_height()
                after = await self.prune_once()
            except StoreError as error:
                logger.error("pruning failed (retried at the next interval): %s", error)
                continue
            if after > before:
                logger.info(
                    "pruned heights %d..%d (kept from %d: %s)",
                    before,
                    after - 1,
                    after,
                    self.last_decision.limited_by if self.last_decision else "",
                )

    def close(self) -> None:
        """Wait for a batch in progress (the database must outlive it)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
