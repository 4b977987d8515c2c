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
