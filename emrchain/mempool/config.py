"""Mempool limits: every collection the mempool keeps is bounded by one of these fields.

Each field is a node setting declared in `emrchain/config/node.py` (`[mempool]`, and
`[limits] max_tx_bytes`): the defaults and the accepted ranges are read from there, so the
mempool accepts exactly what the config loader accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from emrchain.config.node import LIMITS_SETTINGS, MempoolSection
from emrchain.config.settings import check_declared, settings_of
from emrchain.types.limits import DEFAULT_LIMITS


class MempoolConfigError(ValueError):
    """A config field is out of range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"mempool config: {field} {message}")


@dataclass(frozen=True, slots=True)
class MempoolConfig:
    """Sizes and limits of one node's mempool. Call `validate()` before use (Mempool does).

    The node builds it from `[mempool]` (`node/wiring.py`); the meaning of each field is the
    doc of its setting.
    """

    max_txs: int = MempoolSection.max_txs
    """A full pool refuses new transactions with `mempool_full`."""
    max_bytes: int = MempoolSection.max_bytes
    max_tx_bytes: int = DEFAULT_LIMITS.max_tx_bytes
    """Longest transaction admitted (checked by the core as TOO_LARGE)."""
    max_batch_txs: int = MempoolSection.max_batch_txs
    """A longer `admit_batch` argument is refused whole with `batch_too_large`."""
    max_txs_per_sender: int = MempoolSection.max_txs_per_sender
    """A value above max_txs simply never binds."""
    recheck_batch_txs: int = MempoolSection.recheck_batch_txs
    seen_cache_entries: int = MempoolSection.seen_cache_entries
    verify_threads: int = MempoolSection.verify_threads

    def validate(self) -> None:
        """Raise MempoolConfigError naming the first bad field; return None if all are valid."""
        try:
            check_declared(MEMPOOL_SETTINGS, self)
        except ValueError as error:
            field, message = str(error).split(" ", 1)
            raise MempoolConfigError(field, message) from None
        if self.max_bytes < self.max_tx_bytes:
            raise MempoolConfigError(
                "max_bytes",
                f"must be at least max_tx_bytes ({self.max_tx_bytes}), got {self.max_bytes}",
            )


MEMPOOL_SETTINGS = {
    field.name: settings_of(MempoolSection).get(field.name) or LIMITS_SETTINGS[field.name]
    for field in fields(MempoolConfig)
}
"""The declaration of each field: `[mempool] <name>`, or `[limits] max_tx_bytes`."""
