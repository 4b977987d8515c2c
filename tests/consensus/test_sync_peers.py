"""The block-sync peer policy both hosts share (`SyncPeers`): claims are hints, requests rotate,
time out and demote, and a demoted peer's claims are ignored for the demotion period."""

from __future__ import annotations

import pytest

from emrchain.consensus.sync_peers import Buffered, SyncBuffer, SyncPeers


def test_a_peer_claiming_a_huge_height_and_never_answering_is_rotated_away() -> None:
    peers: SyncPeers[str] = SyncPeers(request_timeout_ticks=2, demotion_ticks=10, max_peers=8)
    peers.claim("a-liar", 10**12)
    peers.claim("b-honest", 20)
    assert peers.choose(5, stalled=False) == "a-liar"
    peers.requested("a-liar", 6)
    assert peers.choose(5, stalled=False) is None  # one request in flight
    assert peers.tick(5) == []
    assert peers.tick(5) == ["a-liar"]  # timed out after two ticks
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
    assert peers.tick(8) == [] and peers.outstanding is None  # consensus got there first
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


# ------------------------------------------------------------ the window (issue 18 item 4)


def _window(window: int = 8, per_peer: int = 3) -> SyncPeers[str]:
    return SyncPeers(
        request_timeout_ticks=2,
        demotion_ticks=10,
        max_peers=8,
        window_blocks=window,
        max_requests_per_peer=per_peer,
    )


def _send(peers: SyncPeers[str], plan: list[tuple[str, int]]) -> list[tuple[str, int]]:
    for peer, height in plan:
        peers.requested(peer, height)
    return plan


def test_the_window_is_bounded_and_spread_over_the_peers_that_claim_the_heights() -> None:
    peers = _window(window=8, per_peer=3)
    peers.claim("a", 100)
    peers.claim("b", 100)
    peers.claim("c", 12)  # claims up to 12: asked for 11 at most (12 only when stalled)
    plan = _send(peers, peers.plan(5, stalled=False))
    assert [height for _, height in plan] == list(range(6, 14))  # the whole window, in order
    by_peer = {peer: [height for asked, height in plan if asked == peer] for peer in "abc"}
    assert by_peer == {"a": [6, 9, 12], "b": [7, 10, 13], "c": [8, 11]}
    assert all(peers.in_flight_to(peer) <= 3 for peer in "abc")
    assert peers.plan(5, stalled=False) == []  # nothing more until something is answered
    peers.answered("b", 7)
    # b and c now hold two each: the turn goes on after b, asked last.
    assert peers.plan(5, stalled=False) == [("c", 7)]


def test_the_per_peer_bound_limits_the_window_when_few_peers_claim() -> None:
    peers = _window(window=16, per_peer=4)
    peers.claim("a", 1_000)
    plan = _send(peers, peers.plan(0, stalled=False))
    assert plan == [("a", 1), ("a", 2), ("a", 3), ("a", 4)]


def test_a_timed_out_request_is_asked_again_of_another_peer() -> None:
    peers = _window(window=4, per_peer=2)
    peers.claim("a", 50)
    peers.claim("b", 50)
    _send(peers, peers.plan(0, stalled=False))  # a: 1, 3; b: 2, 4
    peers.answered("b", 2)
    peers.answered("b", 4)
    assert peers.tick(0) == []
    assert peers.tick(0) == ["a"]  # both of a's requests timed out: a is reported once
    assert peers.is_demoted("a") and peers.in_flight == {}
    assert peers.plan(0, stalled=False) == [("b", 1), ("b", 2)]  # a's heights, now b's
    assert peers.solicited("a", 1)  # a late answer from a is still not held against it
    assert peers.timeouts == 1 and peers.demotions == 1


def test_heights_held_in_the_buffer_or_passed_are_not_asked_for() -> None:
    peers = _window(window=6, per_peer=6)
    peers.claim("a", 50)
    assert [height for _, height in peers.plan(10, stalled=False, have={12, 14})] == [
        11,
        13,
        15,
        16,
    ]
    _send(peers, peers.plan(10, stalled=False))
    assert peers.plan(13, stalled=False) == [("a", 17), ("a", 18), ("a", 19)]  # 11-13 dropped


def test_a_demoted_peer_releases_its_heights_and_retry_asks_again() -> None:
    peers = _window(window=4, per_peer=4)
    peers.claim("a", 50)
    peers.claim("b", 50)
    _send(peers, peers.plan(0, stalled=False))
    peers.demote("b")
    assert sorted(peers.in_flight) == [1, 3]
    assert peers.plan(0, stalled=False) == [("a", 2), ("a", 4)]
    _send(peers, [("a", 2), ("a", 4)])
    peers.retry(3)  # its block did not fit the buffer
    assert peers.plan(0, stalled=False) == [("a", 3)]


