"""The database lock, unsafe_reset_all and the signing state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emrchain.store import (
    MAX_SIGNING_STATE_BYTES,
    BlockStore,
    ChainDatabase,
    DatabaseOptions,
    SigningStateStore,
    StoreLockedError,
    database_path,
    unsafe_reset_all,
)
from tests.state.chain import ChainBuilder
from tests.store.conftest import initialized_store, open_store

HOLD_DATABASE = """
import sys
from emrchain.store import ChainDatabase
database = ChainDatabase.open(sys.argv[1])
print("open", flush=True)
sys.stdin.readline()
"""


def test_second_open_in_the_same_process_is_refused(home: Path) -> None:
    with (
        ChainDatabase.open(home),
        pytest.raises(StoreLockedError, match="in use by another process or handle"),
    ):
        ChainDatabase.open(home)
    ChainDatabase.open(home).close()  # released on close


def test_second_process_is_refused_with_a_clear_error(home: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_DATABASE, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLockedError, match="another emrchain node running with this home"):
            ChainDatabase.open(home)
        with pytest.raises(StoreLockedError):
            unsafe_reset_all(home)
        assert database_path(home).exists()
    finally:
        holder.communicate("\n", timeout=10)
    ChainDatabase.open(home).close()


def test_unsafe_reset_all_deletes_chain_data_and_keeps_config_and_keys(home: Path) -> None:
    chain = ChainBuilder()
    store = initialized_store(home, chain)
    SigningStateStore(store.database).save(b"signed h=5")
    store.database.close()
    (home / "config").mkdir(parents=True)
    (home / "config" / "node.toml").write_text("moniker = 'a'\n")
    (home / "config" / "validator_key.json").write_text("{}")
    assert unsafe_reset_all(home) == database_path(home)
    assert not database_path(home).exists()
    assert (home / "config" / "node.toml").read_text() == "moniker = 'a'\n"
    assert (home / "config" / "validator_key.json").exists()
    fresh = open_store(home)
    assert not fresh.is_initialized()
    assert SigningStateStore(fresh.database).load() is None
    fresh.database.close()
    unsafe_reset_all(home)  # nothing but an empty database to delete: fine


def test_unsafe_reset_all_can_keep_the_signing_state(home: Path) -> None:
    chain = ChainBuilder()
    store = initialized_store(home, chain)
    SigningStateStore(store.database).save(b"signed h=5")
    store.database.close()
    unsafe_reset_all(home, keep_signing_state=True)
    with ChainDatabase.open(home) as database:
        assert SigningStateStore(database).load() == b"signed h=5"
        assert not BlockStore(database).is_initialized()


def test_signing_state_round_trips_survives_reopen_and_is_bounded(home: Path) -> None:
    with ChainDatabase.open(home) as database:
        signing = SigningStateStore(database)
        assert signing.load() is None
        signing.save(b"\x01state-a")
        signing.save(b"\x01state-b")
        assert signing.load() == b"\x01state-b"
        with pytest.raises(ValueError, match=f"1..{MAX_SIGNING_STATE_BYTES} bytes"):
            signing.save(b"x" * (MAX_SIGNING_STATE_BYTES + 1))
        with pytest.raises(ValueError):
            signing.save(b"")
        with pytest.raises(TypeError, match="must be bytes"):
            signing.save("text")  # type: ignore[arg-type]
    with ChainDatabase.open(home) as database:
        assert SigningStateStore(database).load() == b"\x01state-b"


def test_compression_option_reaches_leveldb_and_can_change_on_a_home(tmp_path: Path) -> None:
    """[storage] compression: snappy tables are smaller (the option reaches LevelDB), and it
    can change on an existing home, since LevelDB records each table block's compression."""
    values = {index.to_bytes(4, "big"): b"record %d " % index * 40 for index in range(5_000)}

    def write(home: Path, compression: str) -> int:
        with ChainDatabase.open(home, DatabaseOptions(compression=compression)) as database:
            for key, value in values.items():
                database.db.put(key, value)
            database.db.compact_range()  # from the log into tables
        return sum(path.stat().st_size for path in database_path(home).glob("*.ldb"))

    snappy_bytes = write(tmp_path / "snappy", "snappy")
    plain_bytes = write(tmp_path / "plain", "none")
    assert plain_bytes > 2 * snappy_bytes  # the repetitive values compress well
    with ChainDatabase.open(tmp_path / "snappy", DatabaseOptions(compression="none")) as database:
        assert all(database.get(key) == value for key, value in values.items())


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "zlib"},
        {"write_buffer_bytes": 0},
        {"block_cache_bytes": -1},
    ],
)
def test_bad_database_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DatabaseOptions(**options)  # type: ignore[arg-type]
