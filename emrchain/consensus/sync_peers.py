"""Whom block sync asks for the next block, and when it gives up on them: the one policy the
node's `BlockSync` and the simulator's sync both use (docs/spec/consensus.md §4.6).

Pure: no I/O and no clock; time arrives as ticks (the host's status interval). A peer's claimed
height is only a hint for whom to ask: it is never believed, only a block whose commit
verifies moves a chain, and a claim never counts towards "caught up". Requests go one at a
time, rotate over the peers that claim to be ahead, and time out; a peer that times out or
answers wrongly is demoted (its claim dropped and ignored for a while) and reported by the
host, which bans it after the misbehaviour threshold. So a peer that claims a huge height and
never answers costs one timeout per demotion period, and the next request goes to another peer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

Peer = TypeVar("Peer", str, int)
"""A peer's identity on its host: the node's peer id, or the simulator's node index."""


@dataclass(frozen=True, slots=True)
class Outstanding(Generic[Peer]):
    """The one request in flight: asked of `peer`, for `height`, `ticks` ticks ago."""

    peer: Peer
    height: int
    ticks: int


class SyncPeers(Generic[Peer]):
    """Claimed heights (hints), the request in flight, the rotation and the demotions."""

    def __init__(self, request_timeout_ticks: int, demotion_ticks: int, max_peers: int) -> None:
        if request_timeout_ticks < 1 or demotion_ticks < 1 or max_peers < 1:
            raise ValueError("sync timeouts and the peer bound must be at least 1")
        self._request_timeout_ticks = request_timeout_ticks
        self._demotion_ticks = demotion_ticks
        self._max_peers = max_peers
        self._claims: dict[Peer, int] = {}
        self._demoted_until: dict[Peer, int] = {}
        # The last height asked of each peer: its answer for that height is solicited, even
        # when it comes after the timeout (a slow honest peer is not reported for being late).
        self._asked: dict[Peer, int] = {}
        self._outstanding: Outstanding[Peer] | None = None
        self._last_asked: Peer | None = None
        self._now_tick = 0
        self.timeouts = 0
        self.demotions = 0

    # ------------------------------------------------------------------ reads

    @property
    def outstanding(self) -> Outstanding[Peer] | None:
        return self._outstanding

    def claimed_height(self, peer: Peer) -> int | None:
        return self._claims.get(peer)

    def vouched_claim(self, liars: int) -> int:
        """A height some honest peer claims when at most `liars` peers lie: the (liars + 1)-th
        highest claim in good standing (0 with fewer claims). Readiness uses it, so that one
        peer claiming a huge height cannot keep a node "catching up" for ever."""
        claims = sorted(self._claims.values(), reverse=True)
        return claims[liars] if 0 <= liars < len(claims) else 0

    def is_demoted(self, peer: Peer) -> bool:
        return self._demoted_until.get(peer, -1) > self._now_tick

    def solicited(self, peer: Peer, height: int) -> bool:
        """We asked `peer` for `height` (its latest request), answered or not yet."""
        return self._asked.get(peer) == height

    # ----------------------------------------------------------------- inputs

    def claim(self, peer: Peer, height: int) -> None:
        """`peer` says its latest committed block is at `height` (ignored while demoted)."""
        if self.is_demoted(peer):
            return
        if peer in self._claims or len(self._claims) < self._max_peers:
            self._claims[peer] = height

    def forget(self, peer: Peer) -> None:
        """`peer` disconnected: drop its claim and any request to it."""
        self._claims.pop(peer, None)
        self._asked.pop(peer, None)
        self._demoted_until.pop(peer, None)
        if self._outstanding is not None and self._outstanding.peer == peer:
            self._outstanding = None

    def choose(self, our_height: int, *, stalled: bool) -> Peer | None:
        """Whom to ask for `our_height + 1` now, or None (a request is in flight, or nobody
        claims to be far enough ahead). Ahead means two heights, or one while our height has
        not moved for a whole tick (then consensus is not going to deliver it on its own).
        Rotates: the first candidate after the one asked last, in a fixed order."""
        if self._outstanding is not None:
            return None
        needed = our_height + (1 if stalled else 2)
        candidates = sorted(peer for peer, height in self._claims.items() if height >= needed)
        if not candidates:
            return None
        last = self._last_asked
        if last is not None:
            for peer in candidates:
                if peer > last:
                    return peer
        return candidates[0]

    def requested(self, peer: Peer, height: int) -> None:
        """The host sent `peer` a request for `height`."""
        self._outstanding = Outstanding(peer, height, 0)
        self._last_asked = peer
        if peer in self._asked or len(self._asked) < self._max_peers:
            self._asked[peer] = height

    def answered(self, peer: Peer, height: int) -> None:
        """`peer`'s answer for `height` arrived and was handled (applied or not needed)."""
        if self._asked.get(peer) == height:
            del self._asked[peer]
        outstanding = self._outstanding
        if outstanding is not None and outstanding.peer == peer and outstanding.height == height:
            self._outstanding = None

    def demote(self, peer: Peer) -> None:
        """`peer` did not answer in time or answered wrongly: drop its claim, ignore its claims
        for the demotion period, and stop waiting for it."""
        self.demotions += 1
        self._claims.pop(peer, None)
        self._demoted_until[peer] = self._now_tick + self._demotion_ticks
        if self._outstanding is not None and self._outstanding.peer == peer:
            self._outstanding = None

    def tick(self, our_height: int) -> Peer | None:
        """One tick passed: end served demotions, drop a request our height has passed, and time
        out a request waited on for `request_timeout_ticks`. Returns the peer that timed out
        (already demoted; the host reports it), or None."""
        self._now_tick += 1
        served = [peer for peer, until in self._demoted_until.items() if until <= self._now_tick]
        for peer in served:
            del self._demoted_until[peer]
        outstanding = self._outstanding
        if outstanding is None:
            return None
        if outstanding.height <= our_height:
            self._outstanding = None
            return None
        if outstanding.ticks + 1 < self._request_timeout_ticks:
            self._outstanding = Outstanding(
                outstanding.peer, outstanding.height, outstanding.ticks + 1
            )
            return None
        self.timeouts += 1
        self.demote(outstanding.peer)
        return outstanding.peer
