"""`SigningStateStore`: the consensus signing guard's state, durable before any signature.

The guard defines the encoding; the store keeps the opaque bytes under one key and writes them
with sync=True, so once `save` returns the state survives a crash or power loss.
"""

from __future__ import annotations

import plyvel

from emrchain.store import layout
from emrchain.store.database import ChainDatabase, translate_error

MAX_SIGNING_STATE_BYTES = 4_096
"""The guard's state is a few fields (height, round, step, block id, signature); 4 KiB caps it."""


class SigningStateStore:
    def __init__(self, database: ChainDatabase) -> None:
        self._database = database

    def load(self) -> bytes | None:
        """The last saved state, or None if nothing was ever saved."""
        return self._database.get(layout.SIGNING_STATE)

    def save(self, encoded: bytes) -> None:
        """Persist `encoded` durably (fsync) before returning."""
        if not isinstance(encoded, bytes):
            raise TypeError(f"signing state must be bytes, not {type(encoded).__name__}")
        if not 1 <= len(encoded) <= MAX_SIGNING_STATE_BYTES:
            raise ValueError(f"signing state must be 1..{MAX_SIGNING_STATE_BYTES} bytes")
        try:
            self._database.db.put(layout.SIGNING_STATE, encoded, sync=True)
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None
