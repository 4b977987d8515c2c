"""`BlockStore`: committed blocks, their certificates, the tx index and application state.

Everything one block changes — block, commit certificate, tx index, tx results, state writes,
app hash, a changed future validator set and the new head — goes into ONE LevelDB write batch
written with sync=True. LevelDB applies a batch entirely or not at all, also across a crash, so
the store never holds half a block. Every check happens before the batch is built: a refused
block writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import plyvel

from emrchain import _core
from emrchain.store import layout
from emrchain.store.absence import AbsenceFilter
from emrchain.store.committed_view import CommittedStateView
from emrchain.store.database import ChainDatabase, translate_error
from emrchain.store.errors import (
    BlockRefusedError,
    HeightPrunedError,
    NotInitializedError,
    StoreCorruptionError,
    StoreError,
)
from emrchain.store.state_cache import StateCache
from emrchain.store.tx_results import decode_tx_results, encode_tx_results
from emrchain.store.undo import encode_undo
from emrchain.types.block import Block
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.commit import CommitCertificate
from emrchain.types.execution import ExecutionResult, TxResult, compute_app_hash
from emrchain.types.limits import DEFAULT_LIMITS, Limits
from emrchain.types.validator import ValidatorSet

ZERO_ID = bytes(32)
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TxProof:
    """Where a transaction is and the audit path proving it is under the header's tx_root:
    `verify_merkle_proof(header.tx_root, tx_id, index, total, audit_path)`."""

    height: int
    index: int
    total: int
    audit_path: list[bytes]


class Head(NamedTuple):
    height: int
    block_id: bytes
    app_hash: bytes


class RestoredHead(NamedTuple):
    """What `finish_restore` records besides the state: a verified manifest's head."""

    chain_id: bytes
    height: int
    block_id: bytes
    app_hash: bytes
    validators: tuple[ValidatorSet, ValidatorSet, ValidatorSet]
    """The sets of height, height + 1 and height + 2."""
    commit: CommitCertificate | None = None
    """The certificate that committed block `height` (verified), if the joiner got it: the
    node needs it to propose block height + 1 (its last commit)."""


class PreparedCommit(NamedTuple):
    """A checked block commit (`BlockStore.prepare_commit`): its write batch and the head it
    makes current once written."""

    batch: plyvel.WriteBatch
    head: Head
    filtered_keys: tuple[bytes, ...] = ()
    """State keys put under the absence filter's prefixes, added to it once written."""
    refreshed: tuple[tuple[bytes, bytes | None], ...] = ()
    """(key, new value) for the state cache's keys this block writes, put back once written."""
    undo: ExecutionResult | None = None
    """The result whose undo record `write_prepared` adds to the batch (None: none kept)."""


