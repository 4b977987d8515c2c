"""A new node joins by state sync: collect offers, pick the newest snapshot that more than 2/3
of a trusted validator set vouched for, fetch its chunks from several peers, check each against
the manifest, and write the state and the head into the empty store (docs/spec/statesync.md §3).

The caller (the node) owns the started `PeerManager`; afterwards it opens the node as usual,
which block-syncs from the snapshot's height + 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from emrchain.p2p import Misbehaviour, PeerManager
from emrchain.statesync.chunks import chunk_hash, read_chunk
from emrchain.statesync.manifest import Manifest, Tally
from emrchain.statesync.messages import (
    STATESYNC_CHANNEL,
    ChunkRequest,
    ChunkResponse,
    CommitRequest,
    CommitResponse,
    Offer,
    OffersRequest,
    SetChanges,
    SetChangesRequest,
    StateSyncMessage,
    decode_statesync,
    encode_statesync,
)
from emrchain.store import BlockStore, RestoredHead
from emrchain.types.codec import DecodeError
from emrchain.types.commit import CommitCertificate, CommitError, verify_commit
from emrchain.types.validator import ValidatorSet

logger = logging.getLogger(__name__)

MAX_WAITING_OFFERS = 1_000
"""Offers held until the proofs of validator-set changes arrive (a peer sends one per
snapshot it keeps)."""
MAX_CANDIDATES = 1_000
"""Different manifests remembered while choosing (honest peers offer `snapshot_keep` each)."""
MAX_REPORTED_REFUSALS = 100
"""Refusal lines kept for the report (and logged); the rest are counted by the P2P scores."""
REPORT_FILE = "statesync.json"
"""Written into the data directory once a join finished: what it fetched, refused and struck."""


class StateSyncError(RuntimeError):
    """The node could not join by state sync; nothing was written to its store."""


@dataclass(frozen=True, slots=True)
class JoinSettings:
    """The `[statesync]` settings of the joining side."""

    max_chunk_requests_in_flight: int
    max_chunk_requests_per_peer: int
    chunk_request_timeout_ms: int
    discovery_time_ms: int
    join_timeout_ms: int
    max_chunk_strikes: int
    trust_height: int
    trust_hash: str


@dataclass(slots=True)
class JoinReport:
    height: int = 0
    digest: str = ""
    chunks: int = 0
    entries: int = 0
    chunk_bytes: int = 0
    seconds: float = 0.0
    discovery_s: float = 0.0
    vouched_power: int = 0
    total_power: int = 0
    refetched_chunks: int = 0
    commit_restored: bool = False
    """The certificate of the snapshot's block was fetched and verified (needed to propose)."""
    validator_set_changes: int = 0
    """Validator-set changes since genesis verified to trust the vouching set."""
    refused_offers: list[str] = field(default_factory=list)
    refused_vouches: list[str] = field(default_factory=list)
    strikes: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)


class _Candidate:
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.peers: set[str] = set()


