"""`emrchain rollback`: take a stopped node's state and head back one height.

Why: a node whose last block's execution went wrong (a bug since fixed, a disk fault) can undo
that one height and execute it again, instead of a full resync. The state is stored in place,
so the values the last block h overwrote come from its undo record (`store/undo.py`); without
one (undo_heights = 0, or a store committed before undo records) rollback is refused.

One batch: the state keys of h back to their previous values, block h with its commit, results,
app hash, undo record, block id index and tx index entries deleted, the validator set h
decided for h + 2 deleted, and the head moved to h - 1 (its block id is block h's
previous_block_id, its app hash is `A | h - 1`). The block is always removed (what CometBFT
calls `--hard`): emrchain never replays a stored block at start; the restarted node fetches h
again from its peers by block sync (or decides it with them), executes it and must reach the
network's app hash.

Never rolled back: the consensus signing state (`G`) and the consensus WAL. The guard
remembers what this validator signed at h and after, so the restarted validator cannot sign a
conflicting vote for a height it already voted on.
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.store import layout
from emrchain.store.block_store import ZERO_ID, BlockStore
from emrchain.store.errors import StoreCorruptionError, StoreError
from emrchain.store.undo import decode_undo
from emrchain.types.codec import DecodeError


class RollbackRefusedError(StoreError):
    """The store cannot be rolled back (the message says why); nothing was changed."""


@dataclass(frozen=True, slots=True)
class RollbackResult:
    removed_height: int
    head_height: int
    head_app_hash: bytes


def rollback(store: BlockStore) -> RollbackResult:
    """Roll the store back from its head h to h - 1 (module docstring)."""
    height = store.last_height()
    if height < 1:
        raise RollbackRefusedError("the store is at genesis: there is no block to roll back")
    raw_undo = store.database.get(layout.undo_key(height))
    if raw_undo is None:
        raise RollbackRefusedError(
            f"no undo record for height {height}: the node kept none ([storage] undo_heights "
            "= 0, or the height was committed before undo records, or rolled back past them)"
        )
    previous = height - 1
    if previous >= 1 and previous < store.base_height():
        raise RollbackRefusedError(
            f"block {previous} is pruned (base {store.base_height()}): the head could not "
            "move to it"
        )
    block = store.block(height)
    previous_app_hash = store.app_hash(previous)
    if block is None or previous_app_hash is None:
        raise StoreCorruptionError(f"block {height} or the app hash of {previous} is missing")
    if block.header.app_hash != previous_app_hash:
        raise StoreCorruptionError(
            f"block {height} does not carry the app hash stored for height {previous}"
        )
    try:
        undo = decode_undo(raw_undo)
    except DecodeError as error:
        raise StoreCorruptionError(f"the undo record of {height} is undecodable: {error}") from None
    batch = store.database.db.write_batch(sync=True)
    for key, value in undo:
        if value is None:
            batch.delete(layout.state_key(key))
        else:
            batch.put(layout.state_key(key), value)
    for tx_id in block.tx_ids:
        raw = store.database.get(layout.tx_location_key(tx_id))
        if raw is not None and layout.TX_LOCATION_VALUE.unpack(raw)[0] == height:
            batch.delete(layout.tx_location_key(tx_id))
    for key in (
        layout.block_key(height),
        layout.block_height_key(block.block_id),
        layout.commit_key(height),
        layout.tx_results_key(height),
        layout.app_hash_key(height),
        layout.undo_key(height),
        layout.validator_set_key(height + 2),
    ):
        batch.delete(key)
    previous_id = block.header.previous_block_id if previous else ZERO_ID
    batch.put(layout.META_HEAD, layout.HEAD.pack(previous, previous_id, previous_app_hash))
    store.write_batch(batch)
    store.reload_head()
    return RollbackResult(height, previous, previous_app_hash)
