"""Whom block sync asks for which blocks, and when it gives up on them: the one policy the
node's `BlockSync` and the simulator's sync both use (docs/spec/consensus.md §4.6).

Pure: no I/O and no clock; time arrives as ticks (the host's status interval). A peer's claimed
height is only a hint for whom to ask: it is never believed, only a block whose commit
verifies moves a chain, and a claim never counts towards "caught up".

Requests are pipelined: up to `window_blocks` heights above ours are in flight at once, each
asked of one peer, spread over the peers that claim them (the one with fewest requests in
flight first, ties in rotation), at most `max_requests_per_peer` per peer. A peer answers its
requests in order, so only its oldest request counts ticks towards the timeout: a busy honest
peer with a full share of the window gets the whole timeout for each answer. A peer that times
out or answers wrongly is demoted (its claim dropped and ignored for a while, every height it
held released to be asked of another peer) and reported by the host, which bans it after the
misbehaviour threshold. So a peer that claims a huge height and never answers costs one
timeout per demotion period.

`SyncBuffer` holds the blocks that arrived ahead of the one we need, bounded by count and
bytes, so that they are applied strictly in height order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container
from dataclasses import dataclass
from typing import Generic, TypeVar

Peer = TypeVar("Peer", str, int)
"""A peer's identity on its host: the node's peer id, or the simulator's node index."""

Item = TypeVar("Item")
"""What the host buffers for a height: the node's (block, commit)."""


@dataclass(frozen=True, slots=True)
class Outstanding(Generic[Peer]):
    """A request in flight: asked of `peer`, for `height`; `ticks` counts the ticks it has been
    the oldest request to that peer; `sent` orders the requests (a sequence number)."""

    peer: Peer
    height: int
    ticks: int
    sent: int = 0


