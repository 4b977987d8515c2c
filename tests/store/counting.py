"""A database wrapper for tests that counts the reads reaching LevelDB (the absence filter and
the state cache are judged by the reads they save)."""

from __future__ import annotations

from emrchain.store import ChainDatabase


class CountingDatabase:
    """Counts state reads that reach LevelDB."""

    def __init__(self, database: ChainDatabase) -> None:
        self.reads = 0
        self._get = database.get
        database.get = self.get  # type: ignore[method-assign]

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self._get(key)
