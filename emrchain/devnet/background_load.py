"""A steady load for fault tests and soaks: anchors at a fixed rate from a background thread.

Each sender's transactions go to one node, in nonce order (`Devnet.submit`); a request that
fails (a node cut off, a timeout) is counted and the run goes on. What was accepted is known per
sender: a sender's transactions commit in nonce order, so when its last accepted one is
committed on a node, all its earlier ones are too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from emrchain.devnet.harness import Devnet
from emrchain.devnet.workload import iter_anchor_transactions
from emrchain.types import envelope
from emrchain.types.block import tx_ids

MAX_TRANSACTIONS = 100_000_000


def anchor_stream(chain_id: bytes, *, senders: int, seed: int) -> Iterator[bytes]:
    """An endless (for any run) stream of the workload's anchors; share one across loads so
    each sender's nonces go on from where the previous load stopped."""
    return iter_anchor_transactions(MAX_TRANSACTIONS, chain_id=chain_id, senders=senders, seed=seed)


class BackgroundLoad:
    """Submits `batch_txs` transactions every `interval_s` until stopped (a context manager)."""

    def __init__(
        self,
        network: Devnet,
        transactions: Iterator[bytes],
        *,
        batch_txs: int = 20,
        interval_s: float = 0.2,
    ) -> None:
        self._network = network
        self._transactions = transactions
        self._batch_txs = batch_txs
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.accepted = 0
        self.failed_requests = 0
        self.last_accepted: dict[bytes, str] = {}
        """Sender key -> id (hex) of its last accepted transaction."""

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            batch = [next(self._transactions) for _ in range(self._batch_txs)]
            try:
                accepted = set(self._network.submit(batch))
            except (OSError, ValueError, KeyError):
                self.failed_requests += 1
                continue
            for tx, tx_id in zip(batch, tx_ids(batch), strict=True):
                if tx_id.hex() in accepted:
                    self.accepted += 1
                    self.last_accepted[envelope.sender(tx)] = tx_id.hex()

    def start(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(60)

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_committed(self, nodes: list[int], timeout_s: float = 60.0) -> None:
        """Every sender's last accepted transaction is committed on every node of `nodes`."""
        last = list(self.last_accepted.values())
        for index in nodes:
            self._network.wait_committed(index, last, timeout_s=timeout_s)
