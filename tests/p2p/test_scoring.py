"""Strike decay and bans (docs/spec/p2p.md §5.2): the scoring rule alone, driven by the time the
test passes in, so hours of a peer's life run without sleeping."""

from __future__ import annotations

from emrchain.config.node import ConsensusSection, P2PSection
from emrchain.p2p.scoring import Misbehaviour, PeerScores

PEER = "ab" * 32
OTHER_PEER = "cd" * 32
THRESHOLD = 10
DECAY_MS = 60_000
BAN_MS = 600_000
HOUR_MS = 3_600_000
# No decay at all: a strike counts for the longest decay the setting accepts (a week), longer
# than the run below, which is what the rule was before strikes decayed.
NO_DECAY_MS = 7 * 86_400_000


def scores(strike_decay_ms: int = DECAY_MS) -> PeerScores:
    return PeerScores(THRESHOLD, BAN_MS, strike_decay_ms)


def slow_honest_peer_bans(table: PeerScores) -> list[int]:
    """Reports a sync timeout every two hours for two days; the times (ms) of the bans."""
    bans = []
    for strike in range(24):
        now_ms = strike * 2 * HOUR_MS
        if table.report(PEER, Misbehaviour.SYNC_TIMEOUT, now_ms):
            bans.append(now_ms)
    return bans


def test_strikes_spaced_beyond_the_decay_never_ban() -> None:
    assert slow_honest_peer_bans(scores()) == []


def test_without_decay_the_slow_honest_peer_is_banned() -> None:
    # The same peer under the old rule: its tenth timeout, eighteen hours in, bans it, and the
    # tenth after that ban again.
    assert slow_honest_peer_bans(scores(NO_DECAY_MS)) == [9 * 2 * HOUR_MS, 19 * 2 * HOUR_MS]


def test_strikes_one_decay_apart_do_not_add_up() -> None:
    table = scores()
    for strike in range(5 * THRESHOLD):
        assert not table.report(PEER, Misbehaviour.FLOOD, strike * DECAY_MS)
        assert table.strikes(PEER, strike * DECAY_MS) == {"flood": 1}


def test_strikes_within_the_decay_ban_at_the_threshold() -> None:
    table = scores()
    # Spread over just less than one decay: all still count when the last one comes.
    step_ms = (DECAY_MS - 1) // (THRESHOLD - 1)
    for strike in range(THRESHOLD - 1):
        assert not table.report(PEER, Misbehaviour.PROTOCOL_VIOLATION, strike * step_ms)
    last_ms = (THRESHOLD - 1) * step_ms
    assert table.strikes(PEER, last_ms) == {"protocol_violation": THRESHOLD - 1}
    assert table.report(PEER, Misbehaviour.PROTOCOL_VIOLATION, last_ms)
    assert table.ban_remaining_ms(PEER, last_ms) == BAN_MS
    assert table.strikes(PEER, last_ms) == {}  # they start over after a ban


def test_only_the_strikes_not_yet_expired_count() -> None:
    table = scores()
    for strike in range(THRESHOLD - 1):
        assert not table.report(PEER, Misbehaviour.FLOOD, strike)
    # The first strike expires exactly one decay after it was made, so this one is the ninth
    # unexpired, not the tenth; one more a millisecond later is the tenth (the second strike,
    # made at 1 ms, expires only at DECAY_MS + 1).
    assert not table.report(PEER, Misbehaviour.FLOOD, DECAY_MS)
    assert table.strikes(PEER, DECAY_MS) == {"flood": THRESHOLD - 1}
    assert table.report(PEER, Misbehaviour.FLOOD, DECAY_MS)


def test_kinds_and_peers_are_counted_apart() -> None:
    table = scores()
    minor = [kind for kind in Misbehaviour if kind not in {"invalid_signature", "equivocation"}]
    for kind in minor:
        for _ in range(THRESHOLD - 1):
            assert not table.report(PEER, kind, 0)
            assert not table.report(OTHER_PEER, kind, 0)
    assert table.strikes(PEER, 0) == {str(kind): THRESHOLD - 1 for kind in minor}
    assert table.banned(0) == {}
    assert table.report(PEER, Misbehaviour.FLOOD, 0)
    assert table.banned(0) == {PEER: BAN_MS}


def test_a_severe_report_bans_at_once_however_clean_the_peer() -> None:
    for kind in (Misbehaviour.INVALID_SIGNATURE, Misbehaviour.EQUIVOCATION):
        table = scores()
        assert table.report(PEER, kind, 5 * HOUR_MS)
        assert table.ban_remaining_ms(PEER, 5 * HOUR_MS) == BAN_MS


def test_a_ban_lasts_its_duration_and_reports_during_it_change_nothing() -> None:
    table = scores()
    assert table.report(PEER, Misbehaviour.EQUIVOCATION, 0)
    for _ in range(THRESHOLD):
        assert not table.report(PEER, Misbehaviour.FLOOD, BAN_MS - 1)
    assert table.ban_remaining_ms(PEER, BAN_MS - 1) == 1
    assert table.strikes(PEER, BAN_MS - 1) == {}
    assert not table.is_banned(PEER, BAN_MS)
    assert table.banned(BAN_MS) == {}


def test_the_record_is_capped_and_emptied_as_strikes_expire() -> None:
    table = scores()
    for now_ms in range(0, 100 * DECAY_MS, DECAY_MS // (THRESHOLD - 2)):
        assert not table.report(PEER, Misbehaviour.SYNC_TIMEOUT, now_ms)
        assert sum(table.strikes(PEER, now_ms).values()) < THRESHOLD
    assert table.strikes(PEER, 200 * DECAY_MS) == {}
    assert table._strikes == {}  # a peer that behaves again holds no memory


def test_the_default_decay_spares_a_peer_demoted_after_each_timeout() -> None:
    # Block sync demotes a peer whose request timed out, so at its fastest such a peer earns
    # one timeout per demotion; the default decay must not add those up to a ban.
    demotion_ms = ConsensusSection.sync_demotion_ms
    table = PeerScores(
        P2PSection.misbehaviour_ban_threshold,
        P2PSection.ban_duration_ms,
        P2PSection.strike_decay_ms,
    )
    for strike in range(1_000):
        assert not table.report(PEER, Misbehaviour.SYNC_TIMEOUT, strike * demotion_ms)
