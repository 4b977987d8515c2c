"""`scripts/bench-pruning` in small: two real single-validator nodes under the same anchor
load, one pruning. Asserts what the figure rests on: the pruning node's base moves with its
head, its block history stays bounded, and the table and JSON come out complete (the bytes
themselves belong to the full run, BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emrchain.bench import pruning

RETAIN_BLOCKS = 10


def test_the_pruning_node_keeps_a_bounded_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pruning.main(
        [
            "--duration-s", "20",
            "--sample-s", "4",
            "--retain-blocks", str(RETAIN_BLOCKS),
            "--rate", "100",
            "--prune-interval-ms", "300",
            "--root", str(tmp_path / "nets"),
            "--plot", str(tmp_path / "pruning.png"),
        ]
    )  # fmt: skip
    output = capsys.readouterr().out
    report = json.loads(output.strip().splitlines()[-1])
    kept, pruned = report["samples"]["no pruning"], report["samples"]["retain_blocks=10"]
    assert len(kept) == len(pruned) >= 5
    assert all(base == 1 for _, _, base, _ in kept)
    _, height, base, _ = pruned[-1]
    assert height > 3 * RETAIN_BLOCKS and base > height - 3 * RETAIN_BLOCKS
    history = "blocks, commits, results (B C R)"
    sizes = report["keyspace_bytes"]
    assert sizes["retain_blocks=10"][history] < sizes["no pruning"][history]
    assert "retain_blocks=10: height base MB" in output
    assert (tmp_path / "pruning.png").stat().st_size > 0