class StateSyncJoin:
    def __init__(
        self,
        settings: JoinSettings,
        p2p: PeerManager,
        store: BlockStore,
        chain_id: bytes,
        genesis_validators: ValidatorSet,
    ) -> None:
        self._settings = settings
        self._p2p = p2p
        self._store = store
        self._chain_id = chain_id
        self._genesis_validators = genesis_validators
        self._limits = store.limits
        self._candidates: dict[bytes, _Candidate] = {}
        self._tallies: dict[tuple[int, bytes], Tally] = {}
        self._asked: set[str] = set()
        self._offered: set[str] = set()
        self._commit_wanted: tuple[Manifest, asyncio.Future[CommitCertificate]] | None = None
        # The trust root: the genesis set from height 1, then each set whose change was proven
        # by the header and commit (signed by more than 2/3 of the set before) naming it.
        self._trusted: list[tuple[int, ValidatorSet]] = [(1, genesis_validators)]
        self._waiting: list[tuple[str, Offer]] = []
        self._changes_asked: set[tuple[str, int]] = set()
        # Answers to our chunk requests: those in flight, and as many late ones (asked again
        # elsewhere after a timeout) at most; more is a flood.
        self._chunks: asyncio.Queue[tuple[str, ChunkResponse]] = asyncio.Queue(
            maxsize=2 * settings.max_chunk_requests_in_flight
        )
        self.report = JoinReport()

    # ------------------------------------------------------------------ offers

    def _receive(self, peer_id: str, message: StateSyncMessage) -> None:
        if isinstance(message, Offer):
            self._offered.add(peer_id)
            self._on_offer(peer_id, message)
        elif isinstance(message, SetChanges):
            self._on_set_changes(peer_id, message)
        elif isinstance(message, CommitResponse) and self._commit_wanted is not None:
            self._on_commit(peer_id, message, *self._commit_wanted)
        elif isinstance(message, ChunkResponse):
            try:
                self._chunks.put_nowait((peer_id, message))
            except asyncio.QueueFull:
                self._p2p.report_misbehaviour(peer_id, Misbehaviour.FLOOD)

    def _trusted_set(self, manifest: Manifest, peer_id: str = "") -> ValidatorSet | None:
        """The vouching set of `manifest` if this node trusts it, else None (reason noted;
        with `peer_id`, the proofs of the validator-set changes since our trust root are asked
        of that peer and the offer is looked at again when they arrive)."""
        settings = self._settings
        if settings.trust_height:
            if (
                manifest.height == settings.trust_height
                and manifest.block_id.hex() == settings.trust_hash
            ):
                return manifest.validators
            self._refuse_offer(manifest, "not the trusted height and block id")
            return None
        last_change = self._trusted[-1][0]
        if manifest.validators == self._set_at(manifest.height):
            return manifest.validators
        if peer_id and (peer_id, last_change) not in self._changes_asked:
            self._changes_asked.add((peer_id, last_change))
            self._send(peer_id, SetChangesRequest(last_change))
        return None

    def _set_at(self, height: int) -> ValidatorSet:
        """The set in force at `height` as far as the verified changes go."""
        return next(validators for start, validators in reversed(self._trusted) if start <= height)

    def _on_set_changes(self, peer_id: str, message: SetChanges) -> None:
        """Advance the trust root over each proven change, in order; a change that does not
        verify ends it (and counts against the peer)."""
        for change in message.changes:
            last_change, trusted = self._trusted[-1]
            height = change.header.height + 1
            if height <= last_change:
                continue
            try:
                verify_commit(
                    change.commit,
                    trusted,
                    self._chain_id,
                    height=change.header.height,
                    block_id=change.header.block_id,
                )
            except CommitError as error:
                self._bad_change(peer_id, height, str(error))
                return
            if change.header.chain_id != self._chain_id:
                self._bad_change(peer_id, height, "a header of another chain")
                return
            if change.header.next_validators_hash != change.validators.hash:
                self._bad_change(peer_id, height, "the header does not name that set")
                return
            self._trusted.append((height, change.validators))
            self.report.validator_set_changes += 1
            logger.info("state sync: validator set change at height %d verified", height)
        waiting, self._waiting = self._waiting, []
        for waiting_peer, offer in waiting:
            self._on_offer(waiting_peer, offer)

    def _bad_change(self, peer_id: str, height: int, reason: str) -> None:
        line = f"set change at height {height} from {peer_id[:16]}: {reason}"
        if len(self.report.refused_offers) < MAX_REPORTED_REFUSALS:
            self.report.refused_offers.append(line)
        logger.warning("state sync: %s", line)
        self._p2p.report_misbehaviour(peer_id, Misbehaviour.BAD_SYNC_RESPONSE)

    def _refuse_offer(self, manifest: Manifest, reason: str) -> None:
        line = f"height {manifest.height} digest {manifest.digest.hex()[:16]}: {reason}"
        refused = self.report.refused_offers
        if line not in refused and len(refused) < MAX_REPORTED_REFUSALS:
            self.report.refused_offers.append(line)
            logger.warning("state sync: offer refused, %s", line)

    def _on_offer(self, peer_id: str, offer: Offer) -> None:
        manifest = offer.manifest
        if manifest.chain_id != self._chain_id:
            self._refuse_offer(manifest, "another chain")
            return
        validators = self._trusted_set(manifest, peer_id)
        if validators is None:
            if not self._settings.trust_height and len(self._waiting) < MAX_WAITING_OFFERS:
                self._waiting.append((peer_id, offer))  # until set-change proofs arrive
            return
        candidate = self._candidates.get(manifest.digest)
        if candidate is None:
            if len(self._candidates) >= MAX_CANDIDATES:
                return  # a peer inventing manifests: the vouched ones came first or come again
            candidate = self._candidates[manifest.digest] = _Candidate(manifest)
        candidate.peers.add(peer_id)
        key = (manifest.height, validators.hash)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = Tally(self._chain_id, manifest.height, validators)
        for vouch in offer.vouches:
            reason = tally.add(manifest.digest, vouch)
            if reason is None:
                continue
            line = f"{vouch.validator.hex()[:16]} at height {manifest.height}: {reason}"
            refused = self.report.refused_vouches
            if line not in refused and len(refused) < MAX_REPORTED_REFUSALS:
                self.report.refused_vouches.append(line)
                logger.warning("state sync: vouch from %s refused: %s", peer_id[:16], line)
            if reason == "forged signature":
                self._p2p.report_misbehaviour(peer_id, Misbehaviour.INVALID_SIGNATURE)

    def _everyone_offered(self) -> bool:
        """Discovery may end early: every peer asked has offered, and a snapshot has a quorum."""
        if not self._asked or not self._asked <= self._offered:
            return False
        return any(
            tally.has_quorum(digest)
            for digest, candidate in self._candidates.items()
            for (height, _), tally in self._tallies.items()
            if height == candidate.manifest.height
        )

    def _vouched(self) -> list[tuple[_Candidate, Tally]]:
        """Candidates more than 2/3 of their trusted set vouched for, newest first."""
        found = []
        for digest, candidate in self._candidates.items():
            manifest = candidate.manifest
            trusted = self._trusted_set(manifest)
            if trusted is None:
                self._refuse_offer(
                    manifest,
                    "its validator set is not one this node trusts (not the genesis set nor "
                    "one reached from it by proven changes, nor [statesync] trust_hash)",
                )
                continue
            tally = self._tallies[(manifest.height, trusted.hash)]
            if tally.has_quorum(digest):
                found.append((candidate, tally))
            else:
                self._refuse_offer(
                    manifest,
                    f"vouched by {tally.power(digest)} of {trusted.total_power} voting power "
                    "(more than 2/3 needed) so far",
                )
        return sorted(found, key=lambda item: -item[0].manifest.height)

    def _ask_offers(self) -> None:
        for peer_id in self._p2p.connected_peers():
            if peer_id not in self._asked:
                self._asked.add(peer_id)
                self._send(peer_id, OffersRequest())

    def _send(self, peer_id: str, message: StateSyncMessage) -> bool:
        return self._p2p.send(peer_id, STATESYNC_CHANNEL, encode_statesync(message))

    async def _receive_loop(self) -> None:
        async for received in self._p2p.messages():
            if received.channel != STATESYNC_CHANNEL:
                continue  # consensus and block-sync traffic: this node is not running yet
            try:
                message = decode_statesync(received.payload, self._limits)
            except DecodeError as error:
                self._p2p.report_misbehaviour(received.peer_id, Misbehaviour.PROTOCOL_VIOLATION)
                logger.warning(
                    "state sync: undecodable message from %s: %s", received.peer_id[:16], error
                )
                continue
            self._receive(received.peer_id, message)

    # ------------------------------------------------------------------ joining

    async def run(self, data_directory: Path) -> JoinReport:
        """Join; StateSyncError after `join_timeout_ms` without a restored snapshot."""
        started = time.monotonic()
        receiving = asyncio.create_task(self._receive_loop())
        try:
            await asyncio.wait_for(self._join(started), self._settings.join_timeout_ms / 1000)
        except TimeoutError:
            raise StateSyncError(
                f"no vouched snapshot restored within [statesync] join_timeout_ms "
                f"({self._settings.join_timeout_ms}); refused offers: "
                f"{'; '.join(self.report.refused_offers) or 'none received'}"
            ) from None
        finally:
            receiving.cancel()
        self.report.seconds = round(time.monotonic() - started, 3)
        (data_directory / REPORT_FILE).write_text(json.dumps(asdict(self.report), indent=1))
        return self.report

    async def _join(self, started: float) -> None:
        discovery_s = self._settings.discovery_time_ms / 1000
        while True:
            deadline = time.monotonic() + discovery_s
            while time.monotonic() < deadline and not self._everyone_offered():
                self._ask_offers()
                await asyncio.sleep(0.05)
            self._asked.clear()
            self._offered.clear()  # ask again next round: snapshots are made as the chain grows
            for candidate, tally in self._vouched():
                self.report.discovery_s = round(time.monotonic() - started, 3)
                if await self._restore(candidate, tally):
                    return

    async def _restore(self, candidate: _Candidate, tally: Tally) -> bool:
        manifest = candidate.manifest
        logger.info(
            "state sync: restoring height %d (digest %s, %d chunks) from %d peer(s)",
            manifest.height,
            manifest.digest.hex()[:16],
            len(manifest.chunk_hashes),
            len(candidate.peers),
        )
        fetched = await _ChunkFetch(self, candidate).run()
        if fetched is None:
            return False
        commit = await self._fetch_commit(candidate, manifest)
        self._store.finish_restore(
            RestoredHead(
                self._chain_id,
                manifest.height,
                manifest.block_id,
                manifest.app_hash,
                (manifest.validators, manifest.next_validators, manifest.after_next_validators),
                commit,
            )
        )
        report = self.report
        report.height = manifest.height
        report.digest = manifest.digest.hex()
        report.chunks = len(manifest.chunk_hashes)
        report.entries = manifest.entry_count
        report.chunk_bytes = fetched
        report.vouched_power = tally.power(manifest.digest)
        report.commit_restored = commit is not None
        report.total_power = tally.validators.total_power
        logger.info(
            "state sync: restored height %d, %d entries", manifest.height, manifest.entry_count
        )
        return True

    async def _fetch_commit(
        self, candidate: _Candidate, manifest: Manifest
    ) -> CommitCertificate | None:
        """The certificate committing the snapshot's block, from the offering peers, verified
        against the set of that height; None (the node then cannot propose height h + 1, and
        says so) if none answers one within a chunk request's timeout."""
        future: asyncio.Future[CommitCertificate] = asyncio.get_running_loop().create_future()
        self._commit_wanted = (manifest, future)
        for peer_id in candidate.peers:
            self._send(peer_id, CommitRequest(manifest.height))
        try:
            return await asyncio.wait_for(future, self._settings.chunk_request_timeout_ms / 1000)
        except TimeoutError:
            logger.warning("state sync: no commit certificate of height %d", manifest.height)
            return None
        finally:
            self._commit_wanted = None

    def _on_commit(
        self,
        peer_id: str,
        message: CommitResponse,
        manifest: Manifest,
        future: asyncio.Future[CommitCertificate],
    ) -> None:
        if message.commit is None or message.height != manifest.height or future.done():
            return
        try:
            verify_commit(
                message.commit,
                manifest.validators,
                self._chain_id,
                height=manifest.height,
                block_id=manifest.block_id,
            )
        except CommitError as error:
            logger.warning("state sync: commit from %s refused: %s", peer_id[:16], error)
            self._p2p.report_misbehaviour(peer_id, Misbehaviour.BAD_SYNC_RESPONSE)
            return
        future.set_result(message.commit)


