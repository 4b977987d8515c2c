"""A bounded LRU of transaction ids whose signature outcome is already known.

Every transaction reaches a node several times (from the client and from each peer's gossip);
Ed25519 verification is the dominant admission cost, so each signature is verified once per
node and the outcome remembered here, keyed by tx id (SHA-256 of all bytes, so the same id
means the same signature over the same message).
"""

from __future__ import annotations

from collections import OrderedDict
from enum import IntEnum


class SeenState(IntEnum):
    """What the node knows about a tx id."""

    BAD_SIGNATURE = 0
    VERIFIED = 1
    COMMITTED = 2


class SeenCache:
    """Tx id -> SeenState, at most `max_entries`; the least recently used id is forgotten first.

    Forgetting is safe: a forgotten transaction is simply verified again.
    """

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._entries: OrderedDict[bytes, SeenState] = OrderedDict()
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, tx_id: bytes) -> SeenState | None:
        """The known state, without counting as a use (lookups run before admission decides)."""
        return self._entries.get(tx_id)

    def touch(self, tx_id: bytes) -> None:
        """Mark a known id as just used; unknown ids are ignored."""
        if tx_id in self._entries:
            self._entries.move_to_end(tx_id)

    def remember(self, tx_id: bytes, state: SeenState) -> None:
        """Record (or overwrite) the state of `tx_id` as most recently used; evict if over."""
        entries = self._entries
        entries[tx_id] = state
        entries.move_to_end(tx_id)
        if len(entries) > self._max_entries:
            entries.popitem(last=False)
