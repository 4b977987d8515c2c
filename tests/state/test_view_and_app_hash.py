"""Overlay views, the canonical writes encoding and the app hash rule (with pinned vectors)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrchain.state import (
    MemoryState,
    OverlayStateView,
    StateLimitError,
    compute_app_hash,
    decode_writes,
    encode_writes,
)
from emrchain.state.result import ExecutionResult
from emrchain.state.view import MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES, ReadOnceView
from emrchain.types import DecodeError
from tests.state.app_hash_vectors import VECTORS, build


def base_view(values: dict[bytes, bytes]) -> MemoryState:
    state = MemoryState()
    state.apply_genesis(ExecutionResult(dict(values), bytes(32)))
    return state


def test_overlay_reads_its_writes_first_then_the_base() -> None:
    base = base_view({b"a": b"1", b"b": b"2"})
    overlay = OverlayStateView(base)
    overlay.put(b"a", b"changed")
    overlay.delete(b"b")
    overlay.put(b"c", b"new")
    assert [overlay.get(key) for key in (b"a", b"b", b"c", b"d")] == [
        b"changed",
        None,
        b"new",
        None,
    ]
    assert overlay.writes() == {b"a": b"changed", b"b": None, b"c": b"new"}
    assert base.get(b"a") == b"1" and base.get(b"b") == b"2"


def test_nested_overlay_changes_parent_only_when_merged() -> None:
    block = OverlayStateView(base_view({b"k": b"0"}))
    discarded = OverlayStateView(block)
    discarded.put(b"k", b"1")
    assert block.get(b"k") == b"0" and block.writes() == {}
    kept = OverlayStateView(block)
    kept.delete(b"k")
    kept.put(b"x", b"2")
    kept.merge_into(block)
    assert block.writes() == {b"k": None, b"x": b"2"}


def test_overlay_refuses_keys_values_and_counts_beyond_limits() -> None:
    overlay = OverlayStateView(base_view({}), max_pending_writes=2)
    with pytest.raises(StateLimitError, match="length 0"):
        overlay.put(b"", b"v")
    with pytest.raises(StateLimitError, match="length 257"):
        overlay.put(b"k" * (MAX_STATE_KEY_BYTES + 1), b"v")
    with pytest.raises(StateLimitError, match="exceeds"):
        overlay.put(b"k", b"v" * (MAX_STATE_VALUE_BYTES + 1))
    with pytest.raises(StateLimitError, match="bytes, not str"):
        overlay.put("k", b"v")  # type: ignore[arg-type]
    overlay.put(b"k1", b"v")
    overlay.put(b"k2", b"v")
    overlay.put(b"k1", b"rewrite")  # an existing key is not a new entry
    with pytest.raises(StateLimitError, match="more than 2 pending writes"):
        overlay.delete(b"k3")
    assert overlay.writes() == {b"k1": b"rewrite", b"k2": b"v"}


def test_overlay_put_fast_path_keeps_the_checks() -> None:
    """put() checks exact bytes inline; anything else still goes through the full checks."""

    class Key(bytes):
        pass

    overlay = OverlayStateView(base_view({}))
    overlay.put(Key(b"sub"), Key(b"value"))  # bytes subclasses were accepted and still are
    with pytest.raises(StateLimitError, match="bytes, not bytearray"):
        overlay.put(b"k", bytearray(b"v"))  # type: ignore[arg-type]
    with pytest.raises(StateLimitError, match="bytes, not memoryview"):
        overlay.put(memoryview(b"k"), b"v")  # type: ignore[arg-type]
    assert overlay.writes() == {b"sub": b"value"}


def test_merge_into_a_parent_near_its_cap_refuses_like_single_writes() -> None:
    parent = OverlayStateView(base_view({}), max_pending_writes=3)
    parent.put(b"a", b"1")
    child = OverlayStateView(parent)
    child.put(b"a", b"2")  # an existing key of the parent: no new entry
    child.put(b"b", b"2")
    child.put(b"c", b"2")
    child.merge_into(parent)  # 1 + 3 > 3 pending, but only 2 new keys: fits, as before
    assert parent.writes() == {b"a": b"2", b"b": b"2", b"c": b"2"}
    overflow = OverlayStateView(parent)
    overflow.put(b"d", b"3")
    with pytest.raises(StateLimitError, match="more than 3 pending writes"):
        overflow.merge_into(parent)


def test_read_once_view_reads_each_key_from_its_base_once() -> None:
    reads: list[bytes] = []

    class Counting:
        def get(self, key: bytes) -> bytes | None:
            reads.append(key)
            return {b"a": b"1"}.get(key)

    view = ReadOnceView(Counting())
    assert [view.get(key) for key in (b"a", b"b", b"a", b"b")] == [b"1", None, b"1", None]
    assert reads == [b"a", b"b"]  # absent keys are remembered too
    overlay = OverlayStateView(view)
    overlay.put(b"b", b"2")
    assert overlay.get(b"b") == b"2" and reads == [b"a", b"b"]


@pytest.mark.parametrize("vector", json.loads(VECTORS.read_text()), ids=lambda v: v["name"])
def test_app_hash_vectors(vector: dict) -> None:
    writes = {
        bytes.fromhex(key): None if value is None else bytes.fromhex(value)
        for key, value in vector["writes"]
    }
    previous = bytes.fromhex(vector["previous_app_hash"])
    assert encode_writes(writes).hex() == vector["encoding"]
    assert decode_writes(bytes.fromhex(vector["encoding"])) == writes
    assert compute_app_hash(previous, vector["height"], writes).hex() == vector["app_hash"]


def test_vector_file_matches_its_generator() -> None:
    assert json.loads(VECTORS.read_text()) == build()


writes_strategy = st.dictionaries(
    st.binary(min_size=1, max_size=40),
    st.none() | st.binary(max_size=64),
    max_size=20,
)


@given(writes_strategy)
def test_writes_encoding_round_trips_and_ignores_insertion_order(writes: dict) -> None:
    encoded = encode_writes(writes)
    assert decode_writes(encoded) == writes
    assert encode_writes(dict(reversed(list(writes.items())))) == encoded


@given(writes_strategy.filter(bool), st.data())
def test_any_single_changed_write_changes_the_app_hash(writes: dict, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(writes)))
    value = writes[key]
    changed = dict(writes)
    changed[key] = b"x" if value is None else (None if data.draw(st.booleans()) else value + b"!")
    assert compute_app_hash(bytes(32), 5, changed) != compute_app_hash(bytes(32), 5, writes)


def test_app_hash_binds_previous_hash_and_height() -> None:
    writes = {b"k": b"v"}
    reference = compute_app_hash(bytes(32), 1, writes)
    assert compute_app_hash(bytes(32), 2, writes) != reference
    assert compute_app_hash(b"\x01" * 32, 1, writes) != reference
    with pytest.raises(ValueError, match="32 bytes"):
        compute_app_hash(b"short", 1, writes)


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("000000020001620000016100", "strictly ascending"),
        ("000000020001610000016100", "strictly ascending"),
        ("0000000100016102", "neither 0"),
        ("00000001000000", "empty key"),
        ("0000000100016100ff", "trailing"),
        ("0000000100016101000000056869", "needs 5 bytes"),
        ("000000010101", "exceeds 256"),
    ],
)
def test_non_canonical_writes_are_refused(encoding: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_writes(bytes.fromhex(encoding))