class _ChunkFetch:
    """Fetch one snapshot's chunks: bounded requests in flight, in total and per peer; chunks
    are written in index order (out-of-order ones wait in a window of bounded size)."""

    def __init__(self, join: StateSyncJoin, candidate: _Candidate) -> None:
        self._join = join
        self._manifest = candidate.manifest
        self._peers = set(candidate.peers)
        settings = join._settings
        self._in_flight_limit = settings.max_chunk_requests_in_flight
        self._per_peer_limit = settings.max_chunk_requests_per_peer
        self._timeout_s = settings.chunk_request_timeout_ms / 1000
        self._max_strikes = settings.max_chunk_strikes
        self._pending: list[int] = list(range(len(self._manifest.chunk_hashes)))
        self._requested: dict[int, tuple[str, float]] = {}
        self._ready: dict[int, bytes] = {}
        self._by_peer: dict[str, int] = defaultdict(int)
        self._next = 0
        self._last_key = b""
        self._entries = 0
        self._bytes = 0

    async def run(self) -> int | None:
        """Bytes of chunks restored, or None if no peer can serve the rest (store left empty of
        chain metadata: the next attempt starts over)."""
        self._join._store.begin_restore()
        total = len(self._manifest.chunk_hashes)
        while self._next < total:
            self._request()
            if not self._requested and not self._ready.get(self._next):
                logger.warning(
                    "state sync: no peer left to serve snapshot %d", self._manifest.height
                )
                return None
            try:
                peer_id, response = await asyncio.wait_for(self._join._chunks.get(), 0.1)
            except TimeoutError:
                self._expire()
                continue
            self._on_response(peer_id, response)
            self._apply_ready()
        if self._entries != self._manifest.entry_count:
            raise StateSyncError("the chunks hold another number of entries than the manifest")
        return self._bytes

    def _usable(self) -> list[str]:
        connected = set(self._join._p2p.connected_peers())
        strikes = self._join.report.strikes
        return [
            peer
            for peer in self._peers
            if peer in connected and strikes.get(peer, 0) < self._max_strikes
        ]

    def _request(self) -> None:
        window_end = self._next + 2 * self._in_flight_limit  # bounds chunks waiting to be written
        peers = self._usable()
        while self._pending and len(self._requested) < self._in_flight_limit and peers:
            index = min(self._pending)
            if index >= window_end:
                return
            free = [peer for peer in peers if self._by_peer[peer] < self._per_peer_limit]
            if not free:
                return
            peer = min(free, key=lambda candidate: (self._by_peer[candidate], candidate))
            self._pending.remove(index)
            if not self._join._send(peer, ChunkRequest(self._manifest.height, index)):
                self._pending.append(index)
                self._strike(peer, "send queue full")
                peers = self._usable()
                continue
            self._requested[index] = (peer, time.monotonic())
            self._by_peer[peer] += 1

    def _expire(self) -> None:
        now = time.monotonic()
        for index, (peer, sent) in list(self._requested.items()):
            if now - sent > self._timeout_s:
                self._give_back(index, peer)
                self._strike(peer, f"chunk {index} not answered in time")

    def _give_back(self, index: int, peer: str) -> None:
        del self._requested[index]
        self._by_peer[peer] -= 1
        self._pending.append(index)
        self._join.report.refetched_chunks += 1

    def _strike(self, peer: str, reason: str) -> None:
        strikes = self._join.report.strikes
        strikes[peer] = strikes.get(peer, 0) + 1
        logger.warning("state sync: strike %d on peer %s: %s", strikes[peer], peer[:16], reason)

    def _on_response(self, peer: str, response: ChunkResponse) -> None:
        index = response.index
        asked = self._requested.get(index)
        if response.height != self._manifest.height or asked is None or asked[0] != peer:
            return  # late (given to another peer since) or for another attempt: not ours now
        if response.chunk is None:
            self._give_back(index, peer)
            self._peers.discard(peer)  # pruned it: ask the others
            return
        if chunk_hash(response.chunk) != self._manifest.chunk_hashes[index]:
            self._give_back(index, peer)
            self._strike(peer, f"chunk {index} does not match the vouched manifest")
            self._join._p2p.report_misbehaviour(peer, Misbehaviour.BAD_SYNC_RESPONSE)
            return
        del self._requested[index]
        self._by_peer[peer] -= 1
        self._ready[index] = response.chunk
        served = self._join.report.served
        served[peer] = served.get(peer, 0) + 1

    def _apply_ready(self) -> None:
        while self._next in self._ready:
            chunk = self._ready.pop(self._next)
            try:
                entries = read_chunk(chunk, self._last_key)
            except DecodeError as error:
                # The hash matched the vouched manifest: the vouchers vouched for a bad snapshot.
                raise StateSyncError(f"vouched chunk {self._next} is malformed: {error}") from None
            self._join._store.put_restored_entries(entries)
            if entries:
                self._last_key = entries[-1][0]
            self._entries += len(entries)
            self._bytes += len(chunk)
            self._next += 1
