"""CPU time of a process and of each of its threads, from /proc (Linux).

`scripts/thread-cpu --pid P --seconds S [--rate R]` measures a running node: the CPU each live
thread used over the window (as % of one core, and µs per transaction at the offered rate R),
and the CPU of threads that exited within it — the process total less the live threads. For a
node those are the compiled core's per-call verification threads, which live only for one
`verify_transactions` call. The main thread is the one whose id is the pid; `py-spy dump --pid
P` names the Python threads (`verify_0`, `store-write_0`); a live thread Python does not know
is LevelDB's background compaction thread. BENCHMARKS.md ("2026-12-01, third session") shows
what this says about a single node at 15,000 TPS.

Prints one line per thread, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MAX_WINDOW_SECONDS = 600


def _stat_cpu_seconds(text: str) -> float:
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; field 3 is first
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far, all its threads (also those that have
    exited: the verifier's per-call threads), from /proc; None if it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return _stat_cpu_seconds(text)


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Thread id -> (name, user + system CPU seconds so far) of every live thread of `pid`;
    empty if the process cannot be read. A thread that exits while this reads is left out."""
    threads: dict[int, tuple[str, float]] = {}
    try:
        entries = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return threads
    for entry in entries:
        try:
            text = Path(f"/proc/{pid}/task/{entry}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        threads[int(entry)] = (name, _stat_cpu_seconds(text))
    return threads


@dataclass(frozen=True)
class ThreadUse:
    thread_id: int
    name: str
    cpu_seconds: float


@dataclass(frozen=True)
class CpuWindow:
    """What a process used over `seconds` of wall time."""

    pid: int
    seconds: float
    process_cpu_seconds: float
    threads: tuple[ThreadUse, ...]
    """Threads alive at the end, busiest first (one born in the window counts from zero)."""

    @property
    def exited_cpu_seconds(self) -> float:
        """CPU of threads that exited within the window (never below zero: /proc counts in
        clock ticks, so the sums can differ by a tick per thread)."""
        return max(0.0, self.process_cpu_seconds - sum(t.cpu_seconds for t in self.threads))


def measure(pid: int, seconds: float) -> CpuWindow:
    """Snapshot `pid`'s threads, sleep `seconds`, snapshot again. ProcessLookupError if the
    process is gone at either end."""
    if not 0 < seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"seconds must be within (0, {MAX_WINDOW_SECONDS}]")
    process_start = process_cpu_seconds(pid)
    threads_start = thread_cpu_seconds(pid)
    started = time.monotonic()
    time.sleep(seconds)
    threads_end = thread_cpu_seconds(pid)
    process_end = process_cpu_seconds(pid)
    elapsed = time.monotonic() - started
    if process_start is None or process_end is None or not threads_end:
        raise ProcessLookupError(f"no process {pid} (or /proc is not readable)")
    uses = [
        ThreadUse(thread_id, name, cpu - threads_start.get(thread_id, (name, 0.0))[1])
        for thread_id, (name, cpu) in threads_end.items()
    ]
    uses.sort(key=lambda use: (-use.cpu_seconds, use.thread_id))
    return CpuWindow(pid, elapsed, process_end - process_start, tuple(uses))


def report(window: CpuWindow, rate: float | None) -> dict[str, object]:
    """Print one line per thread with any CPU, then return the JSON summary."""

    def per_transaction(cpu_seconds: float) -> str:
        if rate is None:
            return ""
        return f"  {cpu_seconds / window.seconds / rate * 1e6:7.1f} µs/tx"

    for use in window.threads:
        if use.cpu_seconds <= 0:
            continue
        role = "main" if use.thread_id == window.pid else ""
        share = 100 * use.cpu_seconds / window.seconds
        print(
            f"{use.thread_id:>8} {use.name:<16} {role:<4} {use.cpu_seconds:7.2f} s "
            f"{share:5.1f} % of a core{per_transaction(use.cpu_seconds)}"
        )
    exited = window.exited_cpu_seconds
    print(
        f"{'exited':>8} {'(threads gone)':<21} {exited:7.2f} s "
        f"{100 * exited / window.seconds:5.1f} % of a core{per_transaction(exited)}"
    )
    print(
        f"process: {window.process_cpu_seconds:.2f} s over {window.seconds:.1f} s = "
        f"{window.process_cpu_seconds / window.seconds:.2f} cores"
        f"{per_transaction(window.process_cpu_seconds)}"
    )
    return {
        "pid": window.pid,
        "seconds": round(window.seconds, 2),
        "process_cpu_s": round(window.process_cpu_seconds, 2),
        "exited_threads_cpu_s": round(exited, 2),
        "rate": rate,
        "threads": [
            {"id": use.thread_id, "name": use.name, "cpu_s": round(use.cpu_seconds, 2)}
            for use in window.threads
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/thread-cpu", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pid", type=int, required=True, help="the process to measure")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help=f"window (0..{MAX_WINDOW_SECONDS}, default 10)"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="transactions per second, for µs per transaction"
    )
    arguments = parser.parse_args(argv)
    if arguments.rate is not None and not 0 < arguments.rate <= 10_000_000:
        parser.error("--rate must be within (0, 10000000]")
    if not 0 < arguments.seconds <= MAX_WINDOW_SECONDS:
        parser.error(f"--seconds must be within (0, {MAX_WINDOW_SECONDS}]")
    try:
        window = measure(arguments.pid, arguments.seconds)
    except ProcessLookupError as error:
        print(f"thread-cpu: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report(window, arguments.rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