class BlockStore:
    """Blocks and application state of one chain, in the node's database."""

    def __init__(
        self,
        database: ChainDatabase,
        limits: Limits = DEFAULT_LIMITS,
        absence: AbsenceFilter | None = None,
        cache: StateCache | None = None,
        undo_heights: int = 0,
    ) -> None:
        """`absence`: an empty filter the store fills with the committed keys under its
        prefixes now (one scan) and keeps current; state views then skip the database for
        keys it proves absent (`store/absence.py`). `cache`: committed values the state views
        remember and the store keeps exact across commits (`store/state_cache.py`).
        `undo_heights`: each commit stores the undo record of its height and keeps those of
        the last `undo_heights` heights (`store/undo.py`; 0: none, rollback is refused)."""
        limits.validate_basic()
        if undo_heights < 0:
            raise ValueError(f"undo_heights must be at least 0, got {undo_heights}")
        self._undo_heights = undo_heights
        # Held around every write that puts or deletes tx index entries: a commit's and a
        # pruning batch's (`store/pruning.py`), which checks an entry still points below the
        # base before deleting it; without the lock a commit re-indexing that tx in between
        # would lose its entry.
        self.index_lock = threading.Lock()
        self._database = database
        self._limits = limits
        self._chain_id = self._read_chain_id()
        self._head = self._read_head() if self._chain_id is not None else None
        self._absence = absence
        if absence is not None:
            self._fill_absence_filter(absence)
        self._cache = cache
        if cache is not None:
            cache.clear()
        # The commit between prepare_commit and finish_commit (or abandon_commit): while it is
        # being written no other block may be prepared on top of the old head.
        self._in_flight: PreparedCommit | None = None

    def _fill_absence_filter(self, absence: AbsenceFilter) -> None:
        if absence.keys_added:
            raise ValueError("the absence filter must start empty")
        started = time.monotonic()
        skip = len(layout.STATE)
        for prefix in sorted(absence.prefixes):
            keys = self._database.db.iterator(prefix=layout.STATE + prefix, include_value=False)
            with keys:
                absence.add_all(key[skip:] for key in keys)
        logger.info(
            "absence filter: %d committed keys under %d prefix(es) in %.2f s",
            absence.keys_added,
            len(absence.prefixes),
            time.monotonic() - started,
        )

    # -- metadata -----------------------------------------------------------------------------

    def _read_chain_id(self) -> bytes | None:
        raw = self._database.get(layout.META_CHAIN)
        if raw is None:
            return None
        try:
            reader = Reader(raw, "ChainMetadata")
            store_format = reader.u8("format")
            chain_id = reader.var_bytes(1, 50, "chain_id")
            reader.finish()
        except DecodeError as error:
            raise StoreCorruptionError(f"chain metadata is undecodable: {error}") from None
        if store_format != layout.STORE_FORMAT:
            raise StoreError(
                f"store format {store_format} is not supported (this node reads format "
                f"{layout.STORE_FORMAT})"
            )
        return chain_id

    def _read_head(self) -> Head:
        raw = self._database.get(layout.META_HEAD)
        if raw is None or len(raw) != layout.HEAD.size:
            raise StoreCorruptionError("the chain metadata exists but the head record does not")
        return Head(*layout.HEAD.unpack(raw))

    def reload_head(self) -> None:
        """Read the head again (after a rollback rewrote it)."""
        self._head = self._read_head() if self._chain_id is not None else None

    @property
    def database(self) -> ChainDatabase:
        return self._database

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def chain_id(self) -> bytes | None:
        """The chain this store holds, or None before `initialize`."""
        return self._chain_id

    def is_initialized(self) -> bool:
        return self._chain_id is not None

    def _require_head(self) -> Head:
        if self._head is None:
            raise NotInitializedError("the store holds no chain yet; initialize it from genesis")
        return self._head

    def last_height(self) -> int:
        return self._require_head().height

    def last_block_id(self) -> bytes:
        """The id of the last committed block (32 zero bytes at genesis)."""
        return self._require_head().block_id

    def last_app_hash(self) -> bytes:
        return self._require_head().app_hash

    def base_height(self) -> int:
        """The lowest height whose block, commit and results are stored: 1 when nothing was
        pruned (and before the first block); above it after pruning or a state sync."""
        raw = self._database.get(layout.META_BASE)
        return 1 if raw is None else layout.read_u64(raw)

    def set_base_height(self, height: int, batch: plyvel.WriteBatch | None = None) -> None:
        """Record `height` as the base. With `batch`, put into it, to be written with the
        deletions below it (the base then changes when the batch is written); without, written
        at once (sync). ValueError for a height below 1 or above the head + 1."""
        head = self._head.height if self._head is not None else 0
        if not 1 <= height <= head + 1:
            raise ValueError(f"base height {height} is outside 1..{head + 1}")
        if batch is not None:
            batch.put(layout.META_BASE, layout.u64(height))
            return
        try:
            self._database.db.put(layout.META_BASE, layout.u64(height), sync=True)
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None

    @property
    def undo_heights(self) -> int:
        return self._undo_heights

    def state_view(self) -> CommittedStateView:
        """A `CommittedState` over the application state as of the last commit."""
        return CommittedStateView(
            self._database, self.last_height, self.last_app_hash, self._absence, self._cache
        )

    # -- writing ------------------------------------------------------------------------------

    def initialize(
        self, chain_id: bytes, validators: ValidatorSet, genesis: ExecutionResult
    ) -> None:
        """Record genesis: chain id, the genesis state writes and app hash (height 0), and
        `validators` as the set of heights 1 and 2. Refused if the store already has a chain."""
        if self._chain_id is not None:
            raise StoreError(
                f"the store already holds chain {self._chain_id.decode()!r} at height "
                f"{self.last_height()}; reset it before initializing again"
            )
        if not 1 <= len(chain_id) <= 50:
            raise StoreError("chain id must be 1..50 bytes")
        try:
            validators.validate_basic(self._limits)
        except ValueError as error:
            raise StoreError(f"genesis validator set is invalid: {error}") from None
        self._check_result(genesis, ZERO_ID, 0)
        head = Head(0, ZERO_ID, genesis.app_hash)
        batch = self._database.db.write_batch(sync=True)
        batch.put(
            layout.META_CHAIN, Writer().u8(layout.STORE_FORMAT).var_bytes(chain_id, 1).bytes()
        )
        batch.put(layout.META_HEAD, layout.HEAD.pack(*head))
        batch.put(layout.app_hash_key(0), genesis.app_hash)
        batch.put(layout.validator_set_key(1), validators.encode())
        self._put_state(batch, genesis)
        if self._cache is not None:
            self._cache.clear()  # reads before genesis saw an empty state
        self._write(batch)
        self._chain_id = chain_id
        self._head = head
        if self._absence is not None:
            self._absence.add_all(self._filtered(genesis))

    def begin_restore(self) -> None:
        """Start restoring a snapshot into this empty store: remove any state entry a restore
        cut short by a crash left (its chain metadata was never written)."""
        if self._chain_id is not None:
            raise StoreError("a snapshot is restored only into an empty store")
        batch = self._database.db.write_batch()
        with self._database.db.iterator(prefix=layout.STATE, include_value=False) as keys:
            for key in keys:
                batch.delete(key)
        self._write(batch)

    def put_restored_entries(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        """Write verified state entries of the snapshot being restored (not yet a chain)."""
        if self._chain_id is not None:
            raise StoreError("a snapshot is restored only into an empty store")
        batch = self._database.db.write_batch()
        for key, value in entries:
            batch.put(layout.state_key(key), value)
        self._write(batch)

    def finish_restore(self, snapshot: RestoredHead) -> None:
        """After every entry: in one batch the validator sets of heights h..h+2, the app hash of
        h, base height h+1, the head and, last, the chain metadata; from then on the store
        holds the chain at height h (docs/spec/statesync.md §4)."""
        if self._chain_id is not None:
            raise StoreError("a snapshot is restored only into an empty store")
        if not 1 <= len(snapshot.chain_id) <= 50 or snapshot.height < 1:
            raise StoreError("the snapshot's chain id or height is invalid")
        height = snapshot.height
        head = Head(height, snapshot.block_id, snapshot.app_hash)
        batch = self._database.db.write_batch(sync=True)
        batch.put(layout.validator_set_key(height), snapshot.validators[0].encode())
        for offset in (1, 2):
            if snapshot.validators[offset] != snapshot.validators[offset - 1]:
                batch.put(
                    layout.validator_set_key(height + offset), snapshot.validators[offset].encode()
                )
        batch.put(layout.app_hash_key(height), snapshot.app_hash)
        if snapshot.commit is not None:
            if snapshot.commit.height != height or snapshot.commit.block_id != snapshot.block_id:
                raise StoreError("the restored commit certificate is for another block")
            batch.put(layout.commit_key(height), snapshot.commit.encode())
        batch.put(layout.META_BASE, layout.u64(height + 1))
        batch.put(layout.META_HEAD, layout.HEAD.pack(*head))
        batch.put(
            layout.META_CHAIN,
            Writer().u8(layout.STORE_FORMAT).var_bytes(snapshot.chain_id, 1).bytes(),
        )
        self._write(batch)
        self._chain_id = snapshot.chain_id
        self._head = head
        if self._cache is not None:
            self._cache.clear()
        if self._absence is not None:
            self._fill_absence_filter(self._absence)

    def commit_block(
        self, block: Block, commit: CommitCertificate, result: ExecutionResult
    ) -> None:
        """Commit `block`, the certificate that committed it and its execution `result`
        atomically. BlockRefusedError (nothing written) if the block is not the next one, does
        not extend the last block, or the certificate or result does not belong to it."""
        prepared = self.prepare_commit(block, commit, result)
        try:
            self.write_prepared(prepared)
        except BaseException:
            self.abandon_commit(prepared)
            raise
        self.finish_commit(prepared)

    @property
    def state_cache(self) -> StateCache | None:
        """The cache of committed state values, if configured (for its counters)."""
        return self._cache

    @property
    def absence_filter(self) -> AbsenceFilter | None:
        """The absence filter, if configured (for its counters)."""
        return self._absence

    @property
    def commit_in_flight(self) -> bool:
        """A commit is prepared and not yet finished or abandoned."""
        return self._in_flight is not None

    def prepare_commit(
        self, block: Block, commit: CommitCertificate, result: ExecutionResult
    ) -> PreparedCommit:
        """Every check of `commit_block` and its write batch; nothing is written yet.

        Then `write_prepared` (which may run in another thread: it touches only LevelDB) and
        `finish_commit` on the store's own thread, or `abandon_commit` if the write failed.
        Until then StoreError refuses another prepare, and the head stays the old one."""
        if self._in_flight is not None:
            raise StoreError("a block commit is already in flight")
        head = self._require_head()
        header = block.header
        height = header.height
        if header.chain_id != self._chain_id:
            raise BlockRefusedError("the block is for another chain")
        if height != head.height + 1:
            raise BlockRefusedError(
                f"block height {height} is not the next height {head.height + 1}"
            )
        if header.previous_block_id != head.block_id:
            raise BlockRefusedError(
                f"block {height} does not extend the last block: previous_block_id "
                f"{header.previous_block_id.hex()[:16]} != {head.block_id.hex()[:16]}"
            )
        if header.app_hash != head.app_hash:
            raise BlockRefusedError(
                f"block {height} carries app hash {header.app_hash.hex()[:16]}, but the state "
                f"after height {head.height} has {head.app_hash.hex()[:16]}"
            )
        try:
            block.validate_basic(self._limits)
        except ValueError as error:
            raise BlockRefusedError(f"block {height} is malformed: {error}") from None
        block_id = block.block_id
        try:
            commit.validate_basic(self._limits)
        except ValueError as error:
            raise BlockRefusedError(f"commit certificate is malformed: {error}") from None
        if commit.height != height or commit.block_id != block_id:
            raise BlockRefusedError("the commit certificate is for another block")
        validators = self.validator_set(height)
        next_validators = self.validator_set(height + 1)
        if validators is None or next_validators is None:
            raise StoreCorruptionError(f"validator sets for heights {height}, {height + 1} missing")
        if header.validators_hash != validators.hash:
            raise BlockRefusedError("validators_hash is not the hash of the stored validator set")
        if header.next_validators_hash != next_validators.hash:
            raise BlockRefusedError(
                "next_validators_hash is not the hash of the stored next validator set"
            )
        if len(result.tx_results) != len(block.txs):
            raise BlockRefusedError(
                f"{len(result.tx_results)} results for {len(block.txs)} transactions"
            )
        self._check_result(result, header.app_hash, height)
        after_next = self._validators_after_next(result)
        try:
            results_bytes = encode_tx_results(result.tx_results)
        except ValueError as error:
            raise BlockRefusedError(f"transaction results are invalid: {error}") from None

        ids = block.tx_ids
        batch = self._database.db.write_batch(sync=True)
        batch.put(layout.block_key(height), block.encode())
        batch.put(layout.block_height_key(block_id), layout.u64(height))
        batch.put(layout.commit_key(height), commit.encode())
        batch.put(layout.tx_results_key(height), results_bytes)
        batch.put(layout.app_hash_key(height), result.app_hash)
        for tx_id, location in self._tx_locations(height, ids, result).items():
            batch.put(layout.tx_location_key(tx_id), location)
        if after_next is not None and after_next != next_validators:
            batch.put(layout.validator_set_key(height + 2), after_next.encode())
        if self._undo_heights:
            expired = height - self._undo_heights
            if expired >= 1:
                batch.delete(layout.undo_key(expired))
        self._put_state(batch, result)
        new_head = Head(height, block_id, result.app_hash)
        batch.put(layout.META_HEAD, layout.HEAD.pack(*new_head))
        # Last, once nothing can refuse the block any more: from here until finish_commit or
        # abandon_commit the cache neither serves nor learns what this block changes.
        cache = self._cache
        refreshed = () if cache is None else cache.begin_commit(result.writes)
        prepared = self._in_flight = PreparedCommit(
            batch,
            new_head,
            self._filtered(result),
            refreshed,
            result if self._undo_heights else None,
        )
        return prepared

    def _put_undo(self, prepared: PreparedCommit) -> None:
        """The undo record of the prepared height: the committed values its writes replace,
        those execution read from the result, the rest read here. On the writer thread: the
        reads go straight to the database (LevelDB releases the GIL), which holds the state
        before the block until the batch is written, and keep the event loop free."""
        result = prepared.undo
        if result is None:
            return
        # The raw handle's bound get: ChainDatabase.get costs ~4 µs more per call (measured:
        # 11.3 against 2.7 ms for a block of 2,000 anchors), and a block reads ~2,000 keys.
        get = self._database.db.get
        state = layout.STATE

        def committed(key: bytes) -> bytes | None:
            return get(state + key)

        try:
            record = encode_undo(result.writes, result.previous_values, committed)
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None
        prepared.batch.put(layout.undo_key(prepared.head.height), record)

    def _filtered(self, result: ExecutionResult) -> tuple[bytes, ...]:
        absence = self._absence
        return () if absence is None else absence.covered_puts(result.writes)

    def write_prepared(self, prepared: PreparedCommit) -> None:
        """Write a prepared commit durably (fsync). Safe from a worker thread: LevelDB is
        thread-safe and this touches no Python state of the store; readers on other threads
        see the whole block or none of it."""
        self._put_undo(prepared)
        with self.index_lock:
            self._write(prepared.batch)

    def finish_commit(self, prepared: PreparedCommit) -> None:
        """After `write_prepared` returned: the written block becomes the head."""
        if prepared is not self._in_flight:
            raise StoreError("finish_commit of a commit that is not in flight")
        self._head = prepared.head
        self._in_flight = None
        if self._absence is not None:
            self._absence.add_all(prepared.filtered_keys)
        if self._cache is not None:
            self._cache.finish_commit(prepared.refreshed)

    def abandon_commit(self, prepared: PreparedCommit) -> None:
        """After `write_prepared` failed: forget the commit (LevelDB wrote all of the batch or
        none of it; the head read back at the next start says which)."""
        if prepared is self._in_flight:
            self._in_flight = None
            if self._cache is not None:
                self._cache.abandon_commit()

    def _tx_locations(
        self, height: int, ids: Sequence[bytes], result: ExecutionResult
    ) -> dict[bytes, bytes]:
        """Index entries to write. The same bytes can be included again only if they changed
        nothing the first time, so: an applied inclusion always wins, otherwise the first."""
        locations: dict[bytes, bytes] = {}
        for index, (tx_id, tx_result) in enumerate(zip(ids, result.tx_results, strict=True)):
            value = layout.TX_LOCATION_VALUE.pack(height, index)
            # Short-circuit order matters: only refused transactions pay for a lookup.
            if tx_result.code == 0 or (
                tx_id not in locations and self._database.get(layout.tx_location_key(tx_id)) is None
            ):
                locations[tx_id] = value
        return locations

    def _validators_after_next(self, result: ExecutionResult) -> ValidatorSet | None:
        """The set of height + 2 the application made from the block's validator updates (the
        store records it; applying updates is the application's rule, `state/validators.py`)."""
        after_next = result.validators_after_next
        if (after_next is None) != (not result.validator_updates):
            raise BlockRefusedError(
                "validator updates cannot apply: the result must carry both the updates and "
                "the validator set they make, or neither"
            )
        if after_next is not None:
            try:
                after_next.validate_basic(self._limits)
            except ValueError as error:
                raise BlockRefusedError(
                    f"validator updates cannot apply: the resulting validator set is invalid: "
                    f"{error}"
                ) from None
        return after_next

    @staticmethod
    def _check_result(result: ExecutionResult, previous_app_hash: bytes, height: int) -> None:
        """The writes must be valid keys and values, and the result's app hash must be the hash
        chain step over them (so the stored app hash always describes the stored state)."""
        try:
            expected = compute_app_hash(previous_app_hash, height, result.writes)
        except ValueError as error:  # StateLimitError, or a malformed previous app hash
            raise BlockRefusedError(f"execution result has an invalid write: {error}") from None
        if result.app_hash != expected:
            raise BlockRefusedError(
                f"the execution result's app hash does not match its writes at height {height}"
            )

    @staticmethod
    def _put_state(batch: plyvel.WriteBatch, result: ExecutionResult) -> None:
        for key, value in result.writes.items():
            if value is None:
                batch.delete(layout.state_key(key))
            else:
                batch.put(layout.state_key(key), value)

    def write_batch(self, batch: plyvel.WriteBatch) -> None:
        """Write a batch the store's own modules built (pruning, rollback, reindex)."""
        self._write(batch)

    def _write(self, batch: plyvel.WriteBatch) -> None:
        try:
            batch.write()
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None

    # -- reading ------------------------------------------------------------------------------

    def block(self, height: int) -> Block | None:
        raw = self._database.get(layout.block_key(height))
        if raw is None:
            return None
        try:
            return Block.decode(raw, self._limits)
        except DecodeError as error:
            raise StoreCorruptionError(f"stored block {height} is undecodable: {error}") from None

    def block_by_id(self, block_id: bytes) -> Block | None:
        height = self.height_of(block_id)
        return None if height is None else self.block(height)

    def height_of(self, block_id: bytes) -> int | None:
        raw = self._database.get(layout.block_height_key(block_id))
        return None if raw is None else layout.read_u64(raw)

    def commit(self, height: int) -> CommitCertificate | None:
        """The certificate that committed block `height`."""
        raw = self._database.get(layout.commit_key(height))
        if raw is None:
            return None
        try:
            return CommitCertificate.decode(raw, self._limits)
        except DecodeError as error:
            raise StoreCorruptionError(f"stored commit {height} is undecodable: {error}") from None

    def tx_results(self, height: int) -> list[TxResult] | None:
        """The (code, message) of every transaction of block `height`."""
        raw = self._database.get(layout.tx_results_key(height))
        if raw is None:
            return None
        try:
            return decode_tx_results(raw, self._limits.max_block_txs)
        except DecodeError as error:
            raise StoreCorruptionError(
                f"stored results {height} are undecodable: {error}"
            ) from None

    def app_hash(self, height: int) -> bytes | None:
        """The app hash after executing `height` (0 = genesis)."""
        return self._database.get(layout.app_hash_key(height))

    def tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        """(height, index) of the indexed inclusion of `tx_id`, or None."""
        raw = self._database.get(layout.tx_location_key(tx_id))
        if raw is None:
            return None
        height, index = layout.TX_LOCATION_VALUE.unpack(raw)
        return height, index

    def tx_proof(self, tx_id: bytes) -> TxProof | None:
        """The inclusion proof of `tx_id` against its block header's tx_root, or None."""
        location = self.tx_location(tx_id)
        if location is None:
            return None
        height, index = location
        block = self.block(height)
        if block is None:
            base = self.base_height()
            if height < base:
                # Pruned between the index read and the block read.
                raise HeightPrunedError(height, base)
            raise StoreCorruptionError(f"tx index points at missing block {height}")
        ids = list(block.tx_ids)
        if index >= len(ids) or ids[index] != tx_id:
            raise StoreCorruptionError(f"tx index entry for {tx_id.hex()[:16]} is wrong")
        return TxProof(height, index, len(ids), _core.merkle_proof(ids, index))

    def validator_set_changes(self, after: int, limit: int) -> list[tuple[int, ValidatorSet]]:
        """Up to `limit` (height, set) where a new validator set takes effect, above `after`,
        in height order (the genesis set, at height 1, is not a change)."""
        start = layout.validator_set_key(max(after, 1) + 1)
        changes: list[tuple[int, ValidatorSet]] = []
        try:
            stop = bytes((layout.VALIDATOR_SET[0] + 1,))
            with self._database.db.iterator(start=start, stop=stop) as entries:
                for key, value in entries:
                    height = layout.read_u64(key[len(layout.VALIDATOR_SET) :])
                    changes.append((height, ValidatorSet.decode(value, self._limits)))
                    if len(changes) == limit:
                        break
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None
        except DecodeError as error:
            raise StoreCorruptionError(f"stored validator set is undecodable: {error}") from None
        return changes

    def validator_set(self, height: int) -> ValidatorSet | None:
        """The validator set of `height` (known up to last height + 2), or None."""
        if self._head is None or not 1 <= height <= self._head.height + 2:
            return None
        try:
            iterator = self._database.db.iterator(
                start=layout.VALIDATOR_SET,
                stop=layout.validator_set_key(height + 1),
                reverse=True,
            )
            with iterator:
                entry = next(iterator, None)
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None
        if entry is None:
            raise StoreCorruptionError(f"no validator set recorded at or below height {height}")
        try:
            return ValidatorSet.decode(entry[1], self._limits)
        except DecodeError as error:
            raise StoreCorruptionError(f"stored validator set is undecodable: {error}") from None
