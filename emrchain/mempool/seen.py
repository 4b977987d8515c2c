"""A bounded cache of transaction ids whose signature outcome is already known.

Every transaction reaches a node several times (from the client and from each peer's gossip);
Ed25519 verification is the dominant admission cost, so each signature is verified once per
node and the outcome remembered here, keyed by tx id (SHA-256 of all bytes, so the same id
means the same signature over the same message).

Eviction is by two generations rather than exact LRU: new and used ids go into the young
generation; when it is full it becomes the old one and the previous old one is forgotten, so an
id used within the last half of the capacity is always kept. Why: the cache is consulted about
four times per transaction on the event loop (screening, deciding, pre-verification, commit);
two plain dicts cost less per operation than an OrderedDict's linked list, and a rotation is
one assignment (the OrderedDict was ~7 % of a single node's event loop, BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class SeenState(IntEnum):
    """What the node knows about a tx id."""

    BAD_SIGNATURE = 0
    VERIFIED = 1
    COMMITTED = 2


class SeenCache:
    """Tx id -> SeenState, at most `max_entries`; ids not used for the longest are forgotten
    first, a generation (half the capacity) at a time.

    Forgetting is safe: a forgotten transaction is simply verified again.
    """

    __slots__ = ("_generation_entries", "_old", "_young")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        # Young and old hold at most half each; with room for one entry only there is no old
        # generation (a rotation forgets everything but the newest id).
        self._generation_entries = max(1, max_entries // 2)
        self._young: dict[bytes, SeenState] = {}
        self._old: dict[bytes, SeenState] | None = {} if max_entries >= 2 else None

    def __len__(self) -> int:
        return len(self._young) + (len(self._old) if self._old is not None else 0)

    def get(self, tx_id: bytes) -> SeenState | None:
        """The known state, without counting as a use (lookups run before admission decides)."""
        state = self._young.get(tx_id)
        if state is None and self._old is not None:
            state = self._old.get(tx_id)
        return state

    def get_many(self, tx_ids: Iterable[bytes]) -> list[SeenState | None]:
        """`get` for each id, in one call (admission asks about whole batches)."""
        young_get = self._young.get
        old = self._old
        if not old:
            return [young_get(tx_id) for tx_id in tx_ids]
        old_get = old.get
        return [
            state if (state := young_get(tx_id)) is not None else old_get(tx_id)
            for tx_id in tx_ids
        ]

    def touch(self, tx_id: bytes) -> None:
        """Mark a known id as just used; unknown ids are ignored."""
        self.touch_all((tx_id,))

    def touch_all(self, tx_ids: Iterable[bytes]) -> None:
        """`touch` for each id."""
        if not self._old:
            return  # everything known is young already
        for tx_id in tx_ids:
            old = self._old  # again each time: a remember may rotate the generations
            if old and tx_id in old:
                self.remember(tx_id, old[tx_id])

    def remember(self, tx_id: bytes, state: SeenState) -> None:
        """Record (or overwrite) the state of `tx_id` as most recently used."""
        self.remember_all((tx_id,), state)

    def remember_all(self, tx_ids: Iterable[bytes], state: SeenState) -> None:
        """`remember(tx_id, state)` for each id, in order."""
        young, old = self._young, self._old
        limit = self._generation_entries
        for tx_id in tx_ids:
            if tx_id not in young:
                if len(young) >= limit:
                    young = self._rotate()
                    old = self._old
                if old:
                    old.pop(tx_id, None)  # an id lives in one generation only
            young[tx_id] = state

    def _rotate(self) -> dict[bytes, SeenState]:
        """The young generation becomes the old one; the old one is forgotten."""
        if self._old is not None:
            self._old = self._young
        self._young = {}
        return self._young
