"""The simulated network: per-message delay, loss, duplication and partitions until the
global stabilisation time (GST), then bounded delay (partial synchrony, Dwork-Lynch-Stockmeyer).

Reordering needs no rule of its own: every copy gets an independent random delay.
"""

from __future__ import annotations

import random

from emrchain.sim.scenario import Scenario


class Network:
    """Decides when (if ever) each copy of a message arrives. Draws only from its own PRNG."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self._scenario = scenario
        self._rng = rng
        self._heal_ms = scenario.network_heal_ms
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0
        self.held = 0

    def _partitioned(self, now_ms: int, source: int, destination: int) -> bool:
        for partition in self._scenario.partitions:
            if partition.start_ms <= now_ms < partition.end_ms:
                for group in partition.groups:
                    if source in group:
                        return destination not in group
        return False

    def arrival_times(
        self, now_ms: int, source: int, destination: int, *, source_ahead: bool = False
    ) -> list[int]:
        """Arrival times of the copies of one message sent now (empty: lost).

        `source_ahead`: the sender has decided more heights than the destination (used by the
        attack profile's adversarial scheduling, `Scenario.hold_leaders_until_gst`).
        """
        self.sent += 1
        rng = self._rng
        scenario = self._scenario
        if now_ms < self._heal_ms:
            if source_ahead and scenario.hold_leaders_until_gst:
                self.held += 1
                return [self._heal_ms + rng.randint(1, scenario.delay_after_gst_max_ms)]
            if self._partitioned(now_ms, source, destination):
                self.dropped += 1
                return []
            if scenario.drop_probability and rng.random() < scenario.drop_probability:
                self.dropped += 1
                return []
            times = [now_ms + rng.randint(1, scenario.delay_max_ms)]
            if scenario.duplicate_probability and rng.random() < scenario.duplicate_probability:
                self.duplicated += 1
                times.append(now_ms + rng.randint(1, scenario.delay_max_ms))
            return times
        # After GST every message arrives within the bound; duplicates are still harmless.
        bound = scenario.delay_after_gst_max_ms
        times = [now_ms + rng.randint(1, bound)]
        if scenario.duplicate_probability and rng.random() < scenario.duplicate_probability / 4:
            self.duplicated += 1
            times.append(now_ms + rng.randint(1, bound))
        return times
