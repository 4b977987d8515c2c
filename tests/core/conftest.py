"""Fixtures giving both twins of `check_transactions` (and loaders for `decode_accepted`).

The compiled twin is required in CI: with ``CI=true`` (or ``CI=1``) a missing extension makes
the tests that need it fail; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, cast

import pytest

import emrchain._core as core
from tests.ci import running_in_ci

CheckFn = Callable[..., tuple[bytes, list[bytes]]]

# The module each twin's check_transactions lives in. The selector (`implementation`) imports
# all three modules of a twin at once; if only a sibling (merkle, ed25519) is missing, these
# tests still exercise the one module they are about.
_MODULES = {core.CYTHON: "emrchain._core._txcheck", core.PYTHON: "emrchain._core.reference.txcheck"}


def import_twin_module(module: str, *, compiled: bool) -> ModuleType:
    """Import one twin's module. A missing compiled module skips the test, except in CI
    (CI=true/1) where it fails; a missing pure-Python module always fails."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        reason = f"{module} cannot be imported ({error})"
        if compiled:
            reason += "; build it with `python setup.py build_ext --inplace`"
        if not compiled or running_in_ci():
            pytest.fail(reason)
        pytest.skip(reason)


def load_function(name: str, function: str) -> Callable[..., Any]:
    """`implementation(name).<function>` for a function of `_txcheck`/`txcheck`; skip (fail in
    CI) if its module is missing."""
    try:
        return cast(Callable[..., Any], getattr(core.implementation(name), function))
    except ImportError:
        pass
    module = import_twin_module(_MODULES[name], compiled=name == core.CYTHON)
    return cast(Callable[..., Any], getattr(module, function))


def load_check(name: str) -> CheckFn:
    """`implementation(name).check_transactions`; skip (fail in CI) if its module is missing."""
    return cast(CheckFn, load_function(name, "check_transactions"))


@pytest.fixture(scope="session")
def cython_check() -> CheckFn:
    return load_check(core.CYTHON)


@pytest.fixture(scope="session")
def python_check() -> CheckFn:
    return load_check(core.PYTHON)


@pytest.fixture(scope="session", params=[core.CYTHON, core.PYTHON])
def check(request: pytest.FixtureRequest) -> CheckFn:
    """Each twin in turn (explicit-example tests run against both)."""
    return load_check(request.param)


@pytest.fixture(scope="session")
def twins(cython_check: CheckFn, python_check: CheckFn) -> tuple[CheckFn, CheckFn]:
    """(compiled, reference) for differential tests."""
    return cython_check, python_check
