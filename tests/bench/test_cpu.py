"""`emrchain.bench.cpu` (`scripts/thread-cpu`): per-thread CPU of a process from /proc, the CPU
of threads that exited within the window, and its refusals."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from emrchain.bench import cpu


def _burn(seconds: float) -> None:
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


def test_process_cpu_seconds_reads_this_process_and_refuses_a_missing_one() -> None:
    _burn(0.05)  # so both readings move
    reading = cpu.process_cpu_seconds(os.getpid())
    assert reading is not None and abs(reading - time.process_time()) < 0.1
    assert cpu.process_cpu_seconds(2**22 + 7) is None  # above Linux's pid limit: no such process


def test_thread_cpu_seconds_names_this_process_threads() -> None:
    threads = cpu.thread_cpu_seconds(os.getpid())
    assert os.getpid() in threads  # the main thread's id is the pid
    assert threading.get_native_id() in threads
    assert all(seconds >= 0 for _, seconds in threads.values())
    assert cpu.thread_cpu_seconds(2**22 + 7) == {}


def test_a_window_sees_a_busy_thread_and_one_that_exited(capsys: pytest.CaptureFixture) -> None:
    busy_id: list[int] = []
    stop = threading.Event()

    def busy() -> None:  # burns, then stays alive (idle) until the window is over
        busy_id.append(threading.get_native_id())
        # Burn only once the window has taken its first reading: a burn that finished
        # before it would count nothing (seen on a loaded machine).
        time.sleep(0.2)
        _burn(0.1)
        stop.wait()

    def short_lived() -> None:
        time.sleep(0.05)  # started within the window, then burns and exits in it
        _burn(0.15)

    worker = threading.Thread(target=busy)
    worker.start()
    ender = threading.Timer(0.05, short_lived)
    ender.start()
    try:
        window = cpu.measure(os.getpid(), 1.5)  # slack for a busy machine
    finally:
        stop.set()
        worker.join()
        ender.join()
    by_id = {use.thread_id: use for use in window.threads}
    assert busy_id[0] in by_id and by_id[busy_id[0]].cpu_seconds > 0
    assert os.getpid() in by_id
    # The short-lived thread's 0.15 s is in the process total but in no live thread; /proc
    # counts in clock ticks (10 ms), hence the margin. (The busy thread's burn may have begun
    # before the window, so only "more than nothing" is certain for it.)
    assert window.exited_cpu_seconds >= 0.1
    summary = cpu.report(window, rate=1000.0)
    printed = capsys.readouterr().out
    assert str(busy_id[0]) in printed and "exited" in printed and "µs/tx" in printed
    assert json.loads(json.dumps(summary))["threads"][0]["cpu_s"] >= 0


def test_cli_refuses_bad_arguments_and_a_missing_process(
    capsys: pytest.CaptureFixture,
) -> None:
    assert cpu.main(["--pid", str(2**22 + 7), "--seconds", "0.05"]) == 2
    assert "no process" in capsys.readouterr().err
    for arguments in (["--pid", "1", "--seconds", "0"], ["--pid", "1", "--rate", "-5"]):
        with pytest.raises(SystemExit) as exit_info:
            cpu.main(arguments)
        assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="seconds"):
        cpu.measure(os.getpid(), 601)


def test_cli_measures_this_process_and_ends_with_json(capsys: pytest.CaptureFixture) -> None:
    assert cpu.main(["--pid", str(os.getpid()), "--seconds", "0.1", "--rate", "100"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["pid"] == os.getpid() and summary["rate"] == 100.0
    assert any(thread["id"] == os.getpid() for thread in summary["threads"])
