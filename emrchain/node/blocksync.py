"""Block sync: a node that is behind fetches committed blocks with their commit certificates
from peers, verifies each certificate against the validator set of that height, applies the
block, and hands over to consensus at the next height (docs/spec/consensus.md §4.6).

Peers announce their latest committed height with a status message every status interval.
Those heights are hints for whom to ask (`SyncPeers`, the policy the simulator shares), never
believed: only a block whose commit verifies is applied. We fetch when a peer claims to be two
or more heights ahead, or one ahead while our own height has not moved for a whole interval
(then consensus is not going to deliver it to us on its own). One request is in flight at a
time; it rotates over the peers that claim to be ahead and times out, and a peer that times
out or answers wrongly is demoted and reported (`Misbehaviour.SYNC_TIMEOUT`,
`BAD_SYNC_RESPONSE`), so the peer manager bans it after the misbehaviour threshold.

A response is applied only if its block is the one we need next, nobody is applying that
height, and its commit verifies. A response nobody asked for is taken on those same terms (the
block is as good as any other with a verified commit), and reported otherwise. The block goes
through `Chain.apply_block`, the gate consensus passes too: whichever delivers a height first
applies it, and the other delivery of the same block does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from emrchain.consensus.sync_peers import SyncPeers
from emrchain.node.chain import Chain, ChainHaltError
from emrchain.node.messages import (
    BlockRequest,
    BlockResponse,
    Message,
    StatusMessage,
)
from emrchain.p2p import Misbehaviour
from emrchain.store import BlockRefusedError
from emrchain.types import Block, CommitCertificate, CommitError, verify_commit

logger = logging.getLogger(__name__)

MAX_PEERS_TRACKED = 1_000
"""Peers whose claimed heights are kept; the peer manager's connection limits are far lower."""


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """`[consensus] status_interval_ms`, `sync_request_timeout_ms` and `sync_demotion_ms`."""

    status_interval_ms: int
    sync_request_timeout_ms: int
    sync_demotion_ms: int

    def ticks(self, duration_ms: int) -> int:
        """Whole status intervals covering `duration_ms`, at least one."""
        return max(1, -(-duration_ms // self.status_interval_ms))


class BlockSync:
    """Tracks peer heights and fetches the next block when we fall behind."""

    def __init__(
        self,
        chain: Chain,
        send: Callable[[str, Message], bool],
        on_applied: Callable[[int], None],
        report: Callable[[str, Misbehaviour], object],
        limits: SyncLimits,
    ) -> None:
        self._chain = chain
        self._send = send
        self._on_applied = on_applied
        self._report = report
        self.peers: SyncPeers[str] = SyncPeers(
            limits.ticks(limits.sync_request_timeout_ms),
            limits.ticks(limits.sync_demotion_ms),
            MAX_PEERS_TRACKED,
        )
        self._height_at_last_tick = -1
        self.blocks_synced = 0
        self.responses_refused = 0

    def status(self) -> StatusMessage:
        height = self._chain.height
        return StatusMessage(height, self._chain.store.last_block_id() if height else bytes(32))

    def forget_peer(self, peer_id: str) -> None:
        self.peers.forget(peer_id)

    def tick(self) -> None:
        """Called once per status interval: time out a slow request, then fetch if behind."""
        timed_out = self.peers.tick(self._chain.height)
        if timed_out is not None:
            logger.info("peer %s did not answer a block request in time", timed_out[:16])
            self._report(timed_out, Misbehaviour.SYNC_TIMEOUT)
        stalled = self._chain.height == self._height_at_last_tick
        self._height_at_last_tick = self._chain.height
        self._maybe_request(stalled)

    def on_status(self, peer_id: str, message: StatusMessage) -> None:
        self.peers.claim(peer_id, message.height)
        self._maybe_request(stalled=False)

    def on_request(self, peer_id: str, message: BlockRequest) -> None:
        if not 1 <= message.height <= self._chain.height:
            return
        block = self._chain.store.block(message.height)
        commit = self._chain.store.commit(message.height)
        if block is not None and commit is not None:
            self._send(peer_id, BlockResponse(block, commit))

    def on_response(self, peer_id: str, message: BlockResponse) -> None:
        block, commit = message.block, message.commit
        height = block.height
        solicited = self.peers.solicited(peer_id, height)
        self.peers.answered(peer_id, height)
        if height != self._chain.height + 1 or self._chain.applying:
            # Consensus (or another response) got there first or is writing it. Only an answer
            # we asked for can arrive late honestly; anything else is not how peers sync.
            if not solicited:
                self._refuse(peer_id, height, "a block-sync response nobody asked for")
            return
        error = self._verification_error(block, commit)
        if error is not None:
            self.peers.demote(peer_id)
            self._refuse(peer_id, height, error)
            return
        try:
            applied = self._chain.apply_block(block, commit)
        except BlockRefusedError as refused:
            # A verified commit for a block that does not extend ours: we are on another fork,
            # which correct validators can never produce. Stop rather than diverge further.
            raise ChainHaltError(
                f"committed block {height} does not extend our chain: {refused}"
            ) from refused
        if applied:
            self.blocks_synced += 1
            logger.info("synced height %d from peer %s", height, peer_id[:16])
            self._on_applied(height)
        self._maybe_request(stalled=False)

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

    def _refuse(self, peer_id: str, height: int, reason: str) -> None:
        """Count and report a response we do not apply (the manager's log is rate-limited)."""
        self.responses_refused += 1
        logger.debug("block %d from peer %s refused: %s", height, peer_id[:16], reason)
        self._report(peer_id, Misbehaviour.BAD_SYNC_RESPONSE)

    def _maybe_request(self, stalled: bool) -> None:
        if self._chain.applying:
            return  # the next height is being written
        peer = self.peers.choose(self._chain.height, stalled=stalled)
        if peer is None:
            return
        next_height = self._chain.height + 1
        # Recorded even if the send fails (queue full): the request then times out and the
        # rotation moves on.
        self._send(peer, BlockRequest(next_height))
        self.peers.requested(peer, next_height)