def test_requests_sent_are_counted_per_peer() -> None:
    peers = _window(window=4, per_peer=2)
    peers.claim("a", 50)
    peers.claim("b", 50)
    _send(peers, peers.plan(0, stalled=False))
    assert peers.requests_sent == {"a": 2, "b": 2}


def test_the_buffer_keeps_blocks_ahead_within_its_bounds_and_yields_them_in_order() -> None:
    buffer: SyncBuffer[str] = SyncBuffer(max_blocks=3, max_bytes=100)
    assert buffer.offer(13, 10, Buffered("p", "block 13", 40))
    assert buffer.offer(12, 10, Buffered("q", "block 12", 40))
    assert not buffer.offer(14, 10, Buffered("p", "block 14", 40))  # would pass 100 bytes
    assert not buffer.offer(10, 10, Buffered("p", "block 10", 1))  # not above our height
    assert not buffer.offer(12, 10, Buffered("p", "again", 1))  # held already
    assert buffer.take_next(10) is None  # 11 missing: nothing is applied out of order
    assert buffer.offer(11, 10, Buffered("p", "block 11", 90))  # the next height always fits
    assert not buffer.has_room()
    taken = []
    height = 10
    while (entry := buffer.take_next(height)) is not None:
        taken.append(entry.item)
        height += 1
    assert taken == ["block 11", "block 12", "block 13"]
    assert len(buffer) == 0 and buffer.size_bytes == 0


def test_the_buffer_bounds_the_count_and_drops_what_a_liar_sent() -> None:
    buffer: SyncBuffer[str] = SyncBuffer(max_blocks=2, max_bytes=10_000)
    assert buffer.offer(3, 0, Buffered("liar", "x", 1))
    assert buffer.offer(4, 0, Buffered("honest", "y", 1))
    assert not buffer.offer(5, 0, Buffered("honest", "z", 1))  # two blocks already
    assert buffer.drop_from("liar") == [3]
    assert buffer.heights == frozenset({4}) and buffer.size_bytes == 1
    assert buffer.take_next(4) is None and len(buffer) == 0  # passed by consensus: dropped
    with pytest.raises(ValueError, match="at least 1"):
        SyncBuffer(max_blocks=0, max_bytes=1)


def test_only_a_peers_oldest_request_counts_towards_its_timeout() -> None:
    """A peer answers in order: with three requests queued at it and one answer per tick it
    never times out, though its last request waited three ticks (the timeout is two)."""
    peers = _window(window=3, per_peer=3)
    peers.claim("a", 50)
    _send(peers, peers.plan(0, stalled=False))
    for height in (1, 2, 3):
        assert peers.tick(0) == []
        peers.answered("a", height)
    assert peers.timeouts == 0 and not peers.is_demoted("a")
    _send(peers, peers.plan(3, stalled=False))  # 4, 5, 6
    assert peers.tick(3) == []
    assert peers.tick(3) == ["a"]  # its oldest (4) went unanswered for two ticks
    assert peers.in_flight == {}


def test_busy_ticks_count_towards_no_timeout_and_late_answers_stay_solicited() -> None:
    peers = _window(window=2, per_peer=2)
    peers.claim("a", 50)
    _send(peers, peers.plan(0, stalled=False))
    for _ in range(5):
        assert peers.tick(0, busy=True) == []  # applying what we hold: not a's fault
    assert peers.tick(0) == []
    assert peers.tick(0) == ["a"]
    assert peers.solicited("a", 1) and peers.solicited("a", 2)
    peers.tick(10)  # our height passed both: a's late answers are still not held against it
    assert peers.solicited("a", 1)


def test_a_peer_that_pruned_a_height_is_asked_for_nothing_below_its_base_again() -> None:
    peers: SyncPeers[str] = SyncPeers(request_timeout_ticks=2, demotion_ticks=10, max_peers=8)
    peers.claim("a-pruned", 100)
    assert peers.choose(0, stalled=False) == "a-pruned"
    peers.requested("a-pruned", 1)
    assert peers.choose(0, stalled=False) is None  # in flight
    peers.unavailable("a-pruned", 1, base_height=40)
    assert not peers.solicited("a-pruned", 1) and peers.base_of("a-pruned") == 40
    assert peers.choose(0, stalled=False) is None  # nobody else has height 1
    peers.claim("b-archive", 100)
    assert peers.choose(0, stalled=False) == "b-archive"
    assert peers.plan(38, stalled=False) == [("b-archive", 39)]
    peers.forget("b-archive")
    assert peers.plan(38, stalled=False) == []
    assert peers.plan(45, stalled=False) == [("a-pruned", 46)]  # above its base: asked again
    # Not a fault: no timeout, no demotion; the lowest claim is still the pruned peer's.
    assert peers.tick(0) == [] and not peers.is_demoted("a-pruned")
    assert peers.lowest_claim() == 100
    peers.forget("a-pruned")
    assert peers.base_of("a-pruned") == 1
