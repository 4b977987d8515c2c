"""Mempool limits: every collection the mempool keeps is bounded by one of these fields."""

from __future__ import annotations

from dataclasses import dataclass, fields

from emrchain import schema
from emrchain.types.limits import DEFAULT_LIMITS

MAX_VERIFY_THREADS = 256
"""The core's own ceiling for `verify_transactions(threads=...)`."""


class MempoolConfigError(ValueError):
    """A config field is out of range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"mempool config: {field} {message}")


@dataclass(frozen=True, slots=True)
class MempoolConfig:
    """Sizes and limits of one node's mempool. Call `validate()` before use (Mempool does)."""

    max_txs: int = 50_000
    """Pending transactions at most; a full pool refuses new ones with `mempool_full`."""
    max_bytes: int = 64 * 1024 * 1024
    """Sum of the pending transactions' lengths at most."""
    max_tx_bytes: int = DEFAULT_LIMITS.max_tx_bytes
    """Longest transaction admitted (checked by the core as TOO_LARGE)."""
    max_batch_txs: int = 10_000
    """Longest `admit_batch` argument; a longer one is refused whole with `batch_too_large`."""
    max_txs_per_sender: int = 1_000
    """Pending transactions of one sender at most, so one key cannot fill the pool (a value
    above max_txs simply never binds)."""
    recheck_batch_txs: int = 2_000
    """Transactions per call of the stateful check when the pool is rechecked after a commit."""
    seen_cache_entries: int = 200_000
    """Tx ids remembered as verified, bad-signature or committed (LRU), so a re-gossiped or
    resubmitted transaction is not verified twice."""
    verify_threads: int = 0
    """Threads for batched Ed25519 verification; 0 means all cores."""

    def validate(self) -> None:
        """Raise MempoolConfigError naming the first bad field; return None if all are valid."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise MempoolConfigError(spec.name, f"must be an int, got {type(value).__name__}")
        minimum_tx_bytes = schema.ENVELOPE_FIXED_BYTES + 1  # a one-byte chain id, empty payload
        _check_range("max_tx_bytes", self.max_tx_bytes, minimum_tx_bytes, schema.TX_MAX_BYTES_LIMIT)
        _check_range("max_txs", self.max_txs, 1, 10_000_000)
        _check_range("max_bytes", self.max_bytes, self.max_tx_bytes, 1 << 34)
        _check_range("max_batch_txs", self.max_batch_txs, 1, 1_000_000)
        _check_range("max_txs_per_sender", self.max_txs_per_sender, 1, 10_000_000)
        _check_range("recheck_batch_txs", self.recheck_batch_txs, 1, 1_000_000)
        _check_range("seen_cache_entries", self.seen_cache_entries, 1, 100_000_000)
        _check_range("verify_threads", self.verify_threads, 0, MAX_VERIFY_THREADS)


def _check_range(name: str, value: int, minimum: int, maximum: int) -> None:
    if not minimum <= value <= maximum:
        raise MempoolConfigError(name, f"must be within {minimum}..{maximum}, got {value}")
