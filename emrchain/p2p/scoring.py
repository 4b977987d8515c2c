"""Misbehaviour counted per peer, and the bans it earns (docs/spec/p2p.md §5.2).

The node reports what a peer did wrong (`PeerManager.report_misbehaviour`); this record counts
it and says when the peer has earned a ban. Time is the manager's monotonic clock, passed in,
so tests drive bans and their expiry without sleeping.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
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
    """Reports of misbehaviour since each peer's last ban, and the bans in force."""

    def __init__(self, threshold: int, ban_duration_s: float, clock: Callable[[], float]) -> None:
        self._threshold = threshold
        self._ban_duration_s = ban_duration_s
        self._clock = clock
        self._strikes: dict[str, Counter[Misbehaviour]] = {}
        self._banned_until: dict[str, float] = {}

    def report(self, peer_id: str, kind: Misbehaviour) -> bool:
        """Count one report; True if it bans the peer now (its strikes then start over).

        A report against a peer already banned changes nothing: messages it sent before the ban
        may still be in the node's queue, and must not extend the ban or log it again."""
        if self.is_banned(peer_id):
            return False
        strikes = self._strikes.setdefault(peer_id, Counter())
        strikes[kind] += 1
        if kind not in SEVERE and strikes[kind] < self._threshold:
            return False
        del self._strikes[peer_id]
        self._banned_until[peer_id] = self._clock() + self._ban_duration_s
        return True

    def ban_remaining_s(self, peer_id: str) -> float:
        """Seconds until `peer_id`'s ban expires; 0 when it is not banned."""
        until = self._banned_until.get(peer_id)
        if until is None:
            return 0.0
        remaining = until - self._clock()
        if remaining <= 0:
            del self._banned_until[peer_id]
            return 0.0
        return remaining

    def is_banned(self, peer_id: str) -> bool:
        return self.ban_remaining_s(peer_id) > 0

    def banned(self) -> dict[str, float]:
        """Every peer banned now, with the seconds its ban has left."""
        remaining = {peer_id: self.ban_remaining_s(peer_id) for peer_id in list(self._banned_until)}
        return {peer_id: seconds for peer_id, seconds in remaining.items() if seconds > 0}
