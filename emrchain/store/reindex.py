"""`emrchain reindex`: rebuild a stopped node's node-local indexes from its stored blocks.

A node-local index is derived from blocks and their results only (never consensus state): the
tx index (`T`) today. Each is a `NodeLocalIndex` in `NODE_LOCAL_INDEXES`; another index joins
the rebuild with one line there. The rebuild deletes every key under the index's prefix, then
walks the stored blocks from the base to the head in order, writing each height's entries
(batches of `HEIGHTS_PER_BATCH` heights). Blocks below the base were pruned: their entries are
not rebuilt, as pruning deleted them too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from emrchain.store import layout
from emrchain.store.block_store import BlockStore
from emrchain.store.errors import StoreCorruptionError
from emrchain.types.block import Block
from emrchain.types.execution import TxResult

logger = logging.getLogger(__name__)

HEIGHTS_PER_BATCH = 1_000
"""Heights whose entries go into one write batch (bounds the memory of a rebuild)."""

IndexLookup = Callable[[bytes], bytes | None]
"""The value an index key holds now: the entries written so far in this rebuild included."""


class NodeLocalIndex(Protocol):
    """An index rebuilt from blocks: its keyspace, and the entries of one block."""

    @property
    def name(self) -> str: ...

    @property
    def prefix(self) -> bytes: ...

    def entries(
        self, height: int, block: Block, results: Sequence[TxResult], lookup: IndexLookup
    ) -> dict[bytes, bytes]:
        """The (full key -> value) entries block `height` puts, after those of every lower
        height (`lookup` reads what an earlier height left)."""
        ...


@dataclass(frozen=True, slots=True)
class TxIndex:
    """`T | tx id -> height | index` (`docs/spec/state.md` §5): the applied inclusion of a tx,
    else its first one, as `BlockStore.commit_block` writes it."""

    name: str = "tx index"
    prefix: bytes = layout.TX_LOCATION

    def entries(
        self, height: int, block: Block, results: Sequence[TxResult], lookup: IndexLookup
    ) -> dict[bytes, bytes]:
        written: dict[bytes, bytes] = {}
        for index, (tx_id, result) in enumerate(zip(block.tx_ids, results, strict=True)):
            key = layout.tx_location_key(tx_id)
            if result.code == 0 or (key not in written and lookup(key) is None):
                written[key] = layout.TX_LOCATION_VALUE.pack(height, index)
        return written


NODE_LOCAL_INDEXES: tuple[NodeLocalIndex, ...] = (TxIndex(),)
"""Every index `emrchain reindex` rebuilds."""


@dataclass(frozen=True, slots=True)
class ReindexReport:
    indexes: tuple[str, ...]
    from_height: int
    to_height: int
    entries_deleted: int
    entries_written: int


def reindex(
    store: BlockStore, indexes: Sequence[NodeLocalIndex] = NODE_LOCAL_INDEXES
) -> ReindexReport:
    """Delete and rebuild `indexes` from the stored blocks between base and head."""
    deleted = sum(_delete_prefix(store, index.prefix) for index in indexes)
    base, head = store.base_height(), store.last_height()
    written = 0
    for start in range(base, head + 1, HEIGHTS_PER_BATCH):
        pending: dict[bytes, bytes] = {}

        def lookup(key: bytes, pending: dict[bytes, bytes] = pending) -> bytes | None:
            value = pending.get(key)
            return value if value is not None else store.database.get(key)

        for height in range(start, min(start + HEIGHTS_PER_BATCH, head + 1)):
            block, results = store.block(height), store.tx_results(height)
            if block is None or results is None:
                raise StoreCorruptionError(f"block or results of height {height} missing")
            for index in indexes:
                pending.update(index.entries(height, block, results, lookup))
        batch = store.database.db.write_batch(sync=True)
        for key, value in pending.items():
            batch.put(key, value)
        store.write_batch(batch)
        written += len(pending)
    return ReindexReport(tuple(index.name for index in indexes), base, head, deleted, written)


def _delete_prefix(store: BlockStore, prefix: bytes) -> int:
    deleted = 0
    keys = store.database.db.iterator(prefix=prefix, include_value=False)
    with keys:
        batch = store.database.db.write_batch()
        for key in keys:
            batch.delete(key)
            deleted += 1
            if deleted % 10_000 == 0:
                batch.write()
                batch = store.database.db.write_batch()
    batch.write()
    return deleted
