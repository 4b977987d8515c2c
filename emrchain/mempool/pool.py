"""The mempool: batch admission, per-sender nonce order, reap for proposals, recheck, gossip.

Admission of a batch (`admit_batch`) runs in four passes so that every expensive step is one
call over the whole batch:

1. screen: one `check_transactions` call (structure, chain id, schema; ids), then per item
   duplicate checks (in the batch, in the pool, in the seen cache), and the nonce, per-sender
   and capacity checks against the pool as it was before this batch. These only refuse what
   cannot be admitted whatever the rest of the batch does, so no signature is verified for a
   transaction that is refused anyway (a full pool costs no crypto).
2. verify: one `verify_transactions` call for the survivors whose signature outcome is not in
   the seen cache (each signature is verified once per node).
3. stateful: one call of the stateful check for the survivors with valid signatures (the
   node's is the EMR sender rule, `emrchain/state/emr/sender_admission.py`: only active
   members, validators for VALIDATOR_UPDATE; `docs/spec/state.md` §6).
4. decide: in batch order, the exact nonce, per-sender and capacity checks including the
   batch's own earlier acceptances, then insertion.

A transaction gets the code of the first check it fails in that order.

Recheck: after a block commits, `update` drops what the block included or made stale and
rechecks with the stateful check the pending transactions of the senders the caller names (the
node names those whose membership or validator status the block changed; `docs/spec/state.md`
§6.2), or of every sender.

Nonce rule (kept simple and bounded on purpose): a transaction is admitted only if its nonce is
exactly the sender's next one, committed nonce + pending count + 1. A lower nonce is refused
(`nonce_too_low`: already committed, or already taken by a pending transaction - no
replacement), a higher one is refused (`nonce_gap`) instead of being parked: parked
transactions would need their own bound and eviction policy, and the client (or gossiping peer)
simply sends them again in order. Consequence: the pending transactions of a sender always hold
consecutive nonces from committed + 1, and admission order is a valid execution order.

Capacity: a full pool refuses new transactions (`mempool_full`); it never evicts older ones,
because evicting a pending transaction of another sender would cut that sender's nonce sequence
and strand every later nonce it has pending.

Gossip: every admitted transaction gets a sequence number; the node keeps one cursor per peer
and streams `gossip_batch(cursor, ...)`. A transaction remembers the peer it came from and is
not sent back to it. Echoes to other peers that already have it cost them a dict lookup: the
duplicate check runs before verification. A peer that (re)connects is first sent the whole
pool as it was then (`relay_all_through`), whatever each transaction's origin: a restarted
node lost its mempool, and its peers hold its clients' pending transactions, which it would
otherwise never see again (its `next_nonce` for their senders would stay too low).

Not thread-safe: the node calls every method from one thread (the core releases the GIL inside
its batch calls, so admission work still uses all cores).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence

from emrchain import _core, schema
from emrchain.mempool.admission import (
    ACCEPTED_REASON,
    ZERO_TX_ID,
    Admission,
    AdmissionCode,
    nonce_gap,
    nonce_too_low,
    refuse,
    stateful_refusals,
    verdict_refusal,
)
from emrchain.mempool.commit import plan_commit
from emrchain.mempool.config import MempoolConfig
from emrchain.mempool.contracts import (
    CommittedNonce,
    MempoolStats,
    StatefulCheck,
    UpdateResult,
    VerifyTransactions,
)
from emrchain.mempool.pending import PendingSet, PendingTx
from emrchain.mempool.seen import SeenCache, SeenState
from emrchain.schema import codec
from emrchain.types.envelope import CHAIN_ID_LENGTH_OFFSET, NONCE_OFFSET, SENDER_END, SENDER_OFFSET

MAX_COUNTED_CODES = 128
"""Distinct refusal codes counted in stats; further stateful codes are counted as "other"."""
OTHER_CODE = "other"
_NONCE = struct.Struct(">Q").unpack_from

_UNDECIDED = Admission(ZERO_TX_ID, False, "undecided", "internal placeholder; never returned")


class Mempool:
    """Bounded pool of admitted transactions. See the module docstring for the rules."""

    def __init__(
        self,
        config: MempoolConfig,
        chain_id: bytes,
        committed_nonce: CommittedNonce,
        stateful_check: StatefulCheck | None = None,
        *,
        verify_transactions: VerifyTransactions | None = None,
    ) -> None:
        """Raise MempoolConfigError / LimitError for a bad config or chain id.

        `verify_transactions` defaults to the core's; tests inject a counting wrapper.
        """
        config.validate()
        codec.check_arguments(chain_id, config.max_tx_bytes)
        self._config = config
        self._chain_id = chain_id
        self._committed_nonce = committed_nonce
        self._stateful_check = stateful_check
        self._verify = verify_transactions or _core.verify_transactions
        self._smallest_tx_bytes = schema.ENVELOPE_FIXED_BYTES + len(chain_id)
        self._pending = PendingSet()
        self._seen = SeenCache(config.seen_cache_entries)
        self._admitted_txs = 0
        self._refused: dict[str, int] = {}
        self._signatures_verified = 0
        self._signature_cache_hits = 0
        self.on_admitted: Callable[[], None] | None = None
        """Called after a batch that admitted at least one transaction (every path: RPC,
        gossip, records), from inside `admit_batch`: a consensus that waits for transactions
        (`create_empty_blocks = false`) learns here that there are some. It must not call
        back into the pool."""

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._pending.by_id

    @property
    def config(self) -> MempoolConfig:
        return self._config

    @property
    def chain_id(self) -> bytes:
        return self._chain_id

    @property
    def latest_sequence(self) -> int:
        """Sequence number of the newest admitted transaction (0 before the first); a peer whose
        gossip cursor equals it has been sent everything."""
        return self._pending.latest_sequence

    @property
    def pending_access_events(self) -> int:
        """Pending ACCESS_EVENT transactions: readers whose read waits for its block (the
        node serves a read only once its event is committed)."""
        return self._pending.access_events

    def pending_nonces(self, sender: bytes) -> tuple[int, int] | None:
        """(committed nonce, highest pending nonce) of `sender`, or None if it has none pending."""
        queue = self._pending.senders.get(sender)
        if queue is None:
            return None
        return queue.committed_nonce, queue.committed_nonce + len(queue.entries)

    def last_pending(self, sender: bytes) -> tuple[int, bytes] | None:
        """(nonce, raw bytes) of `sender`'s newest pending transaction, or None: what a stateful
        check reads to judge a transaction against the sender's pending ones (a ROTATE_KEY
        pending before it, for the EMR rules)."""
        queue = self._pending.senders.get(sender)
        if queue is None:
            return None
        newest = queue.entries[-1]
        return newest.nonce, newest.raw

    def stats(self) -> MempoolStats:
        pending = self._pending
        return MempoolStats(
            size_txs=len(pending),
            size_bytes=pending.total_bytes,
            senders=len(pending.senders),
            latest_sequence=pending.latest_sequence,
            admitted_txs=self._admitted_txs,
            refused_txs_by_code={str(code): count for code, count in self._refused.items()},
            signatures_verified=self._signatures_verified,
            signature_cache_hits=self._signature_cache_hits,
            seen_cache_entries=len(self._seen),
            log_entries=pending.log_entries,
        )

    # ---------------------------------------------------------------- admission

    def admit_batch(
        self,
        raw_txs: Sequence[bytes],
        origin: Hashable | None = None,
        checked: tuple[bytes, list[bytes]] | None = None,
    ) -> list[Admission]:
        """Admit what is valid in `raw_txs`; one Admission per item, in order.

        `origin` is the peer the batch came from (None for RPC clients); gossip will not send
        these transactions back to it. `checked` is what `_core.check_transactions` returned
        for exactly these items with this pool's chain id and `max_tx_bytes` (verdicts, tx
        ids), when the caller already ran it; else the check runs here. Raises TypeError for
        non-bytes items, before any change.
        """
        config = self._config
        count = len(raw_txs)
        if count > config.max_batch_txs:
            # Refused unhashed: hashing an oversized batch is the work the limit exists to avoid.
            refusal = refuse(
                ZERO_TX_ID,
                AdmissionCode.BATCH_TOO_LARGE,
                f"a batch of {count} transactions exceeds max_batch_txs {config.max_batch_txs}",
            )
            self._count_refusal(AdmissionCode.BATCH_TOO_LARGE, count)
            return [refusal] * count
        if checked is None:
            checked = _core.check_transactions(raw_txs, self._chain_id, config.max_tx_bytes)
        verdicts, tx_ids = checked
        if len(verdicts) != count or len(tx_ids) != count:
            raise ValueError(f"checked results for {len(tx_ids)} items, the batch has {count}")
        results: list[Admission] = [_UNDECIDED] * count
        screened = self._screen(raw_txs, verdicts, tx_ids, results)
        signature_valid = self._verify_signatures(raw_txs, screened)
        stateful = self._check_stateful(raw_txs, screened, signature_valid)
        self._decide(raw_txs, tx_ids, screened, signature_valid, stateful, origin, results)
        for admission in results:
            if not admission.accepted:
                self._count_refusal(admission.code)
        return results

    def _screen(
        self,
        raw_txs: Sequence[bytes],
        verdicts: bytes,
        tx_ids: list[bytes],
        results: list[Admission],
    ) -> _Screened:
        """Pass 1: refuse what cannot be admitted whatever the rest of the batch does."""
        config = self._config
        max_tx_bytes = config.max_tx_bytes
        max_per_sender = config.max_txs_per_sender
        by_id = self._pending.by_id
        senders = self._pending.senders
        seen_states = self._seen.get_many(tx_ids)
        committed_nonce = self._committed_nonce
        pool_full = len(by_id) >= config.max_txs
        free_bytes = config.max_bytes - self._pending.total_bytes
        screened = _Screened()
        bases = screened.committed_nonces
        in_batch: set[bytes] = set()
        batch_counts: dict[bytes, int] = {}
        for index, verdict in enumerate(verdicts):
            tx_id = tx_ids[index]
            if verdict:
                raw = raw_txs[index]
                results[index] = verdict_refusal(tx_id, verdict, len(raw), max_tx_bytes)
                continue
            if tx_id in in_batch:
                results[index] = refuse(tx_id, AdmissionCode.DUPLICATE, "repeated in this batch")
                continue
            in_batch.add(tx_id)
            if tx_id in by_id:
                results[index] = refuse(tx_id, AdmissionCode.DUPLICATE, "already pending")
                continue
            state = seen_states[index]
            if state is not None and state != SeenState.VERIFIED:
                results[index] = _known_refusal(tx_id, state)
                continue
            raw = raw_txs[index]
            # The core accepted the envelope, so its fields are in bounds. envelope.sender and
            # envelope.nonce, inlined: the two calls cost more than these three lines.
            chain_id_length = raw[CHAIN_ID_LENGTH_OFFSET]
            sender = raw[SENDER_OFFSET + chain_id_length : SENDER_END + chain_id_length]
            nonce = _NONCE(raw, NONCE_OFFSET + chain_id_length)[0]
            queue = senders.get(sender)
            if queue is None:
                base = bases.get(sender)
                if base is None:
                    base = bases[sender] = committed_nonce(sender)
                pending_count = 0
            else:
                base = queue.committed_nonce
                pending_count = len(queue.entries)
            next_nonce = base + pending_count + 1
            if nonce < next_nonce:
                results[index] = nonce_too_low(tx_id, nonce, base, next_nonce)
                continue
            earlier = batch_counts.get(sender, 0)
            if nonce > next_nonce + earlier:
                # At most `earlier` of this batch can precede it, so the gap cannot close.
                results[index] = nonce_gap(tx_id, nonce, next_nonce + earlier)
                continue
            if pending_count >= max_per_sender:
                results[index] = self._sender_limit(tx_id, pending_count)
                continue
            if pool_full or len(raw) > free_bytes:
                results[index] = self._mempool_full(tx_id)
                continue
            batch_counts[sender] = earlier + 1
            position = len(screened.indexes)
            if state is None:
                screened.verify_positions.append(position)
            else:
                screened.cached_positions.append(position)
            screened.indexes.append(index)
            screened.senders.append(sender)
            screened.nonces.append(nonce)
        return screened

    def _verify_signatures(self, raw_txs: Sequence[bytes], screened: _Screened) -> bytearray:
        """Pass 2: one verification call; returns 1/0 per screened item (cached ones are 1)."""
        valid = bytearray(b"\x01") * len(screened.indexes)
        positions = screened.verify_positions
        self._signature_cache_hits += len(screened.cached_positions)
        if not positions:
            return valid
        indexes = screened.indexes
        batch = [raw_txs[indexes[position]] for position in positions]
        outcome = self._verify(batch, self._config.verify_threads)
        if len(outcome) != len(positions):
            raise RuntimeError(f"verifier returned {len(outcome)} results for {len(positions)}")
        self._signatures_verified += len(positions)
        for position, ok in zip(positions, outcome, strict=True):
            valid[position] = ok
        return valid

    def _check_stateful(
        self, raw_txs: Sequence[bytes], screened: _Screened, valid: bytearray
    ) -> dict[int, tuple[str, str]]:
        """Pass 3: one stateful-check call; returns the refusals by screened position."""
        check = self._stateful_check
        if check is None:
            return {}
        positions = [position for position, ok in enumerate(valid) if ok]
        if not positions:
            return {}
        indexes = screened.indexes
        outcomes = check([raw_txs[indexes[position]] for position in positions])
        return stateful_refusals(positions, outcomes)

    def _decide(
        self,
        raw_txs: Sequence[bytes],
        tx_ids: list[bytes],
        screened: _Screened,
        valid: bytearray,
        stateful: dict[int, tuple[str, str]],
        origin: Hashable | None,
        results: list[Admission],
    ) -> None:
        """Pass 4: record signature outcomes, then admit in batch order with exact checks."""
        seen = self._seen
        indexes = screened.indexes
        verified = [tx_ids[indexes[position]] for position in screened.verify_positions]
        if all(valid[position] for position in screened.verify_positions):
            seen.remember_all(verified, SeenState.VERIFIED)  # the common case, in one call
        else:
            for position, tx_id in zip(screened.verify_positions, verified, strict=True):
                state = SeenState.VERIFIED if valid[position] else SeenState.BAD_SIGNATURE
                seen.remember(tx_id, state)
        seen.touch_all(tx_ids[indexes[position]] for position in screened.cached_positions)
        config = self._config
        max_txs, max_bytes = config.max_txs, config.max_bytes
        max_per_sender = config.max_txs_per_sender
        pending = self._pending
        senders = pending.senders
        bases = screened.committed_nonces
        admitted = 0
        for position, index in enumerate(indexes):
            tx_id = tx_ids[index]
            if not valid[position]:
                results[index] = refuse(
                    tx_id, AdmissionCode.BAD_SIGNATURE, "signature does not verify"
                )
                continue
            if position in stateful:
                code, reason = stateful[position]
                results[index] = Admission(tx_id, False, code, reason)
                continue
            sender = screened.senders[position]
            nonce = screened.nonces[position]
            queue = senders.get(sender)
            if queue is None:
                base = bases[sender]
                pending_count = 0
            else:
                base = queue.committed_nonce
                pending_count = len(queue.entries)
            next_nonce = base + pending_count + 1
            if nonce != next_nonce:
                if nonce < next_nonce:
                    results[index] = nonce_too_low(tx_id, nonce, base, next_nonce)
                else:
                    results[index] = nonce_gap(tx_id, nonce, next_nonce)
                continue
            if pending_count >= max_per_sender:
                results[index] = self._sender_limit(tx_id, pending_count)
                continue
            raw = raw_txs[index]
            if len(pending.by_id) >= max_txs or pending.total_bytes + len(raw) > max_bytes:
                results[index] = self._mempool_full(tx_id)
                continue
            pending.append(tx_id, raw, sender, base, origin)
            results[index] = Admission(tx_id, True, AdmissionCode.OK, ACCEPTED_REASON)
            admitted += 1
        self._admitted_txs += admitted
        if admitted and self.on_admitted is not None:
            self.on_admitted()

    # ------------------------------------------------------- signature knowledge

    def verified_signatures(self, tx_ids: Sequence[bytes]) -> bytearray:
        """1 per id whose signature this node already verified as valid (pending, or
        remembered as verified), else 0: validating a proposal verifies only the zeros."""
        return self._pending_or_seen_as(tx_ids, _VERIFIED_ONLY)

    def signatures_settled(self, tx_ids: Sequence[bytes]) -> bytearray:
        """1 per id whose admission needs no signature check, else 0: pending (refused as a
        duplicate), or any outcome in the seen cache (verified: taken from it; committed or a
        bad signature: refused before verification). Pre-verification verifies only the zeros:
        gossip that arrives after its block committed is common on a busy devnet, and
        verifying it again would be wasted work."""
        return self._pending_or_seen_as(tx_ids, _ANY_SEEN_STATE)

    def _pending_or_seen_as(
        self, tx_ids: Sequence[bytes], states: frozenset[SeenState]
    ) -> bytearray:
        """1 per id that is pending or whose seen-cache state is in `states`, else 0."""
        by_id = self._pending.by_id
        flags = bytearray(len(tx_ids))
        seen_states = self._seen.get_many(tx_ids)
        for index, (tx_id, state) in enumerate(zip(tx_ids, seen_states, strict=True)):
            if tx_id in by_id or state in states:
                flags[index] = 1
        return flags

    def remember_signatures(self, tx_ids: Sequence[bytes], verdicts: bytes) -> None:
        """Record signature outcomes the node verified outside admission (a proposal's
        transactions it had not admitted), so their gossip is not verified again. Ids the seen
        cache already knows keep their state (a committed id stays committed)."""
        if len(tx_ids) != len(verdicts):
            raise ValueError(f"{len(verdicts)} verdicts for {len(tx_ids)} tx ids")
        seen = self._seen
        for tx_id, valid in zip(tx_ids, verdicts, strict=True):
            if seen.get(tx_id) is None:
                seen.remember(tx_id, SeenState.VERIFIED if valid == 1 else SeenState.BAD_SIGNATURE)
        self._signatures_verified += len(tx_ids)

    # ------------------------------------------------------------ proposal, gossip

    def reap(self, max_txs: int, max_bytes: int) -> list[bytes]:
        """Up to `max_txs` / `max_bytes` of pending transactions for a proposal, oldest first,
        each sender's in nonce order from its committed nonce + 1. Nothing is removed.

        A transaction that does not fit the remaining bytes ends its sender's run (its later
        nonces cannot execute without it); other senders' smaller transactions may still fit.
        """
        return self.reap_with_ids(max_txs, max_bytes)[0]

    def reap_with_ids(self, max_txs: int, max_bytes: int) -> tuple[list[bytes], list[bytes]]:
        """`reap`, with the id of each transaction (its SHA-256, computed at admission): the
        proposer's block needs them for its tx root, and hashing the block again would redo
        what admission did."""
        _check_limit("max_txs", max_txs, 0)
        _check_limit("max_bytes", max_bytes, 0)
        txs: list[bytes] = []
        ids: list[bytes] = []
        if max_txs == 0:
            return txs, ids
        remaining = max_bytes
        smallest = self._smallest_tx_bytes
        blocked: set[bytes] = set()
        for entry in self._pending.live_after(0):
            if remaining < smallest:
                break
            if blocked and entry.sender in blocked:
                continue
            size = len(entry.raw)
            if size > remaining:
                blocked.add(entry.sender)
                continue
            txs.append(entry.raw)
            ids.append(entry.tx_id)
            remaining -= size
            if len(txs) == max_txs:
                break
        return txs, ids

    def gossip_batch(
        self,
        cursor: int,
        max_txs: int,
        max_bytes: int,
        peer: Hashable | None = None,
        *,
        local_only: bool = False,
        relay_all_through: int = 0,
    ) -> tuple[list[bytes], int]:
        """Pending transactions admitted after `cursor` (a sequence number; start with 0),
        oldest first, skipping those that came from `peer`; returns them and the cursor to
        pass next time.

        Stops before the first transaction that does not fit `max_bytes` rather than skipping
        it, because the peer admits a sender's nonces only in order. `max_bytes` must be at
        least max_tx_bytes so every call makes progress. `local_only` skips every transaction
        that came from a peer (origin not None): in a full mesh each transaction then crosses
        each link once, from the node a client gave it to. Transactions at or below sequence
        `relay_all_through` are sent whatever their origin, `peer` included (a peer that
        reconnected: it may have restarted and lost them).
        """
        _check_limit("cursor", cursor, 0)
        _check_limit("max_txs", max_txs, 1)
        _check_limit("max_bytes", max_bytes, self._config.max_tx_bytes)
        txs: list[bytes] = []
        remaining = max_bytes
        next_cursor = cursor
        for entry in self._pending.live_after(cursor):
            origin = entry.origin
            if (
                origin is not None
                and entry.sequence > relay_all_through
                and (local_only or origin == peer)
            ):
                next_cursor = entry.sequence
                continue
            size = len(entry.raw)
            if size > remaining:
                break
            txs.append(entry.raw)
            remaining -= size
            next_cursor = entry.sequence
            if len(txs) == max_txs:
                break
        return txs, next_cursor

    # -------------------------------------------------------------------- commit

    def update(
        self,
        committed_tx_ids: Iterable[bytes],
        committed_nonce: Mapping[bytes, int] | None = None,
        recheck_senders: Collection[bytes] | None = None,
    ) -> UpdateResult:
        """After a block commits: remove its transactions, then recheck the rest.

        `committed_nonce` maps each sender with a transaction in the block to its new committed
        nonce (the node has them from execution); senders absent keep theirs, except that a
        pending transaction of ours in the block implies its sender's nonce reached it. Every
        pending transaction at or below its sender's new committed nonce leaves (committed, or
        stale: the block used that nonce for another transaction). Then, with a stateful check,
        the remaining transactions of `recheck_senders` (None: every remaining transaction) are
        rechecked against the new state, each sender's in nonce order, in calls of at most
        `recheck_batch_txs`; a refused one leaves with its sender's later nonces. A caller that
        names senders vouches that the block changed no other sender's verdict (the node names
        those whose membership or validator status the block changed). The node must update
        its state (what `committed_nonce` and the stateful check read) before calling this.

        Raises ValueError, before any change, for malformed ids or a nonce that moves back.
        """
        tx_ids, new_nonces = plan_commit(self._pending, committed_tx_ids, committed_nonce or {})
        committed_set = set(tx_ids)
        committed = 0
        dropped: list[bytes] = []
        for sender, nonce in new_nonces.items():
            included, stale = self._pending.advance_committed(sender, nonce, committed_set)
            committed += included
            dropped.extend(stale)
        self._seen.remember_all(tx_ids, SeenState.COMMITTED)
        stale_count = len(dropped)
        if self._stateful_check is not None:
            self._recheck(dropped, recheck_senders)
        self._pending.compact_if_sparse()
        return UpdateResult(committed, stale_count, len(dropped) - stale_count, tuple(dropped))

    def recheck(self, senders: Collection[bytes]) -> tuple[bytes, ...]:
        """Recheck the pending transactions of `senders` now, as `update` does after a commit
        (the node's proposer calls it if its own block would carry a transaction the stateful
        check refuses); returns the ids dropped. Without a stateful check nothing changes."""
        dropped: list[bytes] = []
        if self._stateful_check is not None:
            self._recheck(dropped, senders)
            self._pending.compact_if_sparse()
        return tuple(dropped)

    def _recheck(self, dropped: list[bytes], senders: Collection[bytes] | None) -> None:
        """Stateful check of the pending transactions of `senders` (None: all, oldest first),
        each sender's in nonce order, in bounded calls.

        A refusal cuts its sender's later nonces, which come later in the walk and so are never
        collected once cut. If the check raises, the pool stays consistent: the chunks already
        judged are applied.
        """
        pending = self._pending
        entries = pending.live_after(0) if senders is None else pending.live_of(senders)
        batch_size = self._config.recheck_batch_txs
        chunk: list[PendingTx] = []
        for entry in entries:
            chunk.append(entry)
            if len(chunk) == batch_size:
                self._recheck_chunk(chunk, dropped)
                chunk = []
        if chunk:
            self._recheck_chunk(chunk, dropped)

    def _recheck_chunk(self, chunk: list[PendingTx], dropped: list[bytes]) -> None:
        check = self._stateful_check
        assert check is not None  # _recheck runs only with a stateful check
        refusals = stateful_refusals(range(len(chunk)), check([entry.raw for entry in chunk]))
        for position in sorted(refusals):
            entry = chunk[position]
            if entry.live:  # an earlier refusal of its sender in this chunk may have cut it
                dropped.extend(self._pending.cut_from(entry))

    # ------------------------------------------------------------------ refusals

    def _sender_limit(self, tx_id: bytes, pending_count: int) -> Admission:
        return refuse(
            tx_id,
            AdmissionCode.SENDER_LIMIT,
            f"sender already has {pending_count} pending transactions "
            f"(max_txs_per_sender {self._config.max_txs_per_sender})",
        )

    def _mempool_full(self, tx_id: bytes) -> Admission:
        config = self._config
        pending = self._pending
        return refuse(
            tx_id,
            AdmissionCode.MEMPOOL_FULL,
            f"mempool is full ({len(pending)} transactions, {pending.total_bytes} bytes; "
            f"max_txs {config.max_txs}, max_bytes {config.max_bytes})",
        )

    def _count_refusal(self, code: str, count: int = 1) -> None:
        refused = self._refused
        if code not in refused and len(refused) >= MAX_COUNTED_CODES:
            code = OTHER_CODE
        refused[code] = refused.get(code, 0) + count


class _Screened:
    """Pass-1 survivors as parallel lists; a "position" indexes these lists."""

    __slots__ = (
        "cached_positions",
        "committed_nonces",
        "indexes",
        "nonces",
        "senders",
        "verify_positions",
    )

    def __init__(self) -> None:
        self.indexes: list[int] = []
        """Index of each survivor in the submitted batch."""
        self.senders: list[bytes] = []
        self.nonces: list[int] = []
        self.verify_positions: list[int] = []
        """Positions whose signature must be verified."""
        self.cached_positions: list[int] = []
        """Positions whose signature the seen cache already knows to be valid."""
        self.committed_nonces: dict[bytes, int] = {}
        """Committed nonce of each sender that had no pending queue (asked once per batch)."""


_VERIFIED_ONLY = frozenset({SeenState.VERIFIED})
_ANY_SEEN_STATE = frozenset(SeenState)


def _known_refusal(tx_id: bytes, state: SeenState) -> Admission:
    """Refusal for an id the seen cache knows as committed or as carrying a bad signature."""
    if state == SeenState.COMMITTED:
        return refuse(tx_id, AdmissionCode.DUPLICATE, "already committed in a block")
    return refuse(tx_id, AdmissionCode.BAD_SIGNATURE, "signature does not verify (known)")


def _check_limit(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
