"""Mempool admission: 20,000 signed ~265-byte ANCHOR_RECORD transactions from 200 senders,
admitted in batches of 2,000 into an empty pool and then reaped for one proposal.

Admission is bounded by Ed25519 verification (one `verify_transactions` call per batch, all
cores); the second benchmark re-submits the same transactions (re-gossip) to show what the
duplicate check saves. Throughput in tx/s is printed and stored in `extra_info`.

Run: .venv/bin/python -m pytest benchmarks/test_bench_mempool.py --benchmark-only -s
"""

from __future__ import annotations

import time

import pytest

from emrchain import _core
from emrchain.devnet.workload import DEFAULT_CHAIN_ID, anchor_transactions
from emrchain.mempool import Mempool, MempoolConfig

TX_COUNT = 20_000
SENDERS = 200
BATCH_TXS = 2_000
ROUNDS = 3


@pytest.fixture(scope="module")
def workload() -> list[bytes]:
    """Signed up front: signing is the client's cost, not the node's."""
    return anchor_transactions(TX_COUNT, senders=SENDERS)


def new_pool() -> Mempool:
    return Mempool(MempoolConfig(), DEFAULT_CHAIN_ID, lambda sender: 0)


def admit_all(pool: Mempool, txs: list[bytes]) -> int:
    """Admit `txs` in batches; return how many were accepted."""
    accepted = 0
    for start in range(0, len(txs), BATCH_TXS):
        accepted += sum(
            result.accepted for result in pool.admit_batch(txs[start : start + BATCH_TXS])
        )
    return accepted


def report(benchmark, label: str, seconds: list[float]) -> float:
    """Best round's throughput: printed, and kept in the benchmark's JSON."""
    rate = TX_COUNT / min(seconds)
    benchmark.extra_info[f"{label}_txs_per_second"] = round(rate)
    shape = f"{TX_COUNT} txs, batches of {BATCH_TXS}, {_core.IMPLEMENTATION} core"
    print(f"\n{label}: {rate:,.0f} tx/s ({shape})")
    return rate


def test_admit_and_reap_20k(benchmark, workload: list[bytes]) -> None:
    benchmark.group = "mempool 20k anchors"
    admit_seconds: list[float] = []
    reap_seconds: list[float] = []

    def run(pool: Mempool) -> tuple[int, list[bytes]]:
        started = time.perf_counter()
        accepted = admit_all(pool, workload)
        admitted = time.perf_counter()
        reaped = pool.reap(TX_COUNT, 1 << 30)
        admit_seconds.append(admitted - started)
        reap_seconds.append(time.perf_counter() - admitted)
        return accepted, reaped

    accepted, reaped = benchmark.pedantic(
        run, setup=lambda: ((new_pool(),), {}), rounds=ROUNDS, iterations=1
    )
    assert accepted == TX_COUNT
    assert sorted(reaped) == sorted(workload)
    report(benchmark, "admission", admit_seconds)
    report(benchmark, "reap", reap_seconds)


def test_readmit_20k_duplicates(benchmark, workload: list[bytes]) -> None:
    benchmark.group = "mempool 20k anchors"
    pool = new_pool()
    assert admit_all(pool, workload) == TX_COUNT
    seconds: list[float] = []

    def run() -> int:
        started = time.perf_counter()
        accepted = admit_all(pool, workload)
        seconds.append(time.perf_counter() - started)
        return accepted

    assert benchmark.pedantic(run, rounds=ROUNDS, iterations=1) == 0
    assert pool.stats().signatures_verified == TX_COUNT  # none verified twice
    report(benchmark, "duplicate_admission", seconds)
