"""`LevelDbKeyVault`: custody copies of wrapped data keys in their own LevelDB.

The vault is a separate database directory from the chain's (`chain.db`): it holds secrets
(wrapped, but still key material) that never go into blocks, and it is erased, backed up and
rotated on a different schedule.

Key layout (fixed; every key starts with a one-byte keyspace tag):

    0x00 "layout"            -> u8 layout version (1)
    0x00 "erasures-through"  -> u64 BE height: the erasures of every block up to it are queued
                                (absent in a vault from before it; see `ErasureWorker.catch_up`)
    0x01 record_id (32 B)    -> version u8 (1) | kek_version u32 BE | length u8 | wrapped_key
    0x02 record_id | wrap SHA-256 (32 B) -> sealed box (80 B) of the data key for the patient
                                or a grantee, whose digest the chain holds (`records.md` §9)
    0x03 record_id (32 B)    -> CID text (ASCII), the erasure queue: records erased on chain
                                whose copies here are not yet all deleted
    0x04 study_id | query_id (32 B each) -> masked u8 | count u16 BE | count × u64 BE: this
                                organisation's contribution to a study query, kept until the
                                sponsor anchors the query's result (`analytics.md` §4)
    0xff                     -> empty: keeps erased wraps compactable (`_place_sentinel`)

Record ids are fixed-width, so LevelDB's byte order is record-id order and `iterate` can page
through every wrap for a key-encryption-key rotation. Writes are synced: a custody wrap that
is acknowledged survives a crash, because losing it can make a record unreadable for good.
"""

from __future__ import annotations

import struct
from pathlib import Path

import plyvel

from emrchain.storage.interfaces import (
    CustodyWrap,
    StorageError,
    StorageUnavailableError,
)

LAYOUT_KEY = b"\x00layout"
LAYOUT_VERSION = 1
ERASURE_CURSOR_KEY = b"\x00erasures-through"
NOTIFICATION_CURSOR_PREFIX = b"\x00notified-through/"
"""| destination name (ASCII, 1..64 bytes) -> the height through which the node's webhook
delivered (or was refused for good) every review event (`records/notifications.py`)."""
_HEIGHT = struct.Struct(">Q")
WRAP_KEYSPACE = b"\x01"
_AFTER_WRAP_KEYSPACE = b"\x02"
MEMBER_WRAP_KEYSPACE = b"\x02"
SENTINEL_KEY = b"\xff"
"""The last key of the vault, empty (see `_place_sentinel`)."""
ERASURE_QUEUE_KEYSPACE = b"\x03"
CONTRIBUTION_KEYSPACE = b"\x04"
MAX_CONTRIBUTION_LENGTH = 64
"""Coordinates of one contribution (a histogram has at most 64 bins)."""
_CONTRIBUTION_HEADER = struct.Struct(">BH")
SEALED_WRAP_BYTES = 80
DIGEST_BYTES = 32
MAX_CID_TEXT_BYTES = 128
RECORD_ID_BYTES = 32
VALUE_VERSION = 1
MAX_WRAPPED_KEY_BYTES = 128
"""An RFC 5649 wrap of a 32-byte key is 40 bytes; room for an HSM mechanism with more overhead."""
MAX_KEK_VERSION = 0xFFFF_FFFF
MAX_ITERATE_LIMIT = 10_000

_VALUE_HEADER = struct.Struct(">BIB")  # value version, kek_version, wrapped key length


class VaultCorruptedError(StorageError):
    """A vault entry that cannot be decoded (disk damage or a foreign database)."""


