"""Bounded pool of admitted transactions: batch admission through the core, dedup, per-sender
nonce order, recheck after commit, reap for proposals and gossip cursors. No I/O.

See `pool.py` for the admission passes and the nonce, capacity and gossip rules.
"""

from emrchain.mempool.admission import Admission, AdmissionCode
from emrchain.mempool.config import MempoolConfig, MempoolConfigError
from emrchain.mempool.pool import (
    CommittedNonce,
    Mempool,
    MempoolStats,
    StatefulCheck,
    UpdateResult,
    VerifyTransactions,
)

__all__ = [
    "Admission",
    "AdmissionCode",
    "CommittedNonce",
    "Mempool",
    "MempoolConfig",
    "MempoolConfigError",
    "MempoolStats",
    "StatefulCheck",
    "UpdateResult",
    "VerifyTransactions",
]
