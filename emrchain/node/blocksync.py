"""Block sync: a node that is behind fetches committed blocks with their commit certificates
from peers, verifies each certificate against the validator set of that height, applies the
block, and hands over to consensus at the next height.

Peers announce their latest committed height with a status message every status interval. We
fetch when a peer is two or more heights ahead, or one ahead while our own height has not moved
for a whole interval (then consensus is not going to deliver it to us on its own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from emrchain.node.chain import Chain, ChainHaltError
from emrchain.node.messages import (
    BlockRequest,
    BlockResponse,
    Message,
    StatusMessage,
)
from emrchain.store import BlockRefusedError
from emrchain.types import CommitError, verify_commit

logger = logging.getLogger(__name__)


class BlockSync:
    """Tracks peer heights and fetches the next block when we fall behind."""

    def __init__(
        self,
        chain: Chain,
        send: Callable[[str, Message], bool],
        on_applied: Callable[[int], None],
        request_timeout_ticks: int = 4,
        max_peers_tracked: int = 1_000,
    ) -> None:
        self._chain = chain
        self._send = send
        self._on_applied = on_applied
        self._request_timeout_ticks = request_timeout_ticks
        self._max_peers_tracked = max_peers_tracked
        self._peer_heights: dict[str, int] = {}
        self._outstanding: tuple[int, str, int] | None = None  # (height, peer, ticks waited)
        self._height_at_last_tick = -1
        self.blocks_synced = 0

    def status(self) -> StatusMessage:
        height = self._chain.height
        return StatusMessage(height, self._chain.store.last_block_id() if height else bytes(32))

    def forget_peer(self, peer_id: str) -> None:
        self._peer_heights.pop(peer_id, None)

    @property
    def best_peer_height(self) -> int:
        return max(self._peer_heights.values(), default=0)

    def tick(self) -> None:
        """Called once per status interval: expire a slow request, then fetch if behind."""
        if self._outstanding is not None:
            height, peer, ticks = self._outstanding
            if height <= self._chain.height or ticks >= self._request_timeout_ticks:
                self._outstanding = None
            else:
                self._outstanding = (height, peer, ticks + 1)
        stalled = self._chain.height == self._height_at_last_tick
        self._height_at_last_tick = self._chain.height
        self._maybe_request(stalled)

    def on_status(self, peer_id: str, message: StatusMessage) -> None:
        if peer_id in self._peer_heights or len(self._peer_heights) < self._max_peers_tracked:
            self._peer_heights[peer_id] = message.height
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
        if height != self._chain.height + 1 or self._chain.applying:
            return  # consensus (or another response) got there first, or is writing it
        try:
            verify_commit(
                commit,
                self._chain.validator_set(height),
                self._chain.chain_id,
                height=height,
                block_id=block.block_id,
            )
            block.validate_basic(self._chain.limits)
        except (CommitError, ValueError) as error:
            logger.warning("peer %s sent an unverifiable block %d: %s", peer_id[:16], height, error)
            self._peer_heights.pop(peer_id, None)
            return
        try:
            self._chain.apply_block(block, commit)
        except BlockRefusedError as error:
            # A verified commit for a block that does not extend ours: we are on another fork,
            # which correct validators can never produce. Stop rather than diverge further.
            raise ChainHaltError(
                f"committed block {height} does not extend our chain: {error}"
            ) from error
        self.blocks_synced += 1
        self._outstanding = None
        logger.info("synced height %d from peer %s", height, peer_id[:16])
        self._on_applied(height)
        self._maybe_request(stalled=False)

    def _maybe_request(self, stalled: bool) -> None:
        if self._outstanding is not None:
            return
        next_height = self._chain.height + 1
        needed_ahead = 1 if stalled else 2
        candidates = sorted(
            peer
            for peer, height in self._peer_heights.items()
            if height >= self._chain.height + needed_ahead
        )
        if not candidates:
            return
        # Spread requests over peers deterministically by height.
        peer = candidates[next_height % len(candidates)]
        if self._send(peer, BlockRequest(next_height)):
            self._outstanding = (next_height, peer, 0)
