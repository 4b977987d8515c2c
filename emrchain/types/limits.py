"""Decoding limits: every count and length a decoder accepts is capped by one of these.

Nodes take them from their config file; the defaults below suit a hospital consortium.
Hard ceilings (the `*_CEILING` constants) are what the wire format itself can express.
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain import schema

MAX_VALIDATORS_CEILING = 1_000
MAX_ROUND = (1 << 31) - 1
MAX_TOTAL_VOTING_POWER = 1 << 60


@dataclass(frozen=True, slots=True)
class Limits:
    max_tx_bytes: int = 4_096
    max_block_txs: int = 20_000
    max_block_bytes: int = 16 * 1024 * 1024
    max_validators: int = 150
    max_evidence_per_block: int = 64

    def validate_basic(self) -> None:
        if not schema.ENVELOPE_FIXED_BYTES <= self.max_tx_bytes <= schema.TX_MAX_BYTES_LIMIT:
            raise ValueError(
                f"max_tx_bytes must be within {schema.ENVELOPE_FIXED_BYTES}.."
                f"{schema.TX_MAX_BYTES_LIMIT}"
            )
        if not 1 <= self.max_block_txs <= 1_000_000:
            raise ValueError("max_block_txs must be within 1..1000000")
        if not self.max_tx_bytes <= self.max_block_bytes <= 1 << 30:
            raise ValueError("max_block_bytes must be within max_tx_bytes..1 GiB")
        if not 1 <= self.max_validators <= MAX_VALIDATORS_CEILING:
            raise ValueError(f"max_validators must be within 1..{MAX_VALIDATORS_CEILING}")
        if not 0 <= self.max_evidence_per_block <= 10_000:
            raise ValueError("max_evidence_per_block must be within 0..10000")


DEFAULT_LIMITS = Limits()
