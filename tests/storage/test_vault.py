"""LevelDbKeyVault: put/get/delete, record-id order for rotation, bounds, persistence."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.storage.interfaces import CustodyWrap, KeyVault, StorageUnavailableError
from emrchain.storage.vault import ERASURE_CURSOR_KEY, LevelDbKeyVault, VaultCorruptedError


def record_id(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def wrap(label: str, kek_version: int = 1, wrapped_key: bytes = b"w" * 40) -> CustodyWrap:
    return CustodyWrap(record_id(label), kek_version, wrapped_key)


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[LevelDbKeyVault]:
    opened = LevelDbKeyVault(tmp_path / "vault")
    yield opened
    opened.close()


def test_implements_the_protocol(vault: LevelDbKeyVault) -> None:
    assert isinstance(vault, KeyVault)


def test_put_get_replace_delete(vault: LevelDbKeyVault) -> None:
    assert vault.get(record_id("a")) is None
    vault.put(wrap("a", 1, b"first"))
    assert vault.get(record_id("a")) == wrap("a", 1, b"first")
    vault.put(wrap("a", 2, b"rotated"))
    assert vault.get(record_id("a")) == wrap("a", 2, b"rotated")
    vault.delete(record_id("a"))
    vault.delete(record_id("a"))  # idempotent
    assert vault.get(record_id("a")) is None


def test_iterate_pages_in_record_id_order(vault: LevelDbKeyVault) -> None:
    wraps = [wrap(f"record {index}", index + 1) for index in range(25)]
    for item in wraps:
        vault.put(item)
    expected = sorted(wraps, key=lambda item: item.record_id)
    assert vault.iterate() == vault.iterate(limit=1000) == expected
    pages, after = [], b""
    while page := vault.iterate(after, limit=7):
        pages.append(page)
        after = page[-1].record_id
    assert [len(page) for page in pages] == [7, 7, 7, 4]
    assert [item for page in pages for item in page] == expected
    # `after` is exclusive, whether or not it is a stored id.
    assert vault.iterate(expected[3].record_id, limit=2) == expected[4:6]
    assert vault.iterate(b"\xff" * 32) == []


@settings(max_examples=30, deadline=None)
@given(
    st.sets(st.binary(min_size=32, max_size=32), max_size=40), st.binary(min_size=32, max_size=32)
)
def test_iterate_after_any_id_matches_sorting(
    tmp_path_factory: pytest.TempPathFactory, identifiers: set[bytes], after: bytes
) -> None:
    vault = LevelDbKeyVault(tmp_path_factory.mktemp("vault") / "db")
    try:
        for identifier in identifiers:
            vault.put(CustodyWrap(identifier, 1, identifier[:8]))
        expected = sorted(identifier for identifier in identifiers if identifier > after)
        assert [item.record_id for item in vault.iterate(after, limit=10_000)] == expected
    finally:
        vault.close()


def test_reopen_persists(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    first = LevelDbKeyVault(path)
    first.put(wrap("kept", 3))
    first.put(wrap("erased"))
    first.delete(record_id("erased"))
    first.close()
    second = LevelDbKeyVault(path)
    try:
        assert second.get(record_id("kept")) == wrap("kept", 3)
        assert second.get(record_id("erased")) is None
        assert second.iterate() == [wrap("kept", 3)]
    finally:
        second.close()


def test_second_handle_on_the_same_directory_is_refused(
    vault: LevelDbKeyVault, tmp_path: Path
) -> None:
    with pytest.raises(StorageUnavailableError, match="cannot be opened"):
        LevelDbKeyVault(tmp_path / "vault")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (CustodyWrap(b"short", 1, b"w"), "exactly 32 bytes"),
        (CustodyWrap(record_id("a"), 0, b"w"), "kek_version"),
        (CustodyWrap(record_id("a"), 1 << 32, b"w"), "kek_version"),
        (CustodyWrap(record_id("a"), 1, b""), "wrapped_key"),
        (CustodyWrap(record_id("a"), 1, b"w" * 129), "wrapped_key"),
    ],
)
def test_put_bounds(vault: LevelDbKeyVault, item: CustodyWrap, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vault.put(item)
    assert vault.iterate() == []


def test_bounds_at_their_limits_are_accepted(vault: LevelDbKeyVault) -> None:
    vault.put(CustodyWrap(record_id("a"), (1 << 32) - 1, b"w" * 128))
    vault.put(CustodyWrap(record_id("b"), 1, b"w"))
    assert vault.get(record_id("a")) == CustodyWrap(record_id("a"), (1 << 32) - 1, b"w" * 128)


@pytest.mark.parametrize(("after", "limit"), [(b"short", 10), (b"", 0), (b"", 10_001)])
def test_iterate_arguments_are_bounded(vault: LevelDbKeyVault, after: bytes, limit: int) -> None:
    with pytest.raises(ValueError):
        vault.iterate(after, limit)


@pytest.mark.parametrize("identifier", [b"", b"x" * 31, b"x" * 33])
def test_get_and_delete_check_the_record_id(vault: LevelDbKeyVault, identifier: bytes) -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        vault.get(identifier)
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        vault.delete(identifier)


@pytest.mark.parametrize(
    "value",
    [b"", b"\x01\x00\x00", b"\x02\x00\x00\x00\x01\x01w", b"\x01\x00\x00\x00\x01\x05w"],
    ids=["empty", "short header", "unknown version", "length mismatch"],
)
def test_damaged_values_are_reported(tmp_path: Path, value: bytes) -> None:
    path = tmp_path / "vault"
    LevelDbKeyVault(path).close()
    raw = plyvel.DB(str(path))
    raw.put(b"\x01" + record_id("a"), value)
    raw.close()
    vault = LevelDbKeyVault(path)
    try:
        with pytest.raises(VaultCorruptedError, match="custody wrap of"):
            vault.get(record_id("a"))
        with pytest.raises(VaultCorruptedError):
            vault.iterate()
    finally:
        vault.close()


def test_a_database_with_another_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    raw = plyvel.DB(str(path), create_if_missing=True)
    raw.put(b"\x00layout", b"\x09")
    raw.close()
    with pytest.raises(VaultCorruptedError, match="layout 09"):
        LevelDbKeyVault(path)


def test_closed_vault_refuses_work(tmp_path: Path) -> None:
    vault = LevelDbKeyVault(tmp_path / "vault")
    vault.close()
    vault.close()
    with pytest.raises(StorageUnavailableError, match="closed"):
        vault.get(record_id("a"))


def _files_holding(directory: Path, needles: list[bytes]) -> list[str]:
    return [
        path.name
        for path in directory.iterdir()
        if path.is_file() and any(needle in path.read_bytes() for needle in needles)
    ]


@pytest.mark.parametrize("reopen_between", [False, True])
def test_an_erased_records_wraps_leave_the_database_files(
    tmp_path: Path, reopen_between: bool
) -> None:
    """Erasure (records.md §9): after delete + compact_record, no file of the vault holds the
    custody copy or a member wrap of the record; another record's entries stay. Reopening
    between put and delete moves the entries into tables first (the harder case)."""
    path = tmp_path / "vault"
    vault = LevelDbKeyVault(path)
    # Random-looking bytes, as real wraps are: LevelDB compresses repetitive values.
    custody, kept = secrets.token_bytes(40), secrets.token_bytes(40)
    patient_wrap = secrets.token_bytes(80)
    vault.put(CustodyWrap(record_id("erased"), 1, custody))
    vault.put_member_wrap(record_id("erased"), record_id("patient wrap"), patient_wrap)
    vault.put(CustodyWrap(record_id("kept"), 1, kept))
    if reopen_between:
        vault.close()
        vault = LevelDbKeyVault(path)
    assert _files_holding(path, [custody, patient_wrap])  # the scan finds what is there
    vault.delete(record_id("erased"))
    assert vault.delete_member_wraps(record_id("erased")) == 1
    vault.compact_record(record_id("erased"))
    try:
        assert _files_holding(path, [custody, patient_wrap]) == []
        assert _files_holding(path, [kept])
        assert vault.get(record_id("kept")) == CustodyWrap(record_id("kept"), 1, kept)
    finally:
        vault.close()


def test_the_erasure_queue_survives_a_reopen(tmp_path: Path) -> None:
    vault = LevelDbKeyVault(tmp_path / "vault")
    vault.enqueue_erasure(record_id("a"), "bafkreiexample")
    vault.close()
    vault = LevelDbKeyVault(tmp_path / "vault")
    try:
        assert vault.pending_erasures(10) == [(record_id("a"), "bafkreiexample")]
        vault.finish_erasure(record_id("a"))
        assert vault.pending_erasures(10) == []
    finally:
        vault.close()


def test_the_erasure_cursor_survives_a_reopen_apart_from_wraps_and_queue(tmp_path: Path) -> None:
    vault = LevelDbKeyVault(tmp_path / "vault")
    assert vault.erasure_cursor() is None
    vault.set_erasure_cursor(2**64 - 1)
    vault.set_erasure_cursor(41)
    with pytest.raises(ValueError, match="height"):
        vault.set_erasure_cursor(-1)
    vault.close()
    vault = LevelDbKeyVault(tmp_path / "vault")
    try:
        assert vault.erasure_cursor() == 41
        assert vault.iterate() == [] and vault.pending_erasures(10) == []
    finally:
        vault.close()
    database = plyvel.DB(str(tmp_path / "vault"))
    database.put(ERASURE_CURSOR_KEY, b"\x01")
    database.close()
    vault = LevelDbKeyVault(tmp_path / "vault")
    try:
        with pytest.raises(VaultCorruptedError, match="erasure cursor"):
            vault.erasure_cursor()
    finally:
        vault.close()


def test_contributions_round_trip_survive_reopening_and_refuse_bad_input(tmp_path: Path) -> None:
    study, query = record_id("study"), record_id("query")
    first = LevelDbKeyVault(tmp_path / "vault")
    first.put_contribution(study, query, False, [5, -3, 2**64 - 1])
    with pytest.raises(ValueError, match=r"1\.\.64 coordinates"):
        first.put_contribution(study, record_id("other"), True, [])
    with pytest.raises(ValueError):
        first.put_contribution(b"short", query, True, [1])
    first.close()
    reopened = LevelDbKeyVault(tmp_path / "vault")
    # Stored modulo 2^64: the worker turns an unmasked vector back into signed integers.
    assert reopened.contribution(study, query) == (False, [5, 2**64 - 3, 2**64 - 1])
    assert reopened.contribution_count() == 1
    assert reopened.get(study) is None  # its own keyspace: no custody wrap appears
    reopened.delete_contribution(study, query)
    assert reopened.contribution(study, query) is None and reopened.contribution_count() == 0
    reopened.close()
    raw = plyvel.DB(str(tmp_path / "vault"))
    raw.put(b"\x04" + study + query, b"\x02\x00\x01" + bytes(8))
    raw.close()
    damaged = LevelDbKeyVault(tmp_path / "vault")
    with pytest.raises(VaultCorruptedError):
        damaged.contribution(study, query)
    damaged.close()
