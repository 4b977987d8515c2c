"""Bookkeeping of a load run: which transaction was submitted when, what happened to it, and
the figures derived from that (percentiles, per-second timeline, lost count).

Pure and clock-free: callers pass the times (seconds on one monotonic clock), so the math is
tested on synthetic inputs.

Accounting of one transaction, from the client's point of view:
- submitted: its batch was sent;
- refused: the node answered that admission refused it (counted in `rejected`, by code);
- errored: its batch got no usable answer (transport or HTTP error), so its fate is unknown
  unless it shows up in a committed block;
- committed: its id appeared in a committed block; latency = commit time - submission time
  (counted in `failed` too when execution refused it: final, but it changed nothing);
- lost: accepted by the node and never seen committed (within the grace period).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of ascending `sorted_values` (the smallest value such that at
    least `percent`% of the values are <= it); NaN for no values."""
    if not 0 < percent <= 100:
        raise ValueError("percent must be within (0, 100]")
    if not sorted_values:
        return math.nan
    rank = math.ceil(percent / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


@dataclass(slots=True)
class TimelineBin:
    """One second of the run: what was submitted and committed in it, and the latencies of
    the transactions committed in it."""

    second: int
    submitted: int = 0
    committed: int = 0
    latencies_s: list[float] = field(default_factory=list)


def timeline(
    submitted_times_s: Iterable[float],
    commits: Iterable[tuple[float, float]],
    start_s: float,
) -> list[TimelineBin]:
    """Per-second bins from `start_s`: submissions by time, commits as (commit time, latency).
    Bins run from second 0 to the last second with any event; empty seconds are kept."""
    bins: dict[int, TimelineBin] = {}

    def bin_at(time_s: float) -> TimelineBin:
        second = max(0, int(time_s - start_s))
        entry = bins.get(second)
        if entry is None:
            entry = bins[second] = TimelineBin(second)
        return entry

    for time_s in submitted_times_s:
        bin_at(time_s).submitted += 1
    for commit_s, latency_s in commits:
        entry = bin_at(commit_s)
        entry.committed += 1
        entry.latencies_s.append(latency_s)
    if not bins:
        return []
    return [bins.get(second) or TimelineBin(second) for second in range(max(bins) + 1)]


class LoadTracker:
    """The fate of every submitted transaction id; see the module docstring."""

    __slots__ = (
        "_errored",
        "_in_flight",
        "commit_times_s",
        "committed",
        "errors",
        "failed_by_code",
        "latencies_s",
        "refused_by_code",
        "submit_times_s",
        "submitted",
    )

    def __init__(self) -> None:
        self._in_flight: dict[bytes, float] = {}
        """Submitted, not refused, not yet committed: id -> submission time."""
        self._errored: set[bytes] = set()
        self.submitted = 0
        self.committed = 0
        self.errors = 0
        """Failed requests (transport errors, HTTP errors)."""
        self.refused_by_code: dict[str, int] = {}
        self.failed_by_code: dict[int, int] = {}
        """Committed transactions that execution refused (final, but they changed nothing)."""
        self.latencies_s: list[float] = []
        self.commit_times_s: list[float] = []
        self.submit_times_s: list[float] = []
        """One entry per submitted batch item, for the timeline."""

    @property
    def outstanding(self) -> int:
        """Submitted transactions neither refused nor committed yet (in flight)."""
        return len(self._in_flight)

    @property
    def rejected(self) -> int:
        return sum(self.refused_by_code.values())

    def on_submit(self, tx_ids: Sequence[bytes], time_s: float) -> None:
        """A batch is about to be sent (recorded first, so a commit that overtakes the
        reply is still matched)."""
        in_flight = self._in_flight
        for tx_id in tx_ids:
            in_flight[tx_id] = time_s
        self.submitted += len(tx_ids)
        self.submit_times_s.extend([time_s] * len(tx_ids))

    def on_refused(self, tx_id: bytes, code: str) -> None:
        if self._in_flight.pop(tx_id, None) is not None:
            self.refused_by_code[code] = self.refused_by_code.get(code, 0) + 1

    def on_error(self, tx_ids: Sequence[bytes]) -> None:
        """The batch's request failed: its transactions' admission is unknown."""
        self.errors += 1
        errored = self._errored
        in_flight = self._in_flight
        for tx_id in tx_ids:
            if tx_id in in_flight:
                errored.add(tx_id)

    def on_commit(
        self,
        tx_ids: Sequence[bytes],
        time_s: float,
        failed: Iterable[tuple[int, int]] = (),
    ) -> int:
        """A block with `tx_ids` was seen committed at `time_s`, execution having refused the
        (index, code) pairs of `failed`; returns how many of the transactions were ours."""
        in_flight = self._in_flight
        latencies = self.latencies_s
        failed_codes = dict(failed)
        ours = 0
        for index, tx_id in enumerate(tx_ids):
            submitted_s = in_flight.pop(tx_id, None)
            if submitted_s is not None:
                latencies.append(time_s - submitted_s)
                ours += 1
                code = failed_codes.get(index)
                if code is not None:
                    self.failed_by_code[code] = self.failed_by_code.get(code, 0) + 1
        if ours:
            self.commit_times_s.extend([time_s] * ours)
            self.committed += ours
        return ours

    def lost(self) -> int:
        """Accepted transactions not (yet) seen committed; errored ones are not counted, their
        admission being unknown (they are reported as `errors`)."""
        return sum(1 for tx_id in self._in_flight if tx_id not in self._errored)

    def unresolved_errored(self) -> int:
        """Transactions of failed requests never seen committed."""
        return sum(1 for tx_id in self._in_flight if tx_id in self._errored)
