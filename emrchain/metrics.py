"""Event metrics: histograms and counters observed where the event already happens.

Everything else a scrape shows is read from the node's own counters at scrape time
(`emrchain/node/metrics.py`), so the hot path pays only for what is declared here: one
`observe()` or `inc()` per block, per consensus step, per RPC request, per Redis/IPFS/HSM call.
The metrics are created unregistered; a node registers them in the registry it serves
(`register_event_metrics`), so two nodes in one test process do not collide in the library's
global registry. Names, labels and units: `docs/spec/metrics.md`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram

NAMESPACE = "emrchain"

# Fast local operations (a consensus step, a Redis get) up to slow ones (a block write that
# waits for a memtable flush, an IPFS call with retries).
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BLOCK_TXS_BUCKETS = (0, 1, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000)
ROUNDS_BUCKETS = (1, 2, 3, 4, 6, 10)

STEP_DURATION = Histogram(
    "consensus_step_duration_seconds",
    "Time spent in each consensus step, observed when the step is left.",
    ["step"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS_S,
    registry=None,
)
BLOCK_INTERVAL = Histogram(
    "consensus_block_interval_seconds",
    "Wall-clock time between two blocks committed by this node.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS_S,
    registry=None,
)
BLOCK_ROUNDS = Histogram(
    "consensus_block_rounds",
    "Rounds it took to decide each committed block (its commit certificate's round + 1).",
    namespace=NAMESPACE,
    buckets=ROUNDS_BUCKETS,
    registry=None,
)
BLOCK_TXS = Histogram(
    "consensus_block_txs",
    "Transactions in each committed block.",
    namespace=NAMESPACE,
    buckets=BLOCK_TXS_BUCKETS,
    registry=None,
)
MISSED_VOTES = Counter(
    "consensus_missed_votes",
    "Committed blocks whose commit certificate lacks this validator's precommit.",
    ["validator"],
    namespace=NAMESPACE,
    registry=None,
)
EVIDENCE_DETECTED = Counter(
    "consensus_evidence_detected",
    "Equivocations (conflicting votes of one validator) this node detected.",
    namespace=NAMESPACE,
    registry=None,
)
BLOCK_EXECUTION = Histogram(
    "block_execution_seconds",
    "Executing a decided block against the state (before it is written).",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS_S,
    registry=None,
)
STORE_WRITE = Histogram(
    "store_write_seconds",
    "The LevelDB write (fsync included) of a block, its results and state changes.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS_S,
    registry=None,
)
BLOCK_COMMIT = Histogram(
    "block_commit_seconds",
    "From a decision to the block being durable and applied: execution, write, mempool update.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS_S,
    registry=None,
)
RPC_DURATION = Histogram(
    "rpc_request_duration_seconds",
    "RPC requests by route template, method and status code.",
    ["route", "method", "status"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS_S,
    registry=None,
)
RPC_REFUSED = Counter(
    "rpc_refused_requests",
    "RPC requests refused with 401, 403 or 429, by status and error code (the reason).",
    ["status", "reason"],
    namespace=NAMESPACE,
    registry=None,
)
DEPENDENCY_CALL = Histogram(
    "dependency_call_duration_seconds",
    "Calls to an external dependency (ipfs, redis, hsm) by operation, failures included.",
    ["dependency", "operation"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS_S,
    registry=None,
)
DEPENDENCY_ERRORS = Counter(
    "dependency_call_errors",
    "Failed calls to an external dependency (ipfs, redis, hsm) by operation.",
    ["dependency", "operation"],
    namespace=NAMESPACE,
    registry=None,
)
CIPHERTEXT_CACHE = Counter(
    "records_cache_lookups",
    "Ciphertext cache lookups on the read path, by result (hit or miss).",
    ["result"],
    namespace=NAMESPACE,
    registry=None,
)

EVENT_METRICS = (
    STEP_DURATION,
    BLOCK_INTERVAL,
    BLOCK_ROUNDS,
    BLOCK_TXS,
    MISSED_VOTES,
    EVIDENCE_DETECTED,
    BLOCK_EXECUTION,
    STORE_WRITE,
    BLOCK_COMMIT,
    RPC_DURATION,
    RPC_REFUSED,
    DEPENDENCY_CALL,
    DEPENDENCY_ERRORS,
    CIPHERTEXT_CACHE,
)


def register_event_metrics(registry: CollectorRegistry) -> None:
    for metric in EVENT_METRICS:
        registry.register(metric)


@contextmanager
def dependency_call(dependency: str, operation: str) -> Iterator[None]:
    """Time one call to `dependency`; an exception out of it counts as an error."""
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        DEPENDENCY_ERRORS.labels(dependency, operation).inc()
        raise
    finally:
        DEPENDENCY_CALL.labels(dependency, operation).observe(time.perf_counter() - started)
