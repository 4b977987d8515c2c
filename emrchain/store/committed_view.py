"""`CommittedStateView`: the application's read access to the committed state in the store."""

from __future__ import annotations

from collections.abc import Callable

from emrchain.store import layout
from emrchain.store.absence import AbsenceFilter
from emrchain.store.database import ChainDatabase
from emrchain.store.state_cache import MISSING, StateCache


class CommittedStateView:
    """A `CommittedState` backed by the store: application keys live under the `S` prefix.

    Reads see the latest committed block (one atomic batch), never part of a block.
    """

    __slots__ = ("_absence", "_cache", "_database", "_last_app_hash", "_last_height")

    def __init__(
        self,
        database: ChainDatabase,
        last_height: Callable[[], int],
        last_app_hash: Callable[[], bytes],
        absence: AbsenceFilter | None = None,
        cache: StateCache | None = None,
    ) -> None:
        self._database = database
        self._absence = absence
        self._cache = cache
        self._last_height = last_height
        self._last_app_hash = last_app_hash

    def get(self, key: bytes) -> bytes | None:
        cache = self._cache
        if cache is not None:
            cached = cache.lookup(key)
            if cached is not MISSING:
                return cached  # type: ignore[return-value]  # bytes | None when not MISSING
        absence = self._absence
        if absence is not None and absence.certainly_absent(key):
            # Never written (store/absence.py): no database search. Not cached: these are new
            # record ids, each asked about once.
            return None
        value = self._database.get(layout.STATE + key)
        if cache is not None:
            cache.remember(key, value)
        return value

    def last_height(self) -> int:
        return self._last_height()

    def last_app_hash(self) -> bytes:
        return self._last_app_hash()