class LevelDbKeyVault:
    """A `KeyVault` over plyvel."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = plyvel.DB(str(self._path), create_if_missing=True, paranoid_checks=True)
        except plyvel.Error as error:
            raise StorageUnavailableError(
                f"key vault {self._path} cannot be opened (another process holding it?): "
                f"{_message(error)}"
            ) from None
        layout = self._db.get(LAYOUT_KEY)
        if layout is None:
            self._db.put(LAYOUT_KEY, bytes((LAYOUT_VERSION,)), sync=True)
        elif layout != bytes((LAYOUT_VERSION,)):
            self._db.close()
            raise VaultCorruptedError(
                f"key vault {self._path} has layout {layout.hex()}, this node reads "
                f"{LAYOUT_VERSION}"
            )
        if self._db.get(SENTINEL_KEY) is None:
            self._place_sentinel()

    def put(self, wrap: CustodyWrap) -> None:
        """Store (or replace, e.g. after rotation) the custody wrap of `wrap.record_id`."""
        _check_record_id(wrap.record_id)
        if not 1 <= wrap.kek_version <= MAX_KEK_VERSION:
            raise ValueError(f"kek_version must be 1..{MAX_KEK_VERSION}")
        if not isinstance(wrap.wrapped_key, bytes) or not (
            1 <= len(wrap.wrapped_key) <= MAX_WRAPPED_KEY_BYTES
        ):
            raise ValueError(f"wrapped_key must be 1..{MAX_WRAPPED_KEY_BYTES} bytes")
        value = (
            _VALUE_HEADER.pack(VALUE_VERSION, wrap.kek_version, len(wrap.wrapped_key))
            + wrap.wrapped_key
        )
        self._handle().put(WRAP_KEYSPACE + wrap.record_id, value, sync=True)

    def get(self, record_id: bytes) -> CustodyWrap | None:
        _check_record_id(record_id)
        value = self._handle().get(WRAP_KEYSPACE + record_id)
        return None if value is None else _decode(record_id, value)

    def delete(self, record_id: bytes) -> None:
        """Remove the custody wrap (erasure). Idempotent.

        LevelDB drops the old value from disk only when compaction rewrites its table, so
        erasure of the record also relies on destroying or rotating away the KEK that wrapped
        it.
        """
        _check_record_id(record_id)
        self._handle().delete(WRAP_KEYSPACE + record_id, sync=True)

    def iterate(self, after: bytes = b"", limit: int = 1000) -> list[CustodyWrap]:
        """Up to `limit` wraps with record id > `after`, in record-id order."""
        if after != b"":
            _check_record_id(after)
        if not 1 <= limit <= MAX_ITERATE_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_ITERATE_LIMIT}")
        wraps: list[CustodyWrap] = []
        with self._handle().iterator(
            start=WRAP_KEYSPACE + after, include_start=after == b"", stop=_AFTER_WRAP_KEYSPACE
        ) as entries:
            for key, value in entries:
                wraps.append(_decode(key[1:], value))
                if len(wraps) == limit:
                    break
        return wraps

    def put_member_wrap(self, record_id: bytes, wrap_sha256: bytes, sealed_wrap: bytes) -> None:
        """Keep a sealed box of the record's data key made for a member (the patient or a
        grantee), under the SHA-256 the chain holds of it."""
        _check_record_id(record_id)
        if len(wrap_sha256) != DIGEST_BYTES or len(sealed_wrap) != SEALED_WRAP_BYTES:
            raise ValueError(f"a member wrap is {SEALED_WRAP_BYTES} bytes under a 32-byte digest")
        key = MEMBER_WRAP_KEYSPACE + record_id + wrap_sha256
        self._handle().put(key, sealed_wrap, sync=True)

    def member_wrap(self, record_id: bytes, wrap_sha256: bytes) -> bytes | None:
        _check_record_id(record_id)
        return self._handle().get(MEMBER_WRAP_KEYSPACE + record_id + wrap_sha256)

    def delete_member_wraps(self, record_id: bytes) -> int:
        """Remove every member wrap of the record (erasure); how many there were."""
        _check_record_id(record_id)
        prefix = MEMBER_WRAP_KEYSPACE + record_id
        database = self._handle()
        with database.iterator(prefix=prefix, include_value=False) as found:
            doomed = list(found)
        with database.write_batch(sync=True) as batch:
            for key in doomed:
                batch.delete(key)
        return len(doomed)

    def _place_sentinel(self) -> None:
        """Why: LevelDB writes a flushed memtable to the deepest level (up to 2) that nothing
        overlaps, and a manual compaction only merges levels above the deepest one holding the
        range. In an empty database a wrap and its tombstone would land together in one level-2
        table that no compaction ever rewrites, so the deleted wrap stayed in the files. A
        table spanning every keyspace (the layout key to this sentinel), pushed down once,
        makes every later flush land above it, where `compact_record` merges it away."""
        self._db.put(SENTINEL_KEY, b"", sync=True)
        self._db.compact_range()

    def compact_record(self, record_id: bytes) -> None:
        """Rewrite the tables holding this record's entries, so that a deleted wrap's bytes
        leave the database files (a LevelDB delete only adds a tombstone; the old value stays
        in the log and tables until compaction). Also flushes the write-ahead log."""
        _check_record_id(record_id)
        database = self._handle()
        for keyspace in (WRAP_KEYSPACE, MEMBER_WRAP_KEYSPACE):
            start = keyspace + record_id
            database.compact_range(start=start, stop=start + b"\xff" * 33)

    def enqueue_erasure(self, record_id: bytes, cid_text: str) -> None:
        """Remember, durably, that this record's copies here must be deleted."""
        _check_record_id(record_id)
        raw = cid_text.encode("ascii")
        if len(raw) > MAX_CID_TEXT_BYTES:
            raise ValueError(f"a CID text is at most {MAX_CID_TEXT_BYTES} bytes")
        self._handle().put(ERASURE_QUEUE_KEYSPACE + record_id, raw, sync=True)

    def pending_erasures(self, limit: int) -> list[tuple[bytes, str]]:
        """Up to `limit` queued erasures (record id, CID text), in record-id order."""
        if not 1 <= limit <= MAX_ITERATE_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_ITERATE_LIMIT}")
        pending: list[tuple[bytes, str]] = []
        with self._handle().iterator(prefix=ERASURE_QUEUE_KEYSPACE) as entries:
            for key, value in entries:
                pending.append((key[1:], value.decode("ascii", "replace")))
                if len(pending) == limit:
                    break
        return pending

    def finish_erasure(self, record_id: bytes) -> None:
        _check_record_id(record_id)
        self._handle().delete(ERASURE_QUEUE_KEYSPACE + record_id, sync=True)

    def erasure_cursor(self) -> int | None:
        """The height through which every committed erasure is queued; None if never set."""
        value = self._handle().get(ERASURE_CURSOR_KEY)
        if value is None:
            return None
        if len(value) != _HEIGHT.size:
            raise VaultCorruptedError(f"erasure cursor: {len(value)} bytes, not {_HEIGHT.size}")
        height: int = _HEIGHT.unpack(value)[0]
        return height

    def set_erasure_cursor(self, height: int) -> None:
        """Not synced, unlike the queue: LevelDB keeps writes in order, so a cursor lost in an
        OS crash is an older one, never one ahead of its queue entries (synced before it), and
        an older cursor only makes the next start scan again (queueing is idempotent). A sync
        here would cost an fsync on every block."""
        if not 0 <= height < 2**64:
            raise ValueError("a height is 0..2**64-1")
        self._handle().put(ERASURE_CURSOR_KEY, _HEIGHT.pack(height))

    def put_contribution(
        self, study_id: bytes, query_id: bytes, masked: bool, vector: list[int]
    ) -> None:
        """Keep a computed contribution (integers modulo 2^64), synced: computed once, it must
        survive a restart (a second noisy draw of the query is never made)."""
        _check_record_id(study_id)
        _check_record_id(query_id)
        if not 1 <= len(vector) <= MAX_CONTRIBUTION_LENGTH:
            raise ValueError(f"a contribution has 1..{MAX_CONTRIBUTION_LENGTH} coordinates")
        value = _CONTRIBUTION_HEADER.pack(int(masked), len(vector))
        value += struct.pack(f">{len(vector)}Q", *(item % 2**64 for item in vector))
        self._handle().put(CONTRIBUTION_KEYSPACE + study_id + query_id, value, sync=True)

    def contribution(self, study_id: bytes, query_id: bytes) -> tuple[bool, list[int]] | None:
        """(masked, vector modulo 2^64) of a kept contribution, or None."""
        value = self._handle().get(CONTRIBUTION_KEYSPACE + study_id + query_id)
        if value is None:
            return None
        if len(value) < _CONTRIBUTION_HEADER.size:
            raise VaultCorruptedError("contribution: value too short")
        masked, count = _CONTRIBUTION_HEADER.unpack_from(value)
        if masked > 1 or len(value) != _CONTRIBUTION_HEADER.size + 8 * count:
            raise VaultCorruptedError("contribution: bad header or length")
        return bool(masked), list(struct.unpack_from(f">{count}Q", value, 3))

    def delete_contribution(self, study_id: bytes, query_id: bytes) -> None:
        self._handle().delete(CONTRIBUTION_KEYSPACE + study_id + query_id, sync=True)

    def contribution_count(self) -> int:
        """Contributions kept (bounded by the worker's `max_contributions_kept`)."""
        with self._handle().iterator(prefix=CONTRIBUTION_KEYSPACE, include_value=False) as keys:
            return sum(1 for _ in keys)

    def snapshot(self) -> plyvel.Snapshot:
        """A consistent read-only view of the whole vault as it is now (for backups)."""
        return self._handle().snapshot()

    def notification_cursor(self, destination: str) -> int | None:
        """The height through which `destination` was sent every event; None if never set."""
        value = self._handle().get(_notification_key(destination))
        if value is None:
            return None
        if len(value) != _HEIGHT.size:
            raise VaultCorruptedError(f"notification cursor: {len(value)} bytes")
        height: int = _HEIGHT.unpack(value)[0]
        return height

    def set_notification_cursor(self, destination: str, height: int) -> None:
        """Not synced (as the erasure cursor): a cursor lost in an OS crash is an older one,
        and an older cursor only sends some events again (delivery is at-least-once)."""
        if not 0 <= height < 2**64:
            raise ValueError("a height is 0..2**64-1")
        self._handle().put(_notification_key(destination), _HEIGHT.pack(height))

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    def _handle(self) -> plyvel.DB:
        if self._db.closed:
            raise StorageUnavailableError("the key vault is closed (the node is stopping)")
        return self._db


