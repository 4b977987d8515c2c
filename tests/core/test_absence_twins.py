"""`AbsenceFilter`: the compiled twin (`_core/_absence.pyx`) and the pure one
(`_core/reference/absence.py`) set and test the same bits, so every question gets the same answer
from both, and they refuse the same constructor arguments with the same errors. The store's
exactness (no key present is ever called absent) is tested in `tests/store/test_absence.py`
against whichever twin loaded; this file makes that test cover both."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain._core.reference import absence as pure
from tests.core.conftest import import_twin_module

PREFIXES = (b"R", b"\x07")


@pytest.fixture(scope="module")
def compiled_class() -> Any:
    return import_twin_module("emrchain._core._absence", compiled=True).AbsenceFilter


def _pair(compiled_class: Any, size: int) -> tuple[Any, Any]:
    return compiled_class(size, PREFIXES), pure.AbsenceFilter(size, PREFIXES)


# Keys under both prefixes, outside them, and the edge cases (empty, one byte).
state_keys = st.one_of(
    st.binary(max_size=1),
    st.tuples(st.sampled_from([*PREFIXES, b"\x00", b"S"]), st.binary(max_size=40)).map(
        lambda parts: parts[0] + parts[1]
    ),
)


@settings(max_examples=150, deadline=None)
@given(added=st.lists(state_keys, max_size=400), asked=st.lists(state_keys, max_size=200))
def test_twins_answer_alike(compiled_class: Any, added: list[bytes], asked: list[bytes]) -> None:
    # 1 KiB = 16 blocks: small enough that hundreds of keys fill it and answers are mixed.
    compiled, python = _pair(compiled_class, 1024)
    compiled.add_all(iter(added))
    python.add_all(iter(added))
    assert compiled.keys_added == python.keys_added == len(added)
    for key in [*added, *asked]:
        assert compiled.certainly_absent(key) == python.certainly_absent(key), key


def test_twins_agree_across_the_load_range(compiled_class: Any) -> None:
    compiled, python = _pair(compiled_class, 1 << 12)
    answers = []
    for _ in range(8):  # from empty to eight times the designed load
        batch = [PREFIXES[0] + os.urandom(32) for _ in range(2048)]
        compiled.add_all(batch)
        python.add_all(batch)
        probes = [PREFIXES[1] + os.urandom(32) for _ in range(2000)]
        verdicts = [compiled.certainly_absent(key) for key in probes]
        assert verdicts == [python.certainly_absent(key) for key in probes]
        answers.append(sum(verdicts))
    assert answers[0] > answers[-1]  # the filter fills up, and both twins degrade alike


def test_covered_puts_and_single_add_agree(compiled_class: Any) -> None:
    compiled, python = _pair(compiled_class, 1024)
    writes = {b"Rput": b"v", b"Rdel": None, b"\x07x": b"", b"Sother": b"v", b"": b"v"}
    assert compiled.covered_puts(writes) == python.covered_puts(writes) == (b"Rput", b"\x07x")
    compiled.add(b"Rput")
    python.add(b"Rput")
    assert not compiled.certainly_absent(b"Rput") and not python.certainly_absent(b"Rput")
    assert compiled.prefixes == python.prefixes == frozenset(PREFIXES)


def _error(factory: Any, *arguments: Any) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as caught:
        factory(*arguments)
    return caught.type, str(caught.value)


@pytest.mark.parametrize(
    "arguments",
    [(0, PREFIXES), (1000, PREFIXES), (1 << 31, PREFIXES), (1024, []), (1024, [b"ab"]),
     (1024, ["R"]), (1024, [b""])],
)
def test_twins_refuse_the_same_arguments(compiled_class: Any, arguments: tuple[Any, Any]) -> None:
    assert _error(compiled_class, *arguments) == _error(pure.AbsenceFilter, *arguments)


@pytest.mark.parametrize("key", [bytearray(b"Rx"), ["R"], None])
def test_twins_treat_other_key_types_alike(compiled_class: Any, key: Any) -> None:
    compiled, python = _pair(compiled_class, 1024)
    try:
        expected: Any = python.certainly_absent(key)
    except Exception as error:  # comparing exception types is the point
        assert _error(compiled.certainly_absent, key)[0] is type(error)
    else:
        assert compiled.certainly_absent(key) == expected
