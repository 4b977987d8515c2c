"""Misbehaviour counted per peer, and the bans it earns (docs/spec/p2p.md §5.2).

The node reports what a peer did wrong (`PeerManager.report_misbehaviour`); this record counts
it and says when the peer has earned a ban. Every method takes the time (`now_ms`, the manager's
monotonic clock) as an argument, so the rules are tested without sleeping.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum


class Misbehaviour(StrEnum):
    """What the node can hold against the peer that sent it something."""

    # A signature that does not verify, on a message the peer itself signed or relayed.
    INVALID_SIGNATURE = "invalid_signature"
    INVALID_BLOCK = "invalid_block"
    # Two conflicting signed messages from the peer's own key.
    EQUIVOCATION = "equivocation"
    # A block-sync response nobody asked for (and we do not need), or one whose commit does not
    # verify for its block.
    BAD_SYNC_RESPONSE = "bad_sync_response"
    # A message over a limit, or more messages than the protocol allows.
    FLOOD = "flood"
    # A message that does not decode, or that the protocol never sends at that point.
    PROTOCOL_VIOLATION = "protocol_violation"
    # A block-sync request left unanswered for the sync request timeout.
    SYNC_TIMEOUT = "sync_timeout"


SEVERE = frozenset({Misbehaviour.INVALID_SIGNATURE, Misbehaviour.EQUIVOCATION})
"""One report is enough: an authenticated channel rules out corruption in transit, and a correct
node never signs or forwards these."""


class PeerScores:
    """Unexpired strikes per peer and kind, and the bans in force.

    A strike (one report of a kind not in `SEVERE`) counts for `strike_decay_ms` after it was
    reported, then expires; a peer is banned when `threshold` strikes of one kind are unexpired
    at once, that is when it got `threshold` reports of that kind within `strike_decay_ms`. Only
    the newest `threshold` strikes of a kind can decide that, so no more are kept: a peer's
    record holds at most `threshold` times the number of kinds."""

    def __init__(self, threshold: int, ban_duration_ms: int, strike_decay_ms: int) -> None:
        self._threshold = threshold
        self._ban_duration_ms = ban_duration_ms
        self._strike_decay_ms = strike_decay_ms
        # peer -> kind -> times (ms) of its unexpired strikes, oldest first.
        self._strikes: dict[str, dict[Misbehaviour, deque[int]]] = {}
        self._banned_until_ms: dict[str, int] = {}

    def report(self, peer_id: str, kind: Misbehaviour, now_ms: int) -> bool:
        """Count one report; True if it bans the peer now (its strikes then start over).

        A report against a peer already banned changes nothing: messages it sent before the ban
        may still be in the node's queue, and must not extend the ban or log it again."""
        if self.is_banned(peer_id, now_ms):
            return False
        if kind not in SEVERE and self._strike_count(peer_id, kind, now_ms) < self._threshold:
            return False
        self._strikes.pop(peer_id, None)
        self._banned_until_ms[peer_id] = now_ms + self._ban_duration_ms
        return True

    def strikes(self, peer_id: str, now_ms: int) -> dict[str, int]:
        """`peer_id`'s unexpired strikes by kind (kinds without any left out)."""
        self._expire(peer_id, now_ms)
        kinds = self._strikes.get(peer_id, {})
        return {str(kind): len(times) for kind, times in kinds.items()}

    def ban_remaining_ms(self, peer_id: str, now_ms: int) -> int:
        """Milliseconds until `peer_id`'s ban expires; 0 when it is not banned."""
        until_ms = self._banned_until_ms.get(peer_id)
        if until_ms is None:
            return 0
        remaining_ms = until_ms - now_ms
        if remaining_ms <= 0:
            del self._banned_until_ms[peer_id]
            return 0
        return remaining_ms

    def is_banned(self, peer_id: str, now_ms: int) -> bool:
        return self.ban_remaining_ms(peer_id, now_ms) > 0

    def banned(self, now_ms: int) -> dict[str, int]:
        """Every peer banned now, with the milliseconds its ban has left."""
        remaining = {
            peer_id: self.ban_remaining_ms(peer_id, now_ms)
            for peer_id in list(self._banned_until_ms)
        }
        return {peer_id: left_ms for peer_id, left_ms in remaining.items() if left_ms > 0}

    def _strike_count(self, peer_id: str, kind: Misbehaviour, now_ms: int) -> int:
        """Record a strike of `kind` at `now_ms`; the unexpired strikes of that kind after it."""
        self._expire(peer_id, now_ms)
        kinds = self._strikes.setdefault(peer_id, {})
        times = kinds.setdefault(kind, deque(maxlen=self._threshold))
        times.append(now_ms)
        return len(times)

    def _expire(self, peer_id: str, now_ms: int) -> None:
        """Drop `peer_id`'s strikes reported `strike_decay_ms` or more ago, and its record when
        none is left (a peer that behaves holds no memory)."""
        kinds = self._strikes.get(peer_id)
        if kinds is None:
            return
        oldest_kept_ms = now_ms - self._strike_decay_ms
        for kind in list(kinds):
            times = kinds[kind]
            while times and times[0] <= oldest_kept_ms:
                times.popleft()
            if not times:
                del kinds[kind]
        if not kinds:
            del self._strikes[peer_id]
