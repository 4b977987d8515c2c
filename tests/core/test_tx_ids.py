"""`tx_ids`: both twins give SHA-256 of each transaction, in order, and refuse the same inputs
with the same exception types (hypothesis differential test plus explicit cases)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import emrchain._core as core
from tests.core.conftest import load_function

IdsFn = Callable[[Any], list[bytes]]


@pytest.fixture(scope="module")
def twins() -> tuple[IdsFn, IdsFn]:
    return load_function(core.CYTHON, "tx_ids"), load_function(core.PYTHON, "tx_ids")


def outcome(function: IdsFn, txs: Any) -> Any:
    try:
        return function(txs)
    except Exception as error:  # comparing exception types is the point
        return type(error)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=40))
def test_twins_agree_with_sha256(twins: tuple[IdsFn, IdsFn], txs: list[bytes]) -> None:
    compiled, reference = twins
    expected = [hashlib.sha256(tx).digest() for tx in txs]
    assert compiled(txs) == reference(txs) == expected
    assert compiled(tuple(txs)) == expected  # any sized sequence
    assert all(type(tx_id) is bytes for tx_id in compiled(txs))


@pytest.mark.parametrize(
    "txs",
    [
        [b"ok", bytearray(b"mutable")],
        [b"ok", memoryview(b"view")],
        [b"ok", "text"],
        [None],
        (tx for tx in [b"a generator"]),  # one generator, consumed by neither (len first)
        7,
    ],
)
def test_twins_refuse_the_same_inputs(twins: tuple[IdsFn, IdsFn], txs: Any) -> None:
    compiled, reference = twins
    assert outcome(compiled, txs) is TypeError
    assert outcome(reference, txs) is TypeError
