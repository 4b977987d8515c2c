"""Every record in committed state, read page by page from the node's
database: the replication reconciler's input, derived from the chain at each round, so nothing
it needs has to survive a restart."""

from __future__ import annotations

from emrchain.state import keys
from emrchain.state.emr.records import EmrRecord
from emrchain.store.database import ChainDatabase
from emrchain.store.state_scan import scan_state

RECORD_ID_BYTES = 32


def records_page(
    database: ChainDatabase, after: bytes = b"", limit: int = 1_000
) -> list[EmrRecord]:
    """Up to `limit` anchored records (tombstones included) with record id > `after`."""
    start = keys.emr_record_key(after) if after else b""
    return [
        EmrRecord.decode(key[len(keys.EMR_RECORD_PREFIX) :], value)
        for key, value in scan_state(database, keys.EMR_RECORD_PREFIX, start, limit)
        if len(key) == len(keys.EMR_RECORD_PREFIX) + RECORD_ID_BYTES
    ]