def _decode(record_id: bytes, value: bytes) -> CustodyWrap:
    if len(value) < _VALUE_HEADER.size:
        raise VaultCorruptedError(f"custody wrap of {record_id.hex()}: value too short")
    version, kek_version, length = _VALUE_HEADER.unpack_from(value)
    if version != VALUE_VERSION:
        raise VaultCorruptedError(
            f"custody wrap of {record_id.hex()}: unknown value version {version}"
        )
    if len(record_id) != RECORD_ID_BYTES or len(value) != _VALUE_HEADER.size + length:
        raise VaultCorruptedError(f"custody wrap of {record_id.hex()}: wrong length")
    return CustodyWrap(record_id, kek_version, value[_VALUE_HEADER.size :])


def _check_record_id(record_id: object) -> None:
    if not isinstance(record_id, bytes) or len(record_id) != RECORD_ID_BYTES:
        raise ValueError(f"a record id is exactly {RECORD_ID_BYTES} bytes")


def _message(error: Exception) -> str:
    message = error.args[0] if error.args else str(error)
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


def _notification_key(destination: str) -> bytes:
    raw = destination.encode("ascii")
    if not 1 <= len(raw) <= 64:
        raise ValueError("a destination name is 1..64 ASCII bytes")
    return NOTIFICATION_CURSOR_PREFIX + raw
