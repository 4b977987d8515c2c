"""`unsafe_reset_all`: delete a node's chain data, keep its configuration and keys.

Unsafe because, unless `keep_signing_state` is set, the double-sign guard forgets what this
validator already signed; only use it on a devnet or when the whole chain restarts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from emrchain.store.consensus_wal import remove_wal
from emrchain.store.database import ChainDatabase, database_path
from emrchain.store.signing_state import SigningStateStore


def unsafe_reset_all(home: Path | str, *, keep_signing_state: bool = False) -> Path:
    """Delete `<home>/data/chain.db` (blocks, state, index; the signing state too unless
    `keep_signing_state`) and the consensus WAL (`<home>/data/consensus-wal`, messages of the
    chain's heights). Refuses with StoreLockedError while a node has the database open.
    Files outside the database (config, keys) are never touched. Returns the deleted path."""
    path = database_path(home)
    saved: bytes | None = None
    if path.exists():
        # Opening takes the lock: a running node makes this fail before anything is deleted.
        with ChainDatabase.open(home) as database:
            if keep_signing_state:
                saved = SigningStateStore(database).load()
        shutil.rmtree(path)
        remove_wal(home)
    if saved is not None:
        with ChainDatabase.open(home) as database:
            SigningStateStore(database).save(saved)
    return path
