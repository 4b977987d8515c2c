"""The evidence pool: verified misbehaviour evidence waiting for a block (docs/spec/consensus.md
§1.4).

Evidence enters when our consensus runtime detects an equivocation or a peer gossips it; it is
kept only if a block at our next height, or the one after for evidence of our next height,
could carry it (`emrchain.state.evidence.evidence_error`: signatures against the validator set
of its height, age, not committed yet),
persisted in LevelDB (`E | hash`, so it survives a restart), and bounded by `max_evidence_kept`
(the oldest heights go first). An honest proposer puts up to `max_evidence_per_block` of it in
its block, oldest first; once a committed block carries an item, or an item can no longer be
carried (too old, committed by someone else's block), it leaves the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import plyvel

from emrchain.node.chain import Chain
from emrchain.state import keys
from emrchain.state.evidence import decode_committed
from emrchain.store import ChainDatabase, layout
from emrchain.store.database import translate_error
from emrchain.types import Block, DecodeError, Evidence, decode_evidence

logger = logging.getLogger(__name__)

MAX_COMMITTED_LISTED = 1_000
"""Most committed evidence entries one `committed()` call returns (the RPC route's page)."""


class EvidencePool:
    """Pending evidence of one node; runs on the node's event loop."""

    def __init__(self, database: ChainDatabase, chain: Chain, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._database = database
        self._chain = chain
        self._max_pending = max_pending
        self._pending: dict[bytes, Evidence] = {}
        self.listeners: list[Callable[[Evidence], None]] = []
        """Called with each item newly admitted (the node gossips it); must not raise."""
        self.refused = 0
        self._load()

    # ------------------------------------------------------------------ entering

    def add(self, item: Evidence) -> str | None:
        """Admit `item` if a block at our next height could carry it; the reason if not
        (already pending is not a refusal: None, and nothing happens)."""
        item_hash = item.hash
        if item_hash in self._pending:
            return None
        reason = self._keep_error(item, self._chain.height + 1)
        if reason is not None:
            self.refused += 1
            return reason
        if len(self._pending) >= self._max_pending:
            oldest = min(self._pending.values(), key=_order)
            if _order(oldest) >= _order(item):
                self.refused += 1
                return f"the evidence pool is full ({self._max_pending} items) of newer evidence"
            self._remove([oldest.hash])
        self._pending[item_hash] = item
        self._write(lambda batch: batch.put(layout.pending_evidence_key(item_hash), item.encode()))
        logger.warning(
            "evidence of equivocation by validator %s at height %d is pending",
            item.validator.hex()[:16],
            item.height,
        )
        for listener in self.listeners:
            listener(item)
        return None

    # ---------------------------------------------------------------- proposing

    def for_block(self, height: int, max_items: int) -> tuple[Evidence, ...]:
        """Up to `max_items` pending items a block at `height` may carry, oldest first."""
        chosen: list[Evidence] = []
        for item in sorted(self._pending.values(), key=_order):
            if len(chosen) >= max_items:
                break
            if self._chain.evidence_error(item, height) is None:
                chosen.append(item)
        return tuple(chosen)

    def on_commit(self, block: Block) -> None:
        """A block was committed: drop what it carried and what no later block may carry."""
        carried = {item.hash for item in block.evidence}
        next_height = block.height + 1
        stale = [
            item_hash
            for item_hash, item in self._pending.items()
            if item_hash in carried or self._keep_error(item, next_height) is not None
        ]
        if stale:
            self._remove(stale)

    # ------------------------------------------------------------------- reading

    def pending_count(self) -> int:
        return len(self._pending)

    def pending(self) -> list[Evidence]:
        return sorted(self._pending.values(), key=_order)

    def committed_count(self) -> int:
        """Evidence items committed so far (their keys in state; nothing decoded)."""
        prefix = layout.state_key(keys.COMMITTED_EVIDENCE_PREFIX)
        try:
            with self._database.db.iterator(prefix=prefix, include_value=False) as found:
                return sum(1 for _ in found)
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None

    def committed(self, limit: int = MAX_COMMITTED_LISTED) -> list[tuple[int, Evidence]]:
        """(commit height, evidence) of committed evidence, read from state, by commit
        height; at most `limit` entries."""
        prefix = layout.state_key(keys.COMMITTED_EVIDENCE_PREFIX)
        found = []
        try:
            with self._database.db.iterator(prefix=prefix, include_key=False) as values:
                for value in values:
                    found.append(decode_committed(value))
                    if len(found) >= limit:
                        break
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None
        return sorted(found, key=lambda entry: (entry[0], entry[1].hash))

    # ------------------------------------------------------------------ internal

    def _keep_error(self, item: Evidence, next_height: int) -> str | None:
        """Why no block from `next_height` (our next) on could carry `item`. Evidence of the
        height consensus is deciding now is the commonest kind: a block carries it only from
        the following height, so it is judged as that block would judge it."""
        if item.height > next_height:
            return f"evidence of height {item.height} is above our next height {next_height}"
        return self._chain.evidence_error(item, max(next_height, item.height + 1))

    def _load(self) -> None:
        try:
            with self._database.db.iterator(prefix=layout.PENDING_EVIDENCE) as entries:
                stored = list(entries)
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None
        dropped = []
        for key, value in stored:
            try:
                item = decode_evidence(value)
            except DecodeError:
                dropped.append(key[len(layout.PENDING_EVIDENCE) :])
                continue
            self._pending[item.hash] = item
        if dropped:
            logger.warning("dropped %d undecodable pending evidence entries", len(dropped))
            self._remove(dropped)
        if self._pending:
            logger.info(
                "evidence pool: %d items pending from before the restart", len(self._pending)
            )

    def _remove(self, hashes: list[bytes]) -> None:
        for item_hash in hashes:
            self._pending.pop(item_hash, None)

        def delete(batch: plyvel.WriteBatch) -> None:
            for item_hash in hashes:
                batch.delete(layout.pending_evidence_key(item_hash))

        self._write(delete)

    def _write(self, fill: Callable[[plyvel.WriteBatch], None]) -> None:
        try:
            with self._database.db.write_batch() as batch:
                fill(batch)
        except plyvel.Error as error:
            raise translate_error(error, self._database.path) from None


def _order(item: Evidence) -> tuple[int, bytes]:
    """Oldest height first; the hash breaks ties, so every node orders alike."""
    return (item.height, item.hash)
