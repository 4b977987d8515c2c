"""Ordered reads of a range of committed application state, for services that must enumerate
what the chain holds (the replication reconciler lists every record).

The `CommittedStateView` the application reads through answers single keys only: consensus
never enumerates. This module pages through one application key prefix of the same committed
state, in key order, each page read from one LevelDB snapshot (a page never sees half a
block; consecutive pages may straddle a commit, which a caller that pages again later
tolerates).
"""

from __future__ import annotations

import plyvel

from emrchain.store import layout
from emrchain.store.database import ChainDatabase, translate_error

MAX_PAGE_ENTRIES = 10_000


def scan_state(
    database: ChainDatabase, prefix: bytes, after: bytes = b"", limit: int = 1_000
) -> list[tuple[bytes, bytes]]:
    """Up to `limit` (application key, value) pairs under `prefix` with key > `after`, in key
    order (`after` empty: from the first)."""
    if not 1 <= limit <= MAX_PAGE_ENTRIES:
        raise ValueError(f"limit must be 1..{MAX_PAGE_ENTRIES}")
    if after and not after.startswith(prefix):
        raise ValueError("`after` must lie under `prefix`")
    stored_prefix = layout.STATE + prefix
    start = layout.STATE + after + b"\x00" if after else stored_prefix
    entries: list[tuple[bytes, bytes]] = []
    try:
        with database.db.iterator(start=start, stop=_end_of(stored_prefix)) as iterator:
            for key, value in iterator:
                entries.append((key[len(layout.STATE) :], value))
                if len(entries) == limit:
                    break
    except plyvel.Error as error:
        raise translate_error(error, database.path) from None
    return entries


def _end_of(prefix: bytes) -> bytes:
    """The least key above every key that starts with `prefix`."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        raise ValueError("a prefix of 0xff bytes only has no end key")
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))
