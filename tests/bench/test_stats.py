"""The load generator's bookkeeping on synthetic inputs: percentiles, timeline, lost."""

from __future__ import annotations

import math

import pytest

from emrchain.bench.load import WindowResult
from emrchain.bench.report import summarize
from emrchain.bench.stats import LoadTracker, percentile, timeline


def ids(*numbers: int) -> list[bytes]:
    return [number.to_bytes(32, "big") for number in numbers]


@pytest.mark.parametrize(
    ("percent", "expected"),
    [(1, 1.0), (50, 50.0), (95, 95.0), (99, 99.0), (99.5, 100.0), (100, 100.0)],
)
def test_nearest_rank_percentile_of_1_to_100(percent: float, expected: float) -> None:
    values = [float(value) for value in range(1, 101)]
    assert percentile(values, percent) == expected


def test_percentile_of_few_values_rounds_the_rank_up() -> None:
    assert percentile([10.0, 20.0, 30.0], 50) == 20.0
    assert percentile([10.0, 20.0, 30.0], 34) == 20.0
    assert percentile([10.0, 20.0, 30.0], 33) == 10.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_nan_and_bad_percent_raises() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 0)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_is_commit_time_minus_submission_time() -> None:
    tracker = LoadTracker()
    tracker.on_submit(ids(1, 2), 10.0)
    tracker.on_submit(ids(3), 10.5)
    assert tracker.on_commit(ids(1, 3, 99), 11.0) == 2  # 99 is not ours
    assert sorted(tracker.latencies_s) == [0.5, 1.0]
    assert tracker.committed == 2
    assert tracker.outstanding == 1


def test_commit_before_the_reply_is_still_matched() -> None:
    tracker = LoadTracker()
    tracker.on_submit(ids(1), 1.0)
    tracker.on_commit(ids(1), 1.2)
    tracker.on_refused(ids(1)[0], "duplicate")  # a late answer cannot un-commit it
    assert tracker.committed == 1
    assert tracker.rejected == 0


def test_lost_counts_accepted_never_committed_but_not_refused_or_errored() -> None:
    tracker = LoadTracker()
    tracker.on_submit(ids(1, 2, 3, 4, 5, 6), 0.0)
    tracker.on_refused(ids(2)[0], "nonce_gap")
    tracker.on_refused(ids(3)[0], "nonce_gap")
    tracker.on_refused(ids(4)[0], "mempool_full")
    tracker.on_commit(ids(1), 1.0)
    tracker.on_submit(ids(7, 8), 0.5)
    tracker.on_error(ids(7, 8))
    tracker.on_commit(ids(8), 1.5)  # an errored request's tx may still commit
    assert tracker.lost() == 2  # 5 and 6
    assert tracker.unresolved_errored() == 1  # 7
    assert tracker.rejected == 3
    assert tracker.refused_by_code == {"nonce_gap": 2, "mempool_full": 1}
    assert tracker.errors == 1
    assert tracker.committed == 2


def test_timeline_bins_by_second_and_keeps_empty_seconds() -> None:
    bins = timeline([100.0, 100.2, 102.9], [(100.5, 0.5), (102.1, 2.0), (102.2, 1.0)], 100.0)
    assert [entry.second for entry in bins] == [0, 1, 2]
    assert [entry.submitted for entry in bins] == [2, 0, 1]
    assert [entry.committed for entry in bins] == [1, 0, 2]
    assert bins[2].latencies_s == [2.0, 1.0]
    assert timeline([], [], 0.0) == []


def test_summary_figures() -> None:
    tracker = LoadTracker()
    tracker.on_submit(ids(*range(1, 101)), 0.0)
    tracker.on_commit(ids(*range(1, 51)), 1.0)
    tracker.on_commit(ids(*range(51, 100)), 2.0)
    tracker.on_refused(ids(100)[0], "nonce_gap")
    summary = summarize(tracker, WindowResult(0.0, 1.0, 2.5, False, None))
    assert summary["tps"] == 49.5  # 99 committed from the first submission to the last commit
    assert summary["tps_in_window"] == 50.0
    assert summary["offered_tps"] == 100.0
    assert summary["p50_ms"] == 1000.0
    assert summary["p95_ms"] == 2000.0
    assert summary["lost"] == 0
    assert summary["rejected"] == 1
    assert summary["accepted"] == 99
