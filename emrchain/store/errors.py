"""Errors the store raises; each message says what is wrong and what the node should do."""

from __future__ import annotations


class StoreError(RuntimeError):
    """Base class of store errors."""


class StoreLockedError(StoreError):
    """Another process (or another open handle in this process) holds the database."""


class StoreCorruptionError(StoreError):
    """Stored data is missing or undecodable where the store's own invariants require it."""


class BlockRefusedError(StoreError):
    """`commit_block` refused the block (wrong height, wrong parent, inconsistent result...);
    nothing was written."""


class NotInitializedError(StoreError):
    """The store has no genesis yet."""


class HeightPrunedError(StoreError):
    """The height asked for lies below the store's base: its block, commit and results were
    pruned (`[storage] retain_blocks`) or never stored (a state-synced node)."""

    def __init__(self, height: int, base_height: int) -> None:
        super().__init__(
            f"height {height} is pruned: this node keeps blocks from height {base_height} on"
        )
        self.height = height
        self.base_height = base_height