class SyncPeers(Generic[Peer]):
    """Claimed heights (hints), the requests in flight, whom to ask next and the demotions."""

    def __init__(
        self,
        request_timeout_ticks: int,
        demotion_ticks: int,
        max_peers: int,
        *,
        window_blocks: int = 1,
        max_requests_per_peer: int = 1,
    ) -> None:
        if min(request_timeout_ticks, demotion_ticks, max_peers) < 1:
            raise ValueError("sync timeouts and the peer bound must be at least 1")
        if window_blocks < 1 or max_requests_per_peer < 1:
            raise ValueError("the sync window and the requests per peer must be at least 1")
        self._request_timeout_ticks = request_timeout_ticks
        self._demotion_ticks = demotion_ticks
        self._max_peers = max_peers
        self.window_blocks = window_blocks
        self._max_requests_per_peer = max_requests_per_peer
        self._claims: dict[Peer, int] = {}
        # The lowest height each peer still stores, from its refusals (`unavailable`): it is
        # not asked for heights below that again.
        self._bases: dict[Peer, int] = {}
        self._demoted_until: dict[Peer, int] = {}
        # Heights asked of each peer and not answered: its answer for one of them is solicited,
        # even after the timeout (a slow honest peer is not reported for being late). At most
        # `window_blocks` per peer, the lowest forgotten first.
        self._asked: dict[Peer, list[int]] = {}
        self._in_flight: dict[int, Outstanding[Peer]] = {}
        self._last_asked: Peer | None = None
        self._sent = 0
        self._now_tick = 0
        self.timeouts = 0
        self.demotions = 0
        self.requests_sent: dict[Peer, int] = {}
        """Requests sent to each peer (for /status and /metrics); bounded like the claims."""

    # ------------------------------------------------------------------ reads

    @property
    def outstanding(self) -> Outstanding[Peer] | None:
        """The lowest request in flight, or None."""
        return self._in_flight[min(self._in_flight)] if self._in_flight else None

    @property
    def in_flight(self) -> dict[int, Outstanding[Peer]]:
        """Height -> the request in flight for it (a copy)."""
        return dict(self._in_flight)

    def in_flight_to(self, peer: Peer) -> int:
        return sum(1 for request in self._in_flight.values() if request.peer == peer)

    def claimed_height(self, peer: Peer) -> int | None:
        return self._claims.get(peer)

    def vouched_claim(self, liars: int) -> int:
        """A height some honest peer claims when at most `liars` peers lie: the (liars + 1)-th
        highest claim in good standing (0 with fewer claims). Readiness uses it, so that one
        peer claiming a huge height cannot keep a node "catching up" for ever."""
        claims = sorted(self._claims.values(), reverse=True)
        return claims[liars] if 0 <= liars < len(claims) else 0

    def lowest_claim(self) -> int | None:
        """The lowest height a peer in good standing claims (None without claims): the
        pruning protection for lagging peers."""
        return min(self._claims.values()) if self._claims else None

    def base_of(self, peer: Peer) -> int:
        """The lowest height `peer` said it stores (1 until it refused a request)."""
        return self._bases.get(peer, 1)

    def is_demoted(self, peer: Peer) -> bool:
        return self._demoted_until.get(peer, -1) > self._now_tick

    def solicited(self, peer: Peer, height: int) -> bool:
        """We asked `peer` for `height` and it has not answered that yet (late or not)."""
        return height in self._asked.get(peer, ())

    # ----------------------------------------------------------------- inputs

    def claim(self, peer: Peer, height: int) -> None:
        """`peer` says its latest committed block is at `height` (ignored while demoted)."""
        if self.is_demoted(peer):
            return
        if peer in self._claims or len(self._claims) < self._max_peers:
            self._claims[peer] = height

    def forget(self, peer: Peer) -> None:
        """`peer` disconnected: drop its claim and release its requests."""
        self._claims.pop(peer, None)
        self._asked.pop(peer, None)
        self._demoted_until.pop(peer, None)
        self._bases.pop(peer, None)
        self._release(peer)

    def plan(
        self, our_height: int, *, stalled: bool, have: Container[int] = ()
    ) -> list[tuple[Peer, int]]:
        """The (peer, height) requests to send now, lowest height first: every height of the
        window above `our_height` that is neither in flight nor in `have` (the host's buffer),
        each to a peer claiming it. A peer claims a height when its claim is at least one more
        (consensus may still deliver the top one), or at least that height while our height
        has not moved for a whole tick. The host must call `requested` for each."""
        for height in [height for height in self._in_flight if height <= our_height]:
            del self._in_flight[height]  # consensus got there first
        plan: list[tuple[Peer, int]] = []
        load = {peer: self.in_flight_to(peer) for peer in self._claims}
        last = self._last_asked
        extra = 0 if stalled else 1
        for height in range(our_height + 1, our_height + self.window_blocks + 1):
            if height in self._in_flight or height in have:
                continue
            candidates = [
                peer
                for peer, claimed in self._claims.items()
                if claimed >= height + extra
                and load[peer] < self._max_requests_per_peer
                and height >= self._bases.get(peer, 1)
            ]
            if not candidates:
                continue
            peer = last = _next_peer(candidates, load, last)
            load[peer] += 1
            plan.append((peer, height))
        return plan

    def choose(self, our_height: int, *, stalled: bool) -> Peer | None:
        """Whom to ask for `our_height + 1` now, or None (already asked, or nobody claims it)."""
        for peer, height in self.plan(our_height, stalled=stalled):
            if height == our_height + 1:
                return peer
        return None

    def requested(self, peer: Peer, height: int) -> None:
        """The host sent `peer` a request for `height`."""
        self._sent += 1
        self._in_flight[height] = Outstanding(peer, height, 0, self._sent)
        self._last_asked = peer
        if peer in self._asked or len(self._asked) < self._max_peers:
            asked = self._asked.setdefault(peer, [])
            if height not in asked:
                asked.append(height)
                del asked[: -self.window_blocks]
        if peer in self.requests_sent or len(self.requests_sent) < self._max_peers:
            self.requests_sent[peer] = self.requests_sent.get(peer, 0) + 1

    def answered(self, peer: Peer, height: int) -> None:
        """`peer`'s answer for `height` arrived (whatever the host does with it)."""
        asked = self._asked.get(peer)
        if asked is not None and height in asked:
            asked.remove(height)
            if not asked:
                del self._asked[peer]
        request = self._in_flight.get(height)
        if request is not None and request.peer == peer:
            del self._in_flight[height]

    def unavailable(self, peer: Peer, height: int, base_height: int) -> None:
        """`peer` answered our request for `height` that it pruned it (it keeps blocks from
        `base_height` on): not a fault; the height is asked of another peer."""
        self.answered(peer, height)
        if peer in self._bases or len(self._bases) < self._max_peers:
            self._bases[peer] = max(base_height, height + 1)
        self.retry(height)

    def retry(self, height: int) -> None:
        """`height` is wanted again (its block was refused or did not fit the buffer): it is no
        longer in flight, so the next plan asks for it."""
        self._in_flight.pop(height, None)

    def demote(self, peer: Peer) -> None:
        """`peer` did not answer in time or answered wrongly: drop its claim, ignore its claims
        for the demotion period, and ask another peer for what it held."""
        self.demotions += 1
        self._claims.pop(peer, None)
        self._demoted_until[peer] = self._now_tick + self._demotion_ticks
        self._release(peer)

    def _release(self, peer: Peer) -> None:
        for height in [
            height for height, request in self._in_flight.items() if request.peer == peer
        ]:
            del self._in_flight[height]

    def tick(self, our_height: int, *, busy: bool = False) -> list[Peer]:
        """One tick passed: end served demotions, drop requests our height has passed, and time
        out each peer whose oldest request has waited `request_timeout_ticks` as its oldest.
        A `busy` tick (the host still holds a received block for the next height: it is
        applying what it has, and answers may be waiting unread in its own queues) counts
        towards no timeout. Returns the peers that timed out (already demoted; the host
        reports them)."""
        self._now_tick += 1
        served = [peer for peer, until in self._demoted_until.items() if until <= self._now_tick]
        for peer in served:
            del self._demoted_until[peer]
        for height in [height for height in self._in_flight if height <= our_height]:
            del self._in_flight[height]
        oldest: dict[Peer, Outstanding[Peer]] = {}
        for request in self._in_flight.values():
            held = oldest.get(request.peer)
            if held is None or request.sent < held.sent:
                oldest[request.peer] = request
        timed_out: list[Peer] = []
        if busy:
            return timed_out
        for peer, request in sorted(oldest.items()):
            if request.ticks + 1 < self._request_timeout_ticks:
                self._in_flight[request.height] = dataclasses.replace(
                    request, ticks=request.ticks + 1
                )
            else:
                timed_out.append(peer)
        for peer in timed_out:
            self.timeouts += 1
            self.demote(peer)
        return timed_out


