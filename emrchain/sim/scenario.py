"""A run's fault plan, drawn entirely from (seed, validator count, fault classes).

Everything random about a run is decided here or by the network's PRNG seeded from the same
inputs, so one seed replays bit for bit (`scripts/simulate --seed S --validators N`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

FAULT_CLASSES = ("network", "crash", "byzantine")
# Not part of "mixed": every seed has f equal-power equivocators and a lossy network. It is the
# profile that finds the deliberately broken variants quickly (tests/sim/test_broken_variants).
ATTACK = "attack"


class Behaviour(Enum):
    """What a byzantine validator does (docs/spec/consensus.md §6)."""

    SILENT = "silent"
    EQUIVOCATE = "equivocate"  # two proposals when proposer; split votes otherwise
    DOUBLE_VOTE = "double-vote"  # proposes honestly, votes differently to two groups
    INVALID_BLOCKS = "invalid-blocks"  # proposes invalid blocks and votes for them
    # Votes honestly; claims height 10^12 to everyone, answers sync requests with lies or not
    # at all, and pushes lying sync responses nobody asked for.
    LYING_SYNC = "lying-sync"
    # Votes honestly; as proposer, withholds its proposal from one correct node, and sends it the
    # proposal with an unrequested sync response for the block once the block is decided.
    WITHHOLD_PROPOSAL = "withhold-proposal"
    JUNK_PROPOSALS = "junk-proposals"  # forged, wrong-proposer and oversized proposals
    EXTREME_TIME = "extreme-time"  # as proposer, dates its block 2^63-1 or now + 10 years
    FUTURE_FLOOD = "future-flood"  # floods signed proposals for heights 2..4 above


@dataclass(frozen=True, slots=True)
class Partition:
    start_ms: int
    end_ms: int
    groups: tuple[frozenset[int], ...]


class CrashPoint(Enum):
    """Where a crash strikes (docs/spec/consensus.md §4.2)."""

    AT_ONCE = "at-once"
    AFTER_WAL = "after-wal"
    """At the next signature, right after its message is in the WAL, before the guard record
    (the restart must catch the guard up from the WAL)."""
    AFTER_SIGNING_STATE = "after-signing-state"
    """At the next signature, right after its guard record too, before it is sent."""


@dataclass(frozen=True, slots=True)
class Crash:
    node: int
    at_ms: int
    restart_ms: int
    point: CrashPoint = CrashPoint.AT_ONCE


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    validators: int
    faults: tuple[str, ...]
    heights: int
    powers: tuple[int, ...]
    byzantine: tuple[tuple[int, Behaviour], ...]
    network_heal_ms: int
    delay_max_ms: int
    drop_probability: float
    duplicate_probability: float
    partitions: tuple[Partition, ...]
    crashes: tuple[Crash, ...]
    delay_after_gst_max_ms: int = 50
    # Adversarial scheduling (attack profile): before GST, hold back every message from a node
    # that has decided more heights than its destination until GST, so a lone early decider
    # cannot warn the others. Any delay is allowed before GST in the partial synchrony model.
    hold_leaders_until_gst: bool = False

    @property
    def gst_ms(self) -> int:
        """Global stabilisation time: the network is synchronous and every node is up."""
        restarts = [crash.restart_ms for crash in self.crashes]
        return max([self.network_heal_ms, *restarts])

    @property
    def byzantine_nodes(self) -> dict[int, Behaviour]:
        return dict(self.byzantine)

    def describe(self) -> str:
        parts = [f"n={self.validators}", f"powers={list(self.powers)}", f"gst={self.gst_ms}ms"]
        if self.byzantine:
            parts.append("byzantine=" + ",".join(f"{i}:{b.value}" for i, b in self.byzantine))
        if self.crashes:
            parts.append(f"crashes={len(self.crashes)}")
        if self.partitions:
            parts.append(f"partitions={len(self.partitions)}")
        parts.append(f"drop={self.drop_probability:.2f} delay<={self.delay_max_ms}ms")
        return " ".join(parts)


def parse_faults(text: str) -> tuple[str, ...]:
    """'mixed' (all classes) | 'none' | a comma list of network, crash, byzantine; with
    byzantine, behaviour names (`Behaviour` values) restrict the byzantine validators to those."""
    if text == "mixed":
        return FAULT_CLASSES
    if text == "none":
        return ()
    classes = tuple(part.strip() for part in text.split(",") if part.strip())
    behaviours = [behaviour.value for behaviour in Behaviour]
    for name in classes:
        if name not in (*FAULT_CLASSES, ATTACK, *behaviours):
            raise ValueError(
                f"unknown fault class {name!r}; expected mixed, none, {FAULT_CLASSES} or "
                f"byzantine behaviours {behaviours}"
            )
    return classes


def chosen_behaviours(faults: tuple[str, ...]) -> list[Behaviour]:
    """Byzantine behaviours named in `faults` (they restrict the draw and imply byzantine)."""
    return [behaviour for behaviour in Behaviour if behaviour.value in faults]


def make_scenario(seed: int, validators: int, faults: tuple[str, ...], heights: int) -> Scenario:
    """Draw the fault plan of one run. Each enabled class is present in most seeds, absent in
    some, so runs mix fault combinations."""
    rng = random.Random(f"emrchain-sim/scenario/{seed}/{validators}/{','.join(faults)}")
    f = (validators - 1) // 3
    attack = ATTACK in faults
    only = chosen_behaviours(faults)  # e.g. "junk-proposals,extreme-time": one of these
    if attack or rng.random() < 0.5:
        powers = tuple([1] * validators)
    else:
        powers = tuple(rng.randint(1, 3) for _ in range(validators))
    total = sum(powers)

    byzantine: list[tuple[int, Behaviour]] = []
    if attack and f > 0:
        chosen = rng.sample(range(validators), f)
        byzantine = sorted((index, Behaviour.EQUIVOCATE) for index in chosen)
    elif ("byzantine" in faults or bool(only)) and f > 0 and (rng.random() < 0.85 or bool(only)):
        count = rng.randint(1, f)
        chosen = rng.sample(range(validators), count)
        # Keep the assumption f < n/3 by voting power: drop the heaviest until it holds.
        chosen.sort(key=lambda index: (-powers[index], index))
        while chosen and 3 * sum(powers[index] for index in chosen) >= total:
            chosen.pop(0)
        if only and not chosen:
            # Named behaviours: one in every seed. The lightest validator always fits
            # (n >= 4 gives total >= 4 * its power > 3 * its power).
            chosen = [min(range(validators), key=lambda index: (powers[index], index))]
        behaviours = only or list(Behaviour)
        byzantine = sorted((index, rng.choice(behaviours)) for index in chosen)

    network_heal_ms = 0
    delay_max_ms = 20
    drop_probability = 0.0
    duplicate_probability = 0.0
    partitions: list[Partition] = []
    if attack:
        network_heal_ms = rng.randint(2_000, 8_000)
        delay_max_ms = rng.choice((60, 200))
        drop_probability = rng.choice((0.05, 0.15))
    elif "network" in faults:
        network_heal_ms = rng.randint(300, 6_000)
        delay_max_ms = rng.choice((60, 200, 600, 1_500))
        drop_probability = rng.choice((0.0, 0.05, 0.15, 0.3))
        duplicate_probability = rng.choice((0.0, 0.05, 0.2))
        for _ in range(rng.randint(0, 2)):
            start = rng.randint(0, network_heal_ms - 1)
            end = rng.randint(start + 1, network_heal_ms)
            nodes = list(range(validators))
            rng.shuffle(nodes)
            cut = rng.randint(1, validators - 1)
            partitions.append(
                Partition(start, end, (frozenset(nodes[:cut]), frozenset(nodes[cut:])))
            )

    crashes: list[Crash] = []
    # Which of the two signing crash points: its own stream, so that the draws above (and
    # with them every earlier seed's plan) are unchanged.
    point_rng = random.Random(f"emrchain-sim/crash-point/{seed}/{validators}/{','.join(faults)}")
    if "crash" in faults and rng.random() < 0.7:
        horizon = max(network_heal_ms, 2_000)
        correct = [index for index in range(validators) if index not in dict(byzantine)]
        for node in rng.sample(correct, min(len(correct), rng.randint(1, 2))):
            at_ms = rng.randint(0, horizon - 1)
            restart_ms = rng.randint(at_ms + 1, at_ms + 1 + rng.choice((50, 500, 2_000)))
            point = CrashPoint.AT_ONCE
            if rng.random() < 0.5:
                after_wal = point_rng.random() < 0.5
                point = CrashPoint.AFTER_WAL if after_wal else CrashPoint.AFTER_SIGNING_STATE
            crashes.append(Crash(node, at_ms, restart_ms, point))

    return Scenario(
        seed=seed,
        validators=validators,
        faults=faults,
        heights=heights,
        powers=powers,
        byzantine=tuple(byzantine),
        network_heal_ms=network_heal_ms,
        delay_max_ms=delay_max_ms,
        drop_probability=drop_probability,
        duplicate_probability=duplicate_probability,
        partitions=tuple(partitions),
        crashes=tuple(sorted(crashes, key=lambda crash: (crash.at_ms, crash.node))),
        hold_leaders_until_gst=attack,
    )
