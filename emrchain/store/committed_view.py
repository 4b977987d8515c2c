"""`CommittedStateView`: the application's read access to the committed state in the store."""

from __future__ import annotations

from collections.abc import Callable

from emrchain.store import layout
from emrchain.store.absence import AbsenceFilter
from emrchain.store.database import ChainDatabase


class CommittedStateView:
    """A `CommittedState` backed by the store: application keys live under the `S` prefix.

    Reads see the latest committed block (one atomic batch), never part of a block.
    """

    __slots__ = ("_absence", "_database", "_last_app_hash", "_last_height")

    def __init__(
        self,
        database: ChainDatabase,
        last_height: Callable[[], int],
        last_app_hash: Callable[[], bytes],
        absence: AbsenceFilter | None = None,
    ) -> None:
        self._database = database
        self._absence = absence
        self._last_height = last_height
        self._last_app_hash = last_app_hash

    def get(self, key: bytes) -> bytes | None:
        absence = self._absence
        if absence is not None and absence.certainly_absent(key):
            return None  # never written (store/absence.py): no database search
        return self._database.get(layout.STATE + key)

    def last_height(self) -> int:
        return self._last_height()

    def last_app_hash(self) -> bytes:
        return self._last_app_hash()
