"""The absence filter (`store/absence.py`): it never calls a present key absent, the store fills
it at open and keeps it current at each commit, and reads it proves absent skip the database
while every result stays what the database says. Invariant: a committed state view returns
exactly the database's value for every key, filter or not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.state import keys
from emrchain.store import BlockStore, ChainDatabase
from emrchain.store.absence import AbsenceFilter
from tests.state.chain import ALICE, BOB, CHAIN_ID, ChainBuilder, register_tx
from tests.store.counting import CountingDatabase

PREFIX = keys.MEMBER_KEY_PREFIX  # every registration looks its new key up there first


@settings(max_examples=200, deadline=None)
@given(st.sets(st.binary(min_size=1, max_size=40), max_size=300))
def test_an_added_key_is_never_called_absent(added: set[bytes]) -> None:
    absence = AbsenceFilter(1024, [PREFIX])
    covered = {PREFIX + key for key in added}
    absence.add_all(covered)
    assert not any(absence.certainly_absent(key) for key in covered)
    assert absence.keys_added == len(covered)
    # Keys outside the covered prefixes are never answered by the filter.
    assert not any(absence.certainly_absent(b"\x00" + key) for key in added)


def test_most_misses_are_answered_at_the_designed_load() -> None:
    size = 1 << 16  # 512 Ki bits: 32 Ki keys at 16 bits per key
    absence = AbsenceFilter(size, [PREFIX])
    absence.add_all(PREFIX + os.urandom(32) for _ in range(size * 8 // 16))
    misses = [PREFIX + os.urandom(32) for _ in range(20_000)]
    answered = sum(absence.certainly_absent(key) for key in misses)
    assert answered / len(misses) > 0.99  # the design figure is ~99.8 %


@pytest.mark.parametrize("size", [0, 1000, 1023, 3 << 20, 1 << 31])
def test_sizes_must_be_powers_of_two_within_limits(size: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        AbsenceFilter(size, [PREFIX])


@pytest.mark.parametrize("prefixes", [[], [b""], [b"ab"], ["x"]])
def test_prefixes_must_be_single_bytes(prefixes: list[object]) -> None:
    with pytest.raises(ValueError, match="single-byte"):
        AbsenceFilter(1024, prefixes)  # type: ignore[arg-type]


def _store(home: Path, absence: AbsenceFilter | None) -> BlockStore:
    return BlockStore(ChainDatabase.open(home), absence=absence)


def test_the_store_keeps_the_filter_current_and_reads_agree_with_the_database(
    tmp_path: Path,
) -> None:
    chain = ChainBuilder()
    home = tmp_path / "node"
    store = _store(home, AbsenceFilter(1 << 16, [PREFIX]))
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    blocks = [
        chain.add_block([register_tx(ALICE, 1, label=1), register_tx(BOB, 1, label=2)]),
        chain.add_block([register_tx(ALICE, 2, label=3), register_tx(BOB, 2, label=1)]),  # dup
    ]
    indexed = [key for key, _ in chain.state.items() if key[:1] == PREFIX]
    # Pipelined commit of block 1: the new member keys are not in the filter (nor visible
    # through the old head) until the write is finished.
    prepared = store.prepare_commit(blocks[0].block, blocks[0].commit, blocks[0].result)
    first_records = prepared.filtered_keys
    assert first_records and all(key[:1] == PREFIX for key in first_records)
    assert all(store.state_view().get(key) is None for key in first_records)
    store.write_prepared(prepared)
    assert all(store.state_view().get(key) is None for key in first_records)  # old head
    store.finish_commit(prepared)
    assert all(store.state_view().get(key) is not None for key in first_records)
    store.commit_block(blocks[1].block, blocks[1].commit, blocks[1].result)
    assert [result.code for result in blocks[1].result.tx_results][1] != 0  # duplicate refused
    view = store.state_view()
    for key, value in chain.state.items():
        assert view.get(key) == value
    assert len(indexed) == len([key for key in chain.genesis.writes if key[:1] == PREFIX]) + 3
    counting = CountingDatabase(store.database)
    never = [PREFIX + os.urandom(32) for _ in range(200)]
    assert all(view.get(key) is None for key in never)
    assert counting.reads <= 2  # a false positive or two at most; none expected
    store.database.close()
    # Reopened: the filter is filled from the database and answers the same.
    reopened = _store(home, AbsenceFilter(1 << 16, [PREFIX]))
    assert reopened._absence is not None and reopened._absence.keys_added == len(indexed)
    view = reopened.state_view()
    for key, value in chain.state.items():
        assert view.get(key) == value
    assert all(view.get(key) is None for key in never)
    reopened.database.close()


def test_a_filter_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    absence = AbsenceFilter(1024, [PREFIX])
    absence.add(PREFIX + b"x")
    with pytest.raises(ValueError, match="start empty"):
        _store(tmp_path / "node", absence)


def test_a_commit_adds_only_the_keys_it_puts_under_the_prefixes() -> None:
    absence = AbsenceFilter(1024, [PREFIX])
    writes = {PREFIX + b"put": b"v", PREFIX + b"deleted": None, b"\x00other": b"v"}
    assert absence.covered_puts(writes) == (PREFIX + b"put",)
