"""check_transactions on 20,000 valid ~250-byte ANCHOR_RECORD transactions, both twins.

Run: .venv/bin/python -m pytest benchmarks/test_bench_txcheck.py --benchmark-only
Per transaction = mean / 20,000.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.core import txgen

ITEMS = 20_000
MAX_TX_BYTES = 4096


@pytest.fixture(scope="module")
def anchor_txs() -> list[bytes]:
    """Signed up front (distinct nonces and records), outside the measured window."""
    return [txgen.make_anchor_tx(nonce, seed=1 + nonce % 50) for nonce in range(ITEMS)]


def test_check_transactions_20k(benchmark, impl: ModuleType, anchor_txs: list[bytes]) -> None:
    benchmark.group = "check_transactions 20k anchors"
    benchmark.extra_info.update(
        items=ITEMS,
        tx_bytes_mean=sum(map(len, anchor_txs)) / ITEMS,
        implementation=impl.IMPLEMENTATION,
    )
    verdicts, ids = benchmark(impl.check_transactions, anchor_txs, txgen.CHAIN_ID, MAX_TX_BYTES)
    assert verdicts == bytes(ITEMS)
    assert len(ids) == ITEMS
