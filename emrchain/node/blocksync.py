"""Block sync: a node that is behind fetches committed blocks with their commit certificates
from several peers at once, verifies each certificate against the validator set of its height,
applies the blocks strictly in height order, and hands over to consensus at the next height
(docs/spec/consensus.md §4.6).

Peers announce their latest committed height with a status message every status interval.
Those heights are hints for whom to ask (`SyncPeers`, the policy the simulator shares), never
believed: only a block whose commit verifies is applied. Up to `sync_window_blocks` heights
above ours are requested at once, one `BlockRequest` per height, spread over the peers that
claim them (at most `sync_max_requests_per_peer` each). Blocks arriving ahead of the next
height wait in a `SyncBuffer` (bounded by `sync_window_blocks` and `sync_buffer_max_bytes`) and
are applied in order as the gap below them fills. Each request times out on its own; a peer
that times out or answers wrongly is demoted, its heights are asked of other peers, and it is
reported (`Misbehaviour.SYNC_TIMEOUT`, `BAD_SYNC_RESPONSE`), so the peer manager bans it after
the misbehaviour threshold.

Only a response we asked that peer for is taken; any other is refused and reported. A block
goes through `Chain.apply_block`, the gate consensus passes too: whichever delivers a height
first applies it, and the other delivery of the same block does nothing. Applying is done one
block per event-loop turn (`schedule`), so a full buffer does not hold up votes and RPC.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from emrchain.consensus.sync_peers import Buffered, SyncBuffer, SyncPeers
from emrchain.node.chain import BlockVerdict, Chain, ChainHaltError
from emrchain.node.messages import (
    BlockPruned,
    BlockRequest,
    BlockResponse,
    Message,
    StatusMessage,
)
from emrchain.p2p import Misbehaviour
from emrchain.rpc.node_view import SyncCounters
from emrchain.store import BlockRefusedError
from emrchain.types import Block, CommitCertificate, CommitError, verify_commit

logger = logging.getLogger(__name__)

MAX_PEERS_TRACKED = 1_000
"""Peers whose claimed heights (and sync counters) are kept; the peer manager's connection
limits are far lower."""

Synced = tuple[Block, CommitCertificate]


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """`[consensus] status_interval_ms` and the `sync_*` settings."""

    status_interval_ms: int
    sync_request_timeout_ms: int
    sync_demotion_ms: int
    sync_window_blocks: int
    sync_max_requests_per_peer: int
    sync_buffer_max_bytes: int

    def ticks(self, duration_ms: int) -> int:
        """Whole status intervals covering `duration_ms`, at least one."""
        return max(1, -(-duration_ms // self.status_interval_ms))


class _RunNow:
    """The default `schedule`: run each step at once, one after the other (not nested, so a
    full buffer does not recurse once per block)."""

    def __init__(self) -> None:
        self._steps: deque[Callable[[], None]] = deque()
        self._running = False

    def __call__(self, step: Callable[[], None]) -> None:
        self._steps.append(step)
        if self._running:
            return
        self._running = True
        try:
            while self._steps:
                self._steps.popleft()()
        finally:
            self._running = False


class BlockSync:
    """Tracks peer heights, keeps a window of block requests in flight while we are behind,
    and applies what arrives in height order."""

    def __init__(
        self,
        chain: Chain,
        send: Callable[[str, Message], bool],
        on_applied: Callable[[int], None],
        report: Callable[[str, Misbehaviour], object],
        limits: SyncLimits,
        schedule: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        """`schedule(step)` runs `step` soon (the node: on the next event-loop turn; by
        default: at once)."""
        self._chain = chain
        self._send = send
        self._on_applied = on_applied
        self._report = report
        self._schedule: Callable[[Callable[[], None]], object] = (
            schedule if schedule is not None else _RunNow()
        )
        self.peers: SyncPeers[str] = SyncPeers(
            limits.ticks(limits.sync_request_timeout_ms),
            limits.ticks(limits.sync_demotion_ms),
            MAX_PEERS_TRACKED,
            window_blocks=limits.sync_window_blocks,
            max_requests_per_peer=limits.sync_max_requests_per_peer,
        )
        self.buffer: SyncBuffer[Synced] = SyncBuffer(
            limits.sync_window_blocks, limits.sync_buffer_max_bytes
        )
        self._height_at_last_tick = -1
        self._apply_scheduled = False
        self.blocks_synced = 0
        self.responses_refused = 0
        self.blocks_pruned_answers = 0
        """Requests peers answered with `BlockPruned`."""
        self.blocks_synced_by_peer: dict[str, int] = {}
        """Blocks applied from each peer's responses (/status, /metrics)."""

    def counters(self) -> SyncCounters:
        peers = self.peers
        return SyncCounters(
            blocks_by_peer=dict(self.blocks_synced_by_peer),
            requests_by_peer=dict(peers.requests_sent),
            requests_in_flight=len(peers.in_flight),
            buffered_blocks=len(self.buffer),
            buffered_bytes=self.buffer.size_bytes,
            timeouts=peers.timeouts,
            responses_refused=self.responses_refused,
            pruned_answers=self.blocks_pruned_answers,
        )

    def status(self) -> StatusMessage:
        height = self._chain.height
        return StatusMessage(height, self._chain.store.last_block_id() if height else bytes(32))

    def forget_peer(self, peer_id: str) -> None:
        self.peers.forget(peer_id)

    def tick(self) -> None:
        """Called once per status interval: time out slow requests, then fetch if behind."""
        chain = self._chain
        busy = chain.applying or (chain.height + 1) in self.buffer
        for peer_id in self.peers.tick(chain.height, busy=busy):
            logger.info("peer %s did not answer a block request in time", peer_id[:16])
            self._report(peer_id, Misbehaviour.SYNC_TIMEOUT)
        stalled = self._chain.height == self._height_at_last_tick
        self._height_at_last_tick = self._chain.height
        self._request(stalled)
        self._schedule_apply()

    def on_status(self, peer_id: str, message: StatusMessage) -> None:
        self.peers.claim(peer_id, message.height)
        self._request(stalled=False)

    def on_request(self, peer_id: str, message: BlockRequest) -> None:
        if not 1 <= message.height <= self._chain.height:
            return
        store = self._chain.store
        block = store.block(message.height)
        commit = store.commit(message.height)
        if block is not None and commit is not None:
            self._send(peer_id, BlockResponse(block, commit))
            return
        base = store.base_height()
        if message.height < base:
            # Pruned (perhaps just now): say so, so the peer asks another at once instead of
            # timing us out.
            self._send(peer_id, BlockPruned(message.height, base))

    def on_pruned(self, peer_id: str, message: BlockPruned) -> None:
        """`peer_id` pruned a height we asked it for: ask the others (a refusal we did not ask
        for is reported like any unsolicited response)."""
        height = message.height
        if not self.peers.solicited(peer_id, height) or message.base_height <= height:
            self.peers.answered(peer_id, height)
            self._refuse(peer_id, height, "a pruned-block answer to no request of ours")
            return
        self.peers.unavailable(peer_id, height, message.base_height)
        self.blocks_pruned_answers += 1
        logger.info(
            "peer %s pruned height %d (keeps from %d); asking another peer",
            peer_id[:16],
            height,
            message.base_height,
        )
        self._request(stalled=False)

    def on_response(self, peer_id: str, message: BlockResponse) -> None:
        block, commit = message.block, message.commit
        height = block.height
        solicited = self.peers.solicited(peer_id, height)
        self.peers.answered(peer_id, height)
        if not solicited:
            # Not how peers sync: we ask for every block we take.
            self._refuse(peer_id, height, "a block-sync response nobody asked for")
            return
        if height <= self._chain.height or height in self.buffer:
            return  # consensus or another peer got there first; asked for, so not held against it
        error = _mismatch(block, commit)
        if error is not None:
            self._demote(peer_id, height, error)
            self._request(stalled=False)
            return
        entry = Buffered(peer_id, (block, commit), message.size_bytes)
        if not self.buffer.offer(height, self._chain.height, entry):
            self.peers.retry(height)  # no room now: asked for again once the buffer drains
        self._schedule_apply()
        self._request(stalled=False)

    def _schedule_apply(self) -> None:
        if not self._apply_scheduled and (self._chain.height + 1) in self.buffer:
            self._apply_scheduled = True
            self._schedule(self._apply_next)

    def _apply_next(self) -> None:
        """Apply the buffered block for the next height, if any, then schedule the one after."""
        self._apply_scheduled = False
        if self._chain.applying:
            return  # consensus is writing the next height; the next tick or response retries
        entry = self.buffer.take_next(self._chain.height)
        if entry is None:
            return
        block, commit = entry.item
        peer_id = str(entry.peer)
        error = self._verification_error(block, commit)
        if error is not None:
            self._demote(peer_id, block.height, error)
        else:
            self._apply(peer_id, block, commit)
        self._request(stalled=False)
        self._schedule_apply()

    def _apply(self, peer_id: str, block: Block, commit: CommitCertificate) -> None:
        # The transactions' signatures are not verified again (most of a block's cost): a
        # verified commit means more than two thirds of the voting power precommitted the
        # block, so at least one correct validator validated it, and validation refuses a
        # block with any bad signature. Under the assumption every commit rests on (fewer
        # than a third faulty) they all verify; and the next block's app hash, certified by
        # its own commit, would expose an execution that differed from the validators'.
        count = len(block.txs)
        verdict = BlockVerdict(True, signature_verdicts=b"\x01" * count)
        try:
            applied = self._chain.apply_block(block, commit, verdict)
        except BlockRefusedError as refused:
            # A verified commit for a block that does not extend ours: we are on another fork,
            # which correct validators can never produce. Stop rather than diverge further.
            raise ChainHaltError(
                f"committed block {block.height} does not extend our chain: {refused}"
            ) from refused
        if applied:
            self.blocks_synced += 1
            by_peer = self.blocks_synced_by_peer
            if peer_id in by_peer or len(by_peer) < MAX_PEERS_TRACKED:
                by_peer[peer_id] = by_peer.get(peer_id, 0) + 1
            logger.info("synced height %d from peer %s", block.height, peer_id[:16])
            self._on_applied(block.height)

    def _verification_error(self, block: Block, commit: CommitCertificate) -> str | None:
        """Why `commit` does not prove `block` at its height, or None."""
        try:
            verify_commit(
                commit,
                self._chain.validator_set(block.height),
                self._chain.chain_id,
                height=block.height,
                block_id=block.block_id,
            )
            block.validate_basic(self._chain.limits)
        except (CommitError, ValueError) as error:
            return f"an unverifiable block: {error}"
        return None

    def _demote(self, peer_id: str, height: int, reason: str) -> None:
        """`peer_id` sent a block that is not what its commit proves: forget everything it
        sent, ask others for those heights, and report it."""
        self.peers.demote(peer_id)
        for dropped in self.buffer.drop_from(peer_id):
            self.peers.retry(dropped)
        self.peers.retry(height)
        self._refuse(peer_id, height, reason)

    def _refuse(self, peer_id: str, height: int, reason: str) -> None:
        """Count and report a response we do not apply (the manager's log is rate-limited)."""
        self.responses_refused += 1
        logger.debug("block %d from peer %s refused: %s", height, peer_id[:16], reason)
        self._report(peer_id, Misbehaviour.BAD_SYNC_RESPONSE)

    def _request(self, stalled: bool) -> None:
        """Fill the window: one request per height not in flight and not buffered, while the
        buffer has room for what they bring."""
        if not self.buffer.has_room():
            return
        our_height = self._chain.height
        for peer_id, height in self.peers.plan(our_height, stalled=stalled, have=self.buffer):
            # Recorded even if the send fails (queue full): the request then times out and
            # the height is asked of another peer.
            self._send(peer_id, BlockRequest(height))
            self.peers.requested(peer_id, height)


def _mismatch(block: Block, commit: CommitCertificate) -> str | None:
    """What is wrong with a response before its height's validator set is at hand: a commit
    for another height or block (checked in full when the block is next to apply)."""
    if commit.height != block.height or commit.block_id != block.block_id:
        return "a commit for another block"
    return None
