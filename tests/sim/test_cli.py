"""scripts/simulate: flags, the JSON last line, and the replay command of a failing run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
REQUIRED = {"runs", "safety_violations", "liveness_failures", "heights_decided", "seeds_per_second"}


def simulate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPTS / "simulate"), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_json_summary_is_the_last_line_from_any_directory(tmp_path: Path) -> None:
    completed = simulate("--seeds", "3", "--validators", "4,7", "--json", cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report.keys() >= REQUIRED
    assert (report["runs"], report["safety_violations"], report["liveness_failures"]) == (6, 0, 0)
    assert report["heights_decided"] >= 6 * 3


def test_a_violation_prints_its_seed_and_a_replay_command_that_reproduces_it(
    tmp_path: Path,
) -> None:
    args = ["--validators", "7", "--faults", "attack", "--variant", "half-threshold"]
    completed = simulate("--seeds", "3", *args, "--json", cwd=tmp_path)
    assert completed.returncode == 1
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["safety_violations"] >= 1
    failing = report["failing_seeds"][0]
    assert f"replay: {failing['replay']}" in completed.stdout
    replay = failing["replay"].split()
    assert replay[0] == "scripts/simulate"
    again = simulate(*replay[1:], cwd=SCRIPTS.parent)
    assert again.returncode == 1
    assert failing["violation"].split(":")[0] in again.stdout


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    assert simulate("--faults", "gremlins", cwd=tmp_path).returncode == 2
    assert simulate("--variant", "nonsense", cwd=tmp_path).returncode == 2


def test_soak_script_runs_chunks_and_ends_with_json(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            str(SCRIPTS / "soak-simulate"),
            "--seeds",
            "6",
            "--chunk",
            "3",
            "--processes",
            "2",
            "--validators",
            "4",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert sum(line.startswith("progress:") for line in lines) == 2
    assert json.loads(lines[-1])["runs"] == 6
