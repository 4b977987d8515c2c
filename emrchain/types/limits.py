"""Decoding limits: every count and length a decoder accepts is capped by one of these.

Nodes take them from their config file; the defaults below suit a hospital consortium.
The `*_CEILING` constants are the greatest values a config or genesis may choose: sanity bounds
on memory and work, far below what the wire's length prefixes could express. `MAX_ROUND` is the
wire's own bound (a round is `u32[0..2^31-1]` in votes, proposals and commits, encoding.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain import schema

MAX_VALIDATORS_CEILING = 1_000
MAX_BLOCK_TXS_CEILING = 1_000_000
MAX_BLOCK_BYTES_CEILING = 1 << 30
MAX_EVIDENCE_PER_BLOCK_CEILING = 10_000
"""The greatest values of the `Limits` fields (`[limits]` in the node config, `consensus_params`
in genesis); the config declaration of each reads its range from here."""
MAX_ROUND = (1 << 31) - 1
MAX_TOTAL_VOTING_POWER = 1 << 60
MAX_GOSSIP_TXS = 5_000
"""Most transactions a node decodes in one mempool gossip message (`node/messages.py`); what
it sends is at most `[mempool] max_gossip_txs`, which cannot exceed this."""


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
        if not 1 <= self.max_block_txs <= MAX_BLOCK_TXS_CEILING:
            raise ValueError(f"max_block_txs must be within 1..{MAX_BLOCK_TXS_CEILING}")
        if not self.max_tx_bytes <= self.max_block_bytes <= MAX_BLOCK_BYTES_CEILING:
            raise ValueError(
                f"max_block_bytes must be within max_tx_bytes..{MAX_BLOCK_BYTES_CEILING}"
            )
        if not 1 <= self.max_validators <= MAX_VALIDATORS_CEILING:
            raise ValueError(f"max_validators must be within 1..{MAX_VALIDATORS_CEILING}")
        if not 0 <= self.max_evidence_per_block <= MAX_EVIDENCE_PER_BLOCK_CEILING:
            raise ValueError(
                f"max_evidence_per_block must be within 0..{MAX_EVIDENCE_PER_BLOCK_CEILING}"
            )


DEFAULT_LIMITS = Limits()
