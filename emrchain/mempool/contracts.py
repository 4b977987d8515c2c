"""The mempool's contracts with the node: callables it is given and results it returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

StatefulCheck = Callable[[Sequence[bytes]], Sequence[tuple[str, str]]]
"""Judges a batch of raw transactions against the latest committed state and the pool's
pending transactions; returns one (code, reason) per transaction, code "ok" to admit. It must
not judge the nonce: the mempool owns nonce order against committed + pending. Codes must
match [a-z][a-z0-9_]{0,47}.

What is pending before a transaction: the sender's pending transactions with a lower nonce
(`Mempool.last_pending` gives the newest) and the batch's earlier items. At admission every
pending transaction of the sender precedes the new one; at a recheck after a commit the
transaction judged is itself pending, so a check that reads pending state must compare nonces
(judge it on what comes before it, never on itself or later ones). The node's check is
`emrchain/state/emr/sender_admission.py`."""

CommittedNonce = Callable[[bytes], int]
"""Sender public key -> its last committed nonce (0 before its first transaction)."""

VerifyTransactions = Callable[[Sequence[bytes], int], bytes]
"""Signature of `_core.verify_transactions(txs, threads)`: one byte per tx, 1 = valid."""


@dataclass(frozen=True, slots=True)
class MempoolStats:
    """A snapshot of the pool's size and counters."""

    size_txs: int
    size_bytes: int
    senders: int
    latest_sequence: int
    admitted_txs: int
    refused_txs_by_code: dict[str, int]
    signatures_verified: int
    signature_cache_hits: int
    seen_cache_entries: int
    log_entries: int


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What `update` removed."""

    committed_txs: int
    """Pending transactions that the block included."""
    stale_txs: int
    """Pending transactions whose nonce the block used for another transaction."""
    recheck_dropped_txs: int
    """Transactions the stateful recheck refused, plus the later nonces of their senders."""
    dropped_tx_ids: tuple[bytes, ...]
    """Ids of the stale and recheck-dropped transactions (not the committed ones)."""
