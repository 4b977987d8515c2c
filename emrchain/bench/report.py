"""The figures of a load run: the summary dict (last stdout line), its JSON file and the plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from emrchain.bench.load import WindowResult
from emrchain.bench.stats import LoadTracker, TimelineBin, percentile, timeline


def _milliseconds(value_s: float) -> float | None:
    return None if math.isnan(value_s) else round(value_s * 1000, 1)


def summarize(tracker: LoadTracker, window: WindowResult) -> dict[str, Any]:
    """The run's figures. `tps` is committed transactions per second from the first
    submission to the last commit; `tps_in_window` counts only commits inside the window."""
    latencies = sorted(tracker.latencies_s)
    window_s = max(window.window_end_s - window.start_s, 1e-9)
    last_commit_s = max(tracker.commit_times_s, default=window.start_s)
    span_s = max(last_commit_s - window.start_s, 1e-9)
    in_window = sum(1 for time_s in tracker.commit_times_s if time_s <= window.window_end_s)
    return {
        "tps": round(tracker.committed / span_s, 1) if tracker.committed else 0.0,
        "tps_in_window": round(in_window / window_s, 1),
        "offered_tps": round(tracker.submitted / window_s, 1),
        "p50_ms": _milliseconds(percentile(latencies, 50)) if latencies else None,
        "p95_ms": _milliseconds(percentile(latencies, 95)) if latencies else None,
        "p99_ms": _milliseconds(percentile(latencies, 99)) if latencies else None,
        "max_ms": _milliseconds(latencies[-1]) if latencies else None,
        "submitted": tracker.submitted,
        "accepted": tracker.submitted - tracker.rejected,
        "committed": tracker.committed,
        "rejected": tracker.rejected,
        "rejected_by_code": dict(sorted(tracker.refused_by_code.items())),
        "failed": sum(tracker.failed_by_code.values()),
        "failed_by_code": {
            str(code): count for code, count in sorted(tracker.failed_by_code.items())
        },
        "lost": tracker.lost(),
        "errors": tracker.errors,
        "errored_txs_unresolved": tracker.unresolved_errored(),
        "window_s": round(window_s, 2),
        "drain_s": round(window.end_s - window.window_end_s, 2),
        "exhausted": window.exhausted,
        "stream_error": window.stream_error,
    }


def timeline_rows(tracker: LoadTracker, start_s: float) -> list[dict[str, Any]]:
    bins = timeline(
        tracker.submit_times_s,
        zip(tracker.commit_times_s, tracker.latencies_s, strict=True),
        start_s,
    )
    return [_row(entry) for entry in bins]


def _row(entry: TimelineBin) -> dict[str, Any]:
    latencies = sorted(entry.latencies_s)
    return {
        "second": entry.second,
        "submitted": entry.submitted,
        "committed": entry.committed,
        "p50_ms": _milliseconds(percentile(latencies, 50)) if latencies else None,
        "p95_ms": _milliseconds(percentile(latencies, 95)) if latencies else None,
    }


def write_json(path: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"summary": summary, "timeline": rows}, indent=1) + "\n")


def write_plot(path: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Throughput (submitted and committed per second) above latency (p50, p95 per second)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never a display
    from matplotlib import pyplot

    seconds = [row["second"] for row in rows]
    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(8, 5), dpi=80, sharex=True)
    top.plot(seconds, [row["submitted"] for row in rows], label="submitted/s", color="#999999")
    top.plot(seconds, [row["committed"] for row in rows], label="committed/s", color="#1f77b4")
    top.set_ylabel("transactions / s")
    top.legend(loc="upper right", fontsize=8)
    top.grid(alpha=0.3)
    for key, color in (("p50_ms", "#2ca02c"), ("p95_ms", "#d62728")):
        points = [(row["second"], row[key]) for row in rows if row[key] is not None]
        bottom.plot(
            [second for second, _ in points],
            [value for _, value in points],
            label=key.replace("_ms", ""),
            color=color,
        )
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds since the first submission")
    bottom.legend(loc="upper right", fontsize=8)
    bottom.grid(alpha=0.3)
    rate = summary.get("rate")
    offered = f"offered {rate:,.0f}/s" if rate else "as fast as accepted"
    figure.suptitle(
        f"{summary.get('validators')} validators, {offered}: {summary['tps']:,.0f} TPS, "
        f"p95 {summary['p95_ms']} ms, lost {summary['lost']}",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    _shrink_png(path)


def _shrink_png(path: Path) -> None:
    """A 64-colour palette: a line plot looks the same at about a third of the bytes (plots get
    committed to docs/)."""
    from PIL import Image  # a matplotlib dependency

    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=64)
    reduced.save(path, optimize=True)


def human_summary(summary: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"validators {summary['validators']}, duration {summary['duration_s']} s, "
            f"offered {summary['offered_tps']:,.0f} TPS"
            + (f" (asked {summary['rate']:,.0f})" if summary.get("rate") else " (max)"),
            f"committed {summary['committed']:,} of {summary['submitted']:,} submitted: "
            f"{summary['tps']:,.0f} TPS ({summary['tps_in_window']:,.0f} within the window)",
            f"latency p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, "
            f"p99 {summary['p99_ms']} ms, max {summary['max_ms']} ms",
            f"rejected {summary['rejected']} {summary['rejected_by_code']}, refused by "
            f"execution {summary['failed']} {summary['failed_by_code']}, lost "
            f"{summary['lost']}, errors {summary['errors']}",
            f"load average {summary['load_average_start']} -> {summary['load_average_end']}",
        ]
    )
