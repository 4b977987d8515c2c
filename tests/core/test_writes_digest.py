"""`writes_digest`: both twins give SHA-256 of the canonical writes encoding — the bytes the
state layer's reference `encode_writes` builds — and refuse the same inputs with the same
exception types and messages, checked in the same order (hypothesis differential test plus
explicit cases). The app hash of every block goes through it (`docs/spec/state.md` §2)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain._core.reference import writes as pure
from emrchain.schema.verdicts import LimitError
from emrchain.state.result import MAX_WRITES, encode_writes, writes_digest
from emrchain.state.view import MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES, StateLimitError
from tests.core.conftest import import_twin_module

DigestFn = Callable[..., bytes]
LIMITS = (MAX_WRITES, MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES)


@pytest.fixture(scope="module")
def twins() -> tuple[DigestFn, DigestFn]:
    compiled = import_twin_module("emrchain._core._writes", compiled=True)
    return compiled.writes_digest, pure.writes_digest


def outcome(function: DigestFn, *arguments: Any) -> Any:
    try:
        return function(*arguments)
    except Exception as error:  # comparing exception types and messages is the point
        return (type(error), str(error))


keys = st.binary(min_size=1, max_size=40)
values = st.one_of(st.none(), st.binary(max_size=300), st.binary(min_size=4000, max_size=9000))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=60))
def test_twins_agree_with_the_reference_encoding(
    twins: tuple[DigestFn, DigestFn], writes: dict[bytes, bytes | None]
) -> None:
    compiled, reference = twins
    expected = hashlib.sha256(encode_writes(writes)).digest()
    assert compiled(writes, *LIMITS) == reference(writes, *LIMITS) == expected
    assert writes_digest(writes) == expected


def test_many_writes_cross_the_staging_buffer(twins: tuple[DigestFn, DigestFn]) -> None:
    # Thousands of writes, values of every size around the staging buffer's halves.
    writes = {
        hashlib.sha256(index.to_bytes(4, "big")).digest(): (
            None if index % 7 == 0 else bytes([index % 251]) * ((index * 37) % 9000)
        )
        for index in range(3000)
    }
    compiled, reference = twins
    expected = hashlib.sha256(encode_writes(writes)).digest()
    assert compiled(writes, *LIMITS) == reference(writes, *LIMITS) == expected


class Key(bytes):
    """A bytes subclass: the core refuses it, the state layer accepts it as before."""


@pytest.mark.parametrize(
    ("writes", "limits"),
    [
        ({"text": b"v"}, LIMITS),
        ({b"k": "text"}, LIMITS),
        ({b"k": bytearray(b"v")}, LIMITS),
        ({Key(b"k"): b"v"}, LIMITS),
        ({b"": b"v"}, LIMITS),
        ({b"k" * 257: b"v"}, LIMITS),
        ({b"a": b"v", b"b": b"x" * 11}, (10, 256, 10)),
        ({b"a": None, b"b": None}, (1, 256, 10)),
        ({b"b": "late", b"a": bytearray()}, LIMITS),  # values are checked in key order
        ({1: b"v", b"k" * 300: b"v"}, LIMITS),  # keys in iteration order, before sorting
        ({b"k": b"v"}, (-1, 256, 10)),
        ({b"k": b"v"}, (10, 1 << 16, 10)),
        ({b"k": b"v"}, (10, 256, 1.5)),
    ],
)
def test_twins_refuse_the_same_inputs_the_same_way(
    twins: tuple[DigestFn, DigestFn], writes: dict[Any, Any], limits: tuple[Any, ...]
) -> None:
    compiled, reference = twins
    refused = outcome(reference, writes, *limits)
    assert isinstance(refused, tuple) and refused[0] in (TypeError, LimitError)
    assert outcome(compiled, writes, *limits) == refused


def test_the_state_layer_keeps_its_own_errors_and_accepts_bytes_subclasses() -> None:
    assert writes_digest({Key(b"k"): Key(b"v")}) == hashlib.sha256(
        encode_writes({b"k": b"v"})
    ).digest()
    with pytest.raises(StateLimitError, match=r"state key length 0 outside 1\.\.256"):
        writes_digest({b"": b"v"})
    with pytest.raises(StateLimitError, match="state values are bytes, not str"):
        writes_digest({b"k": "text"})


def test_twins_reproduce_the_pinned_vectors(twins: tuple[DigestFn, DigestFn]) -> None:
    import json

    from tests.state.app_hash_vectors import VECTORS

    for vector in json.loads(VECTORS.read_text()):
        writes = {
            bytes.fromhex(key): None if value is None else bytes.fromhex(value)
            for key, value in vector["writes"]
        }
        for twin in twins:
            assert twin(writes, *LIMITS).hex() == vector["writes_digest"], vector["name"]
