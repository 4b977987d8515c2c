"""Counters of the p2p layer: traffic, drops, handshake failures and disconnects by reason."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class PeerStats:
    """Traffic of the current and past connections to one peer (wire bytes, prefix included)."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    # Messages refused because this peer's send queue was full (the newest is dropped).
    send_queue_drops: int = 0
    # Reports by kind (`Misbehaviour` values), every one since the start, bans or not.
    misbehaviour: Counter[str] = field(default_factory=Counter)
    bans: int = 0


@dataclass(slots=True)
class P2PStats:
    """Totals over all peers; `PeerManager.stats()` returns a snapshot (a deep copy)."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    send_queue_drops: int = 0
    # `send` to a peer that is not connected: not queued anywhere.
    send_not_connected: int = 0
    dial_failures: int = 0
    connections_established: int = 0
    # Misbehaviour reports by kind over all peers, and bans they caused.
    misbehaviour: Counter[str] = field(default_factory=Counter)
    bans: int = 0
    # Times the dialer of a persistent peer found it banned and waited instead of dialling.
    banned_dials_skipped: int = 0
    # Keys are `HandshakeFailure` / `CloseReason` values.
    handshake_failures: Counter[str] = field(default_factory=Counter)
    disconnects: Counter[str] = field(default_factory=Counter)
    peers: dict[str, PeerStats] = field(default_factory=dict)

    def peer(self, peer_id: str) -> PeerStats:
        """The counters of `peer_id`, created on first use (only allowed peers ever get here)."""
        stats = self.peers.get(peer_id)
        if stats is None:
            stats = self.peers[peer_id] = PeerStats()
        return stats

    def snapshot(self) -> P2PStats:
        return copy.deepcopy(self)


@dataclass(frozen=True, slots=True)
class PeerStanding:
    """How the node stands with its peers now (`PeerManager.standing()`, `/status` "p2p")."""

    strikes: dict[str, dict[str, int]]
    """Per connected peer, its unexpired strikes by misbehaviour kind (docs/spec/p2p.md §5.2)."""
    bans_in_force: int
    bans: int
    """Bans since the start, expired ones included."""
    unknown_peer_refusals: int
    """Handshakes refused because the peer's key is not in the allowed set."""
