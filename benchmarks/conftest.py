"""Shared benchmark fixtures.

`impl` runs a benchmark once per twin: it is the twin module returned by
`emrchain._core.implementation(name)` for "cython" and "python". With ``CI=true`` (or ``CI=1``)
a twin that cannot be loaded fails the benchmark; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

# benchmarks/ is not a package, so plain `pytest benchmarks/` puts only this directory on
# sys.path; the repository root is needed for the shared generators in `tests.core.txgen`.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import emrchain._core as core  # noqa: E402 (needs the path above when run as plain `pytest`)


@pytest.fixture(scope="module", params=[core.CYTHON, core.PYTHON])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    try:
        return core.implementation(request.param)
    except ImportError as error:
        reason = f"{request.param} twin cannot be loaded: {error}"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
