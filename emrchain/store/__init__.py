"""Durable storage (LevelDB via plyvel): blocks, commit certificates, the tx index, application
state and the consensus signing state, in one database per node home (`docs/spec/state.md` §5);
the consensus WAL in files beside it (`consensus_wal.py`).
"""

from emrchain.store.block_store import BlockStore, Head, PreparedCommit, RestoredHead, TxProof
from emrchain.store.committed_view import CommittedStateView
from emrchain.store.consensus_wal import ConsensusWal
from emrchain.store.database import ChainDatabase, DatabaseOptions, database_path
from emrchain.store.errors import (
    BlockRefusedError,
    NotInitializedError,
    StoreCorruptionError,
    StoreError,
    StoreLockedError,
)
from emrchain.store.reconcile import StartupAction, StoreStatus, reconcile
from emrchain.store.reset import unsafe_reset_all
from emrchain.store.signing_state import MAX_SIGNING_STATE_BYTES, SigningStateStore

__all__ = [
    "MAX_SIGNING_STATE_BYTES",
    "BlockRefusedError",
    "BlockStore",
    "ChainDatabase",
    "CommittedStateView",
    "ConsensusWal",
    "DatabaseOptions",
    "Head",
    "NotInitializedError",
    "PreparedCommit",
    "RestoredHead",
    "SigningStateStore",
    "StartupAction",
    "StoreCorruptionError",
    "StoreError",
    "StoreLockedError",
    "StoreStatus",
    "TxProof",
    "database_path",
    "reconcile",
    "unsafe_reset_all",
]
