"""The block-sync peer policy both hosts share (`SyncPeers`): claims are hints, requests rotate,
time out and demote, and a demoted peer's claims are ignored for the demotion period."""

from __future__ import annotations

import pytest

from emrchain.consensus.sync_peers import SyncPeers


def test_a_peer_claiming_a_huge_height_and_never_answering_is_rotated_away() -> None:
    peers: SyncPeers[str] = SyncPeers(request_timeout_ticks=2, demotion_ticks=10, max_peers=8)
    peers.claim("a-liar", 10**12)
    peers.claim("b-honest", 20)
    assert peers.choose(5, stalled=False) == "a-liar"
    peers.requested("a-liar", 6)
    assert peers.choose(5, stalled=False) is None  # one request in flight
    assert peers.tick(5) is None
    assert peers.tick(5) == "a-liar"  # timed out after two ticks
    assert peers.claimed_height("a-liar") is None and peers.is_demoted("a-liar")
    peers.claim("a-liar", 10**12)  # ignored while demoted
    assert peers.vouched_claim(liars=0) == 20
    assert peers.choose(5, stalled=False) == "b-honest"
    # A late answer to the timed-out request is still solicited (not reported).
    assert peers.solicited("a-liar", 6)
    for _ in range(10):
        peers.tick(5)
    assert not peers.is_demoted("a-liar")
    assert peers.timeouts == 1 and peers.demotions == 1


def test_requests_rotate_over_the_peers_ahead() -> None:
    peers: SyncPeers[int] = SyncPeers(request_timeout_ticks=4, demotion_ticks=4, max_peers=8)
    for peer in (3, 1, 2):
        peers.claim(peer, 50)
    asked = []
    for height in range(10, 16):
        peer = peers.choose(height - 1, stalled=False)
        assert peer is not None
        peers.requested(peer, height)
        peers.answered(peer, height)
        asked.append(peer)
    assert asked == [1, 2, 3, 1, 2, 3]


def test_one_ahead_is_asked_only_when_stalled_and_a_passed_request_is_dropped() -> None:
    peers: SyncPeers[str] = SyncPeers(request_timeout_ticks=4, demotion_ticks=4, max_peers=1)
    peers.claim("p", 8)
    peers.claim("q", 100)  # over max_peers: not tracked
    assert peers.claimed_height("q") is None
    assert peers.choose(7, stalled=False) is None
    assert peers.choose(7, stalled=True) == "p"
    peers.requested("p", 8)
    assert peers.tick(8) is None and peers.outstanding is None  # consensus got there first
    peers.forget("p")
    assert peers.vouched_claim(liars=0) == 0


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SyncPeers(request_timeout_ticks=0, demotion_ticks=1, max_peers=1)


def test_a_vouched_claim_ignores_the_highest_liars() -> None:
    peers: SyncPeers[str] = SyncPeers(request_timeout_ticks=2, demotion_ticks=4, max_peers=10)
    for peer, height in (("a", 10), ("b", 11), ("liar", 10**12)):
        peers.claim(peer, height)
    assert peers.vouched_claim(liars=0) == 10**12
    assert peers.vouched_claim(liars=1) == 11
    assert peers.vouched_claim(liars=0) == 10**12
    assert peers.vouched_claim(liars=3) == 0
