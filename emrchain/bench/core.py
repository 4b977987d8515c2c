"""Compare the compiled core with its pure-Python twin on the same inputs, in one process.

Prints a human table, then one JSON object on the last line:
{"implementation": ..., "merkle_ratio": x, "decode_ratio": y, "verify_ratio": z, ...}
Each ratio is pure-Python time / compiled time for the same 20,000 items; the run fails (exit 1)
if the twins disagree on any result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from emrchain import _core
from emrchain.devnet.workload import DEFAULT_CHAIN_ID, anchor_transactions

MAX_TX_BYTES = 4096


def _median_seconds(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    timings = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings), result


def _signature_triplets(txs: list[bytes]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    keys, messages, signatures = [], [], []
    for raw in txs:
        offset = 3 + raw[1]
        keys.append(raw[offset : offset + 32])
        messages.append(raw[:-64])
        signatures.append(raw[-64:])
    return keys, messages, signatures


def run(items: int, repeats: int) -> dict[str, Any]:
    compiled = _core.implementation(_core.CYTHON)
    pure = _core.implementation(_core.PYTHON)
    leaves = [hashlib.sha256(index.to_bytes(8, "big")).digest() for index in range(items)]
    txs = anchor_transactions(items, chain_id=DEFAULT_CHAIN_ID, senders=200)
    keys, messages, signatures = _signature_triplets(txs)

    cases = {
        "merkle": (lambda twin: lambda: twin.merkle_root(leaves), repeats * 4),
        "decode": (
            lambda twin: lambda: twin.check_transactions(txs, DEFAULT_CHAIN_ID, MAX_TX_BYTES),
            repeats,
        ),
        "verify": (
            lambda twin: lambda: twin.verify_batch(keys, messages, signatures, 0),
            max(1, repeats // 2),
        ),
    }
    report: dict[str, Any] = {
        "implementation": _core.IMPLEMENTATION,
        "items": items,
        "tx_bytes_mean": round(sum(map(len, txs)) / len(txs), 1),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    agree = True
    for name, (make, case_repeats) in cases.items():
        compiled_seconds, compiled_result = _median_seconds(make(compiled), case_repeats)
        pure_seconds, pure_result = _median_seconds(make(pure), case_repeats)
        same = compiled_result == pure_result
        agree &= same
        report[f"{name}_ratio"] = round(pure_seconds / compiled_seconds, 2)
        report[f"{name}_cython_ms"] = round(compiled_seconds * 1e3, 3)
        report[f"{name}_python_ms"] = round(pure_seconds * 1e3, 3)
        report[f"{name}_cython_per_second"] = round(items / compiled_seconds)
        report[f"{name}_python_per_second"] = round(items / pure_seconds)
        report[f"{name}_results_identical"] = same
    verdicts = compiled.check_transactions(txs, DEFAULT_CHAIN_ID, MAX_TX_BYTES)[0]
    signatures_valid = compiled.verify_batch(keys, messages, signatures, 0)
    report["all_inputs_valid"] = set(verdicts) == {0} and set(signatures_valid) == {1}
    report["twins_agree"] = agree
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-core", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000, help="items per case (default 20000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per case")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.items <= 1_000_000 or not 1 <= arguments.repeats <= 100:
        parser.error("--items must be 1..1000000 and --repeats 1..100")
    if _core.IMPLEMENTATION != _core.CYTHON:
        print(f"bench-core: compiled core not loaded ({_core.IMPORT_ERROR})", file=sys.stderr)
        return 1
    report = run(arguments.items, arguments.repeats)
    for name in ("merkle", "decode", "verify"):
        figures = {
            key.removeprefix(name + "_"): value
            for key, value in report.items()
            if key.startswith(name + "_")
        }
        print(
            f"{name:>7}: cython {figures['cython_ms']:9.2f} ms "
            f"({figures['cython_per_second']:>9,}/s)   python {figures['python_ms']:9.2f} ms "
            f"({figures['python_per_second']:>9,}/s)   ratio {figures['ratio']:5.2f}   "
            f"identical={figures['results_identical']}"
        )
    print(json.dumps(report, sort_keys=True))
    return 0 if report["twins_agree"] and report["all_inputs_valid"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
