"""Opening the node's single LevelDB (`<home>/data/chain.db`) and translating plyvel errors.

LevelDB takes an exclusive lock on the directory, so a second node process on the same home
fails to open; that error is turned into a `StoreLockedError` that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import plyvel

from emrchain.config.node import StorageSection
from emrchain.config.settings import check_declared, settings_of
from emrchain.store.errors import StoreCorruptionError, StoreError, StoreLockedError

DATA_DIRECTORY = "data"
DATABASE_DIRECTORY = "chain.db"


@dataclass(frozen=True, slots=True)
class DatabaseOptions:
    """How LevelDB is opened: the `[storage]` settings of these names, with their defaults and
    ranges (`emrchain/config/node.py`); the node builds it in `node/wiring.py`."""

    compression: str = StorageSection.compression
    write_buffer_bytes: int = StorageSection.write_buffer_bytes
    block_cache_bytes: int = StorageSection.block_cache_bytes

    def __post_init__(self) -> None:
        check_declared(DATABASE_SETTINGS, self)


DATABASE_SETTINGS = {
    name: settings_of(StorageSection)[name]
    for name in ("compression", "write_buffer_bytes", "block_cache_bytes")
}


def database_path(home: Path | str) -> Path:
    """Where the node home keeps its database."""
    return Path(home) / DATA_DIRECTORY / DATABASE_DIRECTORY


def translate_error(error: Exception, path: Path) -> StoreError:
    """A plyvel error as a StoreError that names the database and the likely cause."""
    message = error.args[0] if error.args else str(error)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if isinstance(error, plyvel.IOError) and "lock" in message.lower():
        return StoreLockedError(
            f"the database {path} is in use by another process or handle (is another emrchain "
            f"node running with this home?): {message}"
        )
    if isinstance(error, plyvel.CorruptionError):
        return StoreCorruptionError(f"the database {path} is corrupted: {message}")
    return StoreError(f"database {path}: {message}")


class ChainDatabase:
    """The node's LevelDB handle; every keyspace (`layout.py`) lives in it."""

    def __init__(self, path: Path, db: plyvel.DB) -> None:
        self._path = path
        self._db = db

    @classmethod
    def open(cls, home: Path | str, options: DatabaseOptions | None = None) -> ChainDatabase:
        """Open (creating if needed) `<home>/data/chain.db`; StoreLockedError if it is in use."""
        options = options or DatabaseOptions()
        path = database_path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = plyvel.DB(
                str(path),
                create_if_missing=True,
                paranoid_checks=True,
                write_buffer_size=options.write_buffer_bytes,
                lru_cache_size=options.block_cache_bytes,
                bloom_filter_bits=10,
                compression=None if options.compression == "none" else options.compression,
            )
        except plyvel.Error as error:
            raise translate_error(error, path) from None
        return cls(path, db)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def db(self) -> plyvel.DB:
        """The raw plyvel handle, for the store's own modules."""
        if self._db.closed:
            raise StoreError(f"the database {self._path} is closed")
        return self._db

    @property
    def closed(self) -> bool:
        return self._db.closed

    def get(self, key: bytes) -> bytes | None:
        try:
            return self.db.get(key)
        except plyvel.Error as error:
            raise translate_error(error, self._path) from None

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    def __enter__(self) -> ChainDatabase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
