"""Running many seeds (optionally in worker processes) and summarising them."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from emrchain.sim.scenario import make_scenario, parse_faults
from emrchain.sim.simulation import Simulation, SimulationOptions


@dataclass(frozen=True)
class RunSpec:
    seed: int
    validators: int
    heights: int
    faults: str
    variant: str

    def replay_command(self) -> str:
        command = (
            f"scripts/simulate --seed {self.seed} --validators {self.validators} "
            f"--heights {self.heights} --faults {self.faults}"
        )
        if self.variant != "correct":
            command += f" --variant {self.variant}"
        return command


@dataclass(frozen=True)
class RunSummary:
    spec: RunSpec
    safety: tuple[str, ...]
    liveness: tuple[str, ...]
    heights_decided: int
    events: int
    virtual_time_ms: int
    trace_hash: str
    description: str
    restart_path: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.safety and not self.liveness


def run_one(spec: RunSpec) -> RunSummary:
    scenario = make_scenario(spec.seed, spec.validators, parse_faults(spec.faults), spec.heights)
    result = Simulation(scenario, SimulationOptions(variant=spec.variant)).run()
    return RunSummary(
        spec=spec,
        safety=tuple(
            f"{v.invariant} at {v.time_ms}ms: {v.detail}" for v in result.safety_violations
        ),
        liveness=tuple(
            f"{v.invariant} at {v.time_ms}ms: {v.detail}" for v in result.liveness_failures
        ),
        heights_decided=result.heights_decided,
        events=result.events,
        virtual_time_ms=result.virtual_time_ms,
        trace_hash=result.trace_hash,
        description=scenario.describe(),
        restart_path=result.restart_path,
    )


def specs(
    seeds: list[int], validators: list[int], heights: int, faults: str, variant: str
) -> list[RunSpec]:
    return [
        RunSpec(seed, count, heights, faults, variant) for seed in seeds for count in validators
    ]


def run_many(specs_to_run: list[RunSpec], processes: int = 1) -> Iterator[RunSummary]:
    """Yield summaries in the order of `specs_to_run` (deterministic whatever `processes`)."""
    if processes <= 1:
        for spec in specs_to_run:
            yield run_one(spec)
        return
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        yield from pool.imap(run_one, specs_to_run, chunksize=4)


class Digest(Protocol):
    """A running hash (`hashlib.sha256()`)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass
class Totals:
    runs: int = 0
    seeds: int = 0
    safety_violations: int = 0
    liveness_failures: int = 0
    heights_decided: int = 0
    events: int = 0
    failing: list[dict[str, object]] = field(default_factory=list)
    restart_path: Counter[str] = field(default_factory=Counter)
    _trace: Digest = field(default_factory=hashlib.sha256)
    started: float = field(default_factory=time.perf_counter)

    def add(self, summary: RunSummary) -> None:
        self.runs += 1
        self.heights_decided += summary.heights_decided
        self.events += summary.events
        self.restart_path.update(summary.restart_path)
        self._trace.update(summary.trace_hash.encode())
        if summary.safety:
            self.safety_violations += 1
        elif summary.liveness:
            self.liveness_failures += 1
        if not summary.ok:
            self.failing.append(
                {
                    "seed": summary.spec.seed,
                    "validators": summary.spec.validators,
                    "violation": (summary.safety or summary.liveness)[0],
                    "replay": summary.spec.replay_command(),
                }
            )

    def as_json(self, extra: dict[str, object] | None = None) -> dict[str, object]:
        elapsed = time.perf_counter() - self.started
        report: dict[str, object] = {
            "runs": self.runs,
            "seeds": self.seeds,
            "safety_violations": self.safety_violations,
            "liveness_failures": self.liveness_failures,
            "heights_decided": self.heights_decided,
            "seeds_per_second": round(self.seeds / elapsed, 2) if elapsed > 0 else None,
            "runs_per_second": round(self.runs / elapsed, 2) if elapsed > 0 else None,
            "elapsed_seconds": round(elapsed, 2),
            "events": self.events,
            "failing_seeds": self.failing,
            # What the runs exercised of the runtime's restart path (correct nodes).
            "restart_path": dict(sorted(self.restart_path.items())),
            # Digest of every run's event trace, in run order: equal digests, equal runs.
            "trace_digest": self._trace.hexdigest(),
        }
        report.update(extra or {})
        return report


def describe_failure(summary: RunSummary, write: Callable[[str], None]) -> None:
    spec = summary.spec
    write(f"FAIL seed={spec.seed} validators={spec.validators} ({summary.description})")
    for line in summary.safety + summary.liveness:
        write(f"  {line}")
    write(f"  replay: {spec.replay_command()}")
