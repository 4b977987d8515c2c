"""Issue 18 item 5: validators on hosts of their own (network namespaces), faults made by the
kernel's network, all under load. The bounds asserted here are documented in
docs/spec/network-faults.md, with the figures measured on the CI machine kind."""

from __future__ import annotations

import time

from emrchain.devnet.background_load import BackgroundLoad
from emrchain.devnet.netns import CATCH_UP_BOUND_S, NetnsDevnet, check_no_fork, heal_bound_ms
from tests.netns.conftest import wait_stable
from tests.node.conftest import assert_no_equivocation

ALL = [0, 1, 2, 3]
PROGRESS_HEIGHTS = 5
PROGRESS_TIMEOUT_S = 30.0
"""With one host cut off the other three commit PROGRESS_HEIGHTS blocks within this."""
HALT_WINDOW_S = 6.0
"""Three times a round's timeouts (propose 1 s, prevote and precommit 0.5 s): long enough
that a commit would have happened if one could."""
HEAL_BOUND_S = heal_bound_ms() / 1000
"""docs/spec/network-faults.md §3: after a 2|2 partition heals, every node commits a new
block within this (8.75 s with the namespace devnet's settings)."""


def signers(network: NetnsDevnet, height: int) -> set[str]:
    commit = network.rpc(0, f"/blocks/{height}")["commit"]
    return set(commit["signers"]) if commit else set()


def test_link_down_others_keep_committing_then_the_host_catches_up(
    loaded: tuple[NetnsDevnet, BackgroundLoad],
) -> None:
    network, load = loaded
    victim, others = 3, [0, 1, 2]
    network.network.link_down(victim)
    cut_heights = network.heights()
    target = max(cut_heights[index] for index in others) + PROGRESS_HEIGHTS
    took_s = network.wait_for_heights(
        dict.fromkeys(others, target), PROGRESS_TIMEOUT_S, "the three connected hosts to commit"
    )
    print(f"three hosts committed {PROGRESS_HEIGHTS} blocks in {took_s:.1f} s with host 3 cut")
    # Its RPC answers (management relay), but it cannot have committed past what was already
    # in flight when its cable was pulled.
    assert network.height(victim) <= cut_heights[victim] + 1 < target
    network.network.link_up(victim)
    caught_up = max(network.heights(others))
    took_s = network.wait_for_heights(
        {victim: caught_up}, CATCH_UP_BOUND_S, "host 3 to catch up after its link came back"
    )
    print(f"host 3 caught up to height {caught_up} in {took_s:.1f} s")
    # ...and votes again: its precommit is in a commit certificate after its return.
    key = network.rpc(victim, "/status")["validator"]
    network.wait_for(
        lambda: key in signers(network, network.height(0)),
        30,
        "host 3's precommit in a commit certificate",
    )
    load.stop()
    assert load.last_accepted, "the load had nothing accepted"
    load.wait_committed(ALL)
    check_no_fork(network)
    assert_no_equivocation(network, ALL)


def test_two_two_partition_halts_without_fork_and_heals_within_the_bound(
    loaded: tuple[NetnsDevnet, BackgroundLoad],
) -> None:
    network, load = loaded
    network.wait_for_heights(dict.fromkeys(ALL, max(network.heights()) + 1), 30, "progress")
    network.network.partition([[0, 1], [2, 3]])
    halted = wait_stable(network, quiet_s=2.0, timeout_s=15.0)
    window_end = time.monotonic() + HALT_WINDOW_S
    while time.monotonic() < window_end:
        assert network.heights() == halted, "a block committed without a quorum"
        time.sleep(0.25)
    check_no_fork(network)
    # What the heal bound rests on: rounds do not climb while no side has 2f+1 prevotes.
    rounds = [network.rpc(index, "/status")["consensus"]["round"] for index in ALL]
    assert max(rounds) <= 1, rounds
    network.network.heal()
    took_s = network.wait_for_heights(
        dict.fromkeys(ALL, max(halted) + 1), HEAL_BOUND_S, "a commit after the partition healed"
    )
    print(f"after healing, all four committed height {max(halted) + 1} in {took_s:.1f} s")
    network.wait_for_heights(dict.fromkeys(ALL, max(halted) + 3), 30, "steady progress")
    load.stop()
    assert load.last_accepted, "the load had nothing accepted"
    load.wait_committed(ALL)
    check_no_fork(network)
    assert_no_equivocation(network, ALL)


RATE_LIMIT_KBIT = 2_000


def test_a_host_on_a_slow_link_keeps_up(loaded: tuple[NetnsDevnet, BackgroundLoad]) -> None:
    """2 Mbit/s each way on host 3's link (tbf), about three times what the load needs: the
    network keeps committing and host 3 keeps following it within a block or two."""
    network, load = loaded
    network.network.rate_limit(3, RATE_LIMIT_KBIT, burst_bytes=32_000, latency_ms=200)
    assert "tbf" in network.network.qdisc(3)
    start = max(network.heights())
    network.wait_for_heights(dict.fromkeys(ALL, start + PROGRESS_HEIGHTS), 40, "progress")
    heights = network.heights()
    assert max(heights) - heights[3] <= 2, heights
    load.stop()
    assert load.last_accepted, "the load had nothing accepted"
    load.wait_committed(ALL)
    check_no_fork(network)
