"""`scripts/bench-ab`'s summary (`emrchain/bench/ab.py`): means, the new/base ratio, and which
pairs favour the new code, per figure and in the right direction (more TPS, less CPU per
transaction, lower p95); a figure missing from a run leaves only that pair out."""

from __future__ import annotations

import pytest

from emrchain.bench.ab import Pair, main, summarize


def _figures(tps: float, cpu: float | None, p95: float) -> dict[str, float | None]:
    return {"tps": tps, "node_cpu_us_per_tx": cpu, "p95_ms": p95}


def test_summary_counts_each_figure_in_its_own_direction() -> None:
    pairs = [
        Pair(_figures(100, 90, 300), _figures(110, 80, 250)),  # new better on all three
        Pair(_figures(100, 90, 300), _figures(95, 95, 310)),  # new worse on all three
        Pair(_figures(100, None, 300), _figures(120, 70, 200)),  # no CPU figure for the base
    ]
    summary = summarize(pairs)
    assert summary["pairs"] == 3
    assert summary["tps"] == {
        "base_mean": 100.0,
        "new_mean": 108.3,
        "ratio": 1.0833,
        "pairs_favouring_new": 2,
        "pairs_compared": 3,
    }
    cpu = summary["node_cpu_us_per_tx"]
    assert isinstance(cpu, dict)
    assert (cpu["pairs_compared"], cpu["pairs_favouring_new"]) == (2, 1)
    assert cpu["base_mean"] == 90.0 and cpu["new_mean"] == 87.5
    p95 = summary["p95_ms"]
    assert isinstance(p95, dict) and p95["pairs_favouring_new"] == 2


def test_a_figure_no_pair_has_is_null() -> None:
    summary = summarize([Pair(_figures(1, None, 1), _figures(2, None, 1))])
    assert summary["node_cpu_us_per_tx"] is None


@pytest.mark.parametrize(
    "argv",
    [["HEAD", "--pairs", "0"], ["HEAD", "--pairs", "51"], ["HEAD", "--", "--name", "x"]],
)
def test_bad_arguments_are_refused_before_anything_runs(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
