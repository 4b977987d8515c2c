"""Ed25519 verification of 20,000 signatures: compiled verify_batch on all cores (threads=0)
vs the pure twin, a single-threaded PyNaCl loop. The compiled single-thread figure is also
measured so the per-core speed-up can be told apart from the threading gain.

Run: .venv/bin/python -m pytest benchmarks/test_bench_verify.py --benchmark-only
(`impl`, one run per twin, comes from benchmarks/conftest.py.)
"""

from __future__ import annotations

import hashlib
import os
from types import ModuleType

import pytest
from nacl.signing import SigningKey

import emrchain._core as core

ITEMS = 20_000
SENDERS = 200
MESSAGE_BYTES = 190  # an anchor transaction without its signature is about this long


@pytest.fixture(scope="module")
def batch() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """20,000 valid signatures by 200 keys over distinct 190-byte messages (signed up front)."""
    signers = [SigningKey(hashlib.sha256(b"bench-%d" % i).digest()) for i in range(SENDERS)]
    keys = [bytes(signers[i % SENDERS].verify_key) for i in range(ITEMS)]
    messages = [hashlib.sha512(b"%d" % i).digest() * 3 for i in range(ITEMS)]
    messages = [m[:MESSAGE_BYTES] for m in messages]
    sigs = [signers[i % SENDERS].sign(m).signature for i, m in enumerate(messages)]
    return keys, messages, sigs


def _run(benchmark, impl: ModuleType, batch: tuple, threads: int) -> None:
    benchmark.group = "verify_batch 20k signatures"
    benchmark.extra_info.update(items=ITEMS, threads=threads, cpu_count=os.cpu_count())
    # The pure twin needs about a second per round: a few rounds are enough.
    result = benchmark.pedantic(
        impl.verify_batch, args=(*batch, threads), rounds=5, iterations=1, warmup_rounds=1
    )
    assert result == b"\x01" * ITEMS


def test_verify_batch_20k(benchmark, impl: ModuleType, batch: tuple) -> None:
    _run(benchmark, impl, batch, threads=0)


def test_verify_batch_20k_compiled_one_thread(benchmark, batch: tuple) -> None:
    # Only the compiled twin has threads; this isolates its per-core speed from the threading.
    _run(benchmark, core.implementation(core.CYTHON), batch, threads=1)