def _next_peer(candidates: list[Peer], load: dict[Peer, int], last: Peer | None) -> Peer:
    """Fewest requests in flight first; among those, the first after `last` (the peer asked
    last) in a fixed order, so that equal peers take turns."""
    fewest = min(load[peer] for peer in candidates)
    least_loaded = sorted(peer for peer in candidates if load[peer] == fewest)
    if last is not None:
        for peer in least_loaded:
            if peer > last:
                return peer
    return least_loaded[0]


@dataclass(frozen=True, slots=True)
class Buffered(Generic[Item]):
    """A block that arrived ahead of the one we need: from `peer`, `size_bytes` long."""

    peer: object
    item: Item
    size_bytes: int


class SyncBuffer(Generic[Item]):
    """Blocks received ahead of our next height, applied strictly in order, at most
    `max_blocks` of them and `max_bytes` in all. The next height itself is always taken (it is
    applied at once), so a full buffer never stops the chain."""

    def __init__(self, max_blocks: int, max_bytes: int) -> None:
        if max_blocks < 1 or max_bytes < 1:
            raise ValueError("the sync buffer bounds must be at least 1")
        self._max_blocks = max_blocks
        self._max_bytes = max_bytes
        self._items: dict[int, Buffered[Item]] = {}
        self.size_bytes = 0

    def __contains__(self, height: object) -> bool:
        return height in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def heights(self) -> frozenset[int]:
        return frozenset(self._items)

    def has_room(self) -> bool:
        return len(self._items) < self._max_blocks and self.size_bytes < self._max_bytes

    def offer(self, height: int, our_height: int, entry: Buffered[Item]) -> bool:
        """Keep `entry` for `height`; False (nothing kept) if it is not above `our_height`,
        already held, or would pass a bound (the next height always fits)."""
        if height <= our_height or height in self._items:
            return False
        if height != our_height + 1 and (
            len(self._items) >= self._max_blocks
            or self.size_bytes + entry.size_bytes > self._max_bytes
        ):
            return False
        self._items[height] = entry
        self.size_bytes += entry.size_bytes
        return True

    def take_next(self, our_height: int) -> Buffered[Item] | None:
        """Remove and return the entry for `our_height + 1`, first dropping any at or below
        `our_height` (consensus delivered those)."""
        for height in [height for height in self._items if height <= our_height]:
            self._remove(height)
        return self._remove(our_height + 1)

    def drop_from(self, peer: object) -> list[int]:
        """Drop every entry `peer` sent (it lied about one); returns their heights."""
        heights = sorted(height for height, entry in self._items.items() if entry.peer == peer)
        for height in heights:
            self._remove(height)
        return heights

    def _remove(self, height: int) -> Buffered[Item] | None:
        entry = self._items.pop(height, None)
        if entry is not None:
            self.size_bytes -= entry.size_bytes
        return entry
