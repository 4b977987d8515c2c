"""Merkle root of 20,000 32-byte leaves (a block's tx ids), compiled vs pure-Python twin.

Run: .venv/bin/python -m pytest benchmarks/test_bench_merkle.py --benchmark-only
(`impl`, one run per twin, comes from benchmarks/conftest.py.)
"""

from __future__ import annotations

import hashlib
from types import ModuleType

import pytest

LEAVES = 20_000


@pytest.fixture(scope="module")
def leaves() -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(LEAVES)]


def test_merkle_root_20k(benchmark, impl: ModuleType, leaves: list[bytes]) -> None:
    benchmark.group = "merkle_root 20k leaves"
    benchmark.extra_info["items"] = LEAVES
    root = benchmark(impl.merkle_root, leaves)
    assert len(root) == 32
