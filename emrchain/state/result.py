"""What executing a block produces: state writes, the app hash, per-transaction results and
validator-set changes — and the canonical encoding the app hash is computed over.

The definitions live in `emrchain/types/execution.py`, below both this package and the store
that persists them; they are re-exported here, where the application's modules import them.
"""

from __future__ import annotations

from emrchain.types.execution import (
    GENESIS_PREVIOUS_APP_HASH,
    MAX_TX_RESULT_MESSAGE_BYTES,
    MAX_WRITES,
    WRITE_DELETE,
    WRITE_PUT,
    ExecutionResult,
    TxResult,
    compute_app_hash,
    decode_writes,
    encode_writes,
    writes_digest,
)

__all__ = [
    "GENESIS_PREVIOUS_APP_HASH",
    "MAX_TX_RESULT_MESSAGE_BYTES",
    "MAX_WRITES",
    "WRITE_DELETE",
    "WRITE_PUT",
    "ExecutionResult",
    "TxResult",
    "compute_app_hash",
    "decode_writes",
    "encode_writes",
    "writes_digest",
]
