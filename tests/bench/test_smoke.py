"""A short real load run: 4 validator processes on 127.0.0.1, a low offered rate, 5 s.
Asserts correctness only (every accepted transaction committed, the report is complete);
throughput figures belong to scripts/bench-devnet."""

from __future__ import annotations

import json
from pathlib import Path

from emrchain.bench.runner import BenchOptions, run_bench

REQUIRED_KEYS = {"tps", "p50_ms", "p95_ms", "p99_ms", "lost", "errors", "validators", "duration_s"}


def test_four_validators_low_rate_loses_nothing(tmp_path: Path) -> None:
    summary = run_bench(
        BenchOptions(
            output_dir=tmp_path / "out",
            validators=4,
            duration_s=5.0,
            rate=200.0,
            grace_s=20.0,
            workers=1,
            name="smoke",
        )
    )
    assert summary.keys() >= REQUIRED_KEYS
    assert summary["validators"] == 4
    assert summary["submitted"] > 0
    assert summary["lost"] == 0
    assert summary["errors"] == 0
    assert summary["rejected"] == 0
    assert summary["failed"] == 0  # every anchor executed (senders registered first)
    assert summary["committed"] == summary["submitted"]
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    assert all(node["halt"] is None and node["evidence"] == 0 for node in summary["nodes"])
    # The four node processes worked during the window, and the figure is per transaction.
    assert summary["node_cpu_s"] > 0
    assert summary["node_cpu_us_per_tx"] == round(
        summary["node_cpu_s"] / summary["committed"] * 1e6, 1
    )
    written = json.loads((tmp_path / "out" / "smoke.json").read_text())
    assert written["summary"]["committed"] == summary["committed"]
    assert sum(row["committed"] for row in written["timeline"]) == summary["committed"]
    assert (tmp_path / "out" / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
