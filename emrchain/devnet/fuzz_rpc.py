"""Fuzz the RPC of a real node with schemathesis (`scripts/fuzz-rpc`; run on purpose, not in CI).

Starts a single-validator devnet on a temporary home on 127.0.0.1, runs the schemathesis CLI
against the node's own `/openapi.json` with every check (server errors, response schema,
status code and content type conformance, negative data rejection, undeclared methods, ...),
a bounded number of examples per operation, then requires the node to still be running,
healthy and committing blocks. The last stdout line is one JSON summary; schemathesis' own
report goes to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from emrchain.devnet.harness import Devnet, DevnetError

# Bounds of one run: nothing here may wait forever.
START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 3_600.0
LIVENESS_BLOCKS = 2
LIVENESS_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 40

# Where the document cannot say what a valid request is, and why (docs/spec/rpc.md §Fuzzing):
# - the binary batch of POST /txs is framed (count, lengths) in a way JSON Schema cannot
#   express, so schema-valid random bytes are rightly refused with a 400 framing code;
# - a transaction id taken from a POST /txs reply is only "created" if it was accepted, so
#   the inferred link's resource check (ensure_resource_availability) misfires on refusals;
# - /ws/ routes upgrade to WebSocket, which an HTTP fuzzer cannot speak (tests/rpc and the
#   stream tests cover them).
CONFIG = """
[[operations]]
include-path = "/txs"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = [200, 400]
"""
EXCLUDED_CHECKS = "ensure_resource_availability"
EXCLUDED_PATHS = "^/ws/"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/fuzz-rpc", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--max-examples", type=int, default=250, help="test cases per operation and phase"
    )
    parser.add_argument("--seed", type=int, default=None, help="replay a run (schemathesis seed)")
    parser.add_argument("--workers", type=int, default=1, help="concurrent schemathesis workers")
    parser.add_argument(
        "--report", type=Path, default=None, help="also keep schemathesis' JSON report here"
    )
    args = parser.parse_args(argv)
    if args.max_examples < 1 or args.workers < 1:
        parser.error("--max-examples and --workers must be at least 1")
    return args


def schemathesis_command(
    url: str, config: Path, report: Path, args: argparse.Namespace
) -> list[str]:
    """The `schemathesis run` command line for the node at `url`."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--exclude-path-regex",
        EXCLUDED_PATHS,
        "--max-examples",
        str(args.max_examples),
        "--workers",
        str(args.workers),
        "--request-timeout",
        str(REQUEST_TIMEOUT_S),
        # A persistent example database would make runs depend on earlier ones.
        "--generation-database",
        "none",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    return command


def _node_alive(network: Devnet) -> bool:
    """Still running, healthy, and committing: the height moves on by LIVENESS_BLOCKS."""
    if not network.is_running(0):
        return False
    health = network.try_status(0)
    if health is None or health.get("halt") is not None:
        return False
    try:
        network.wait_for_height(
            health["latest_height"] + LIVENESS_BLOCKS, [0], timeout_s=LIVENESS_TIMEOUT_S
        )
    except DevnetError:
        return False
    return network.is_running(0)


def _log_tail(network: Devnet) -> str:
    path = network.log_path(0)
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-LOG_TAIL_LINES:])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One fuzz run; returns the summary (printed by `main`)."""
    summary: dict[str, Any] = {
        "operations": 0,
        "examples": 0,
        "failures": 0,
        "errors": 0,
        "node_alive": False,
        "schemathesis_exit": None,
    }
    with tempfile.TemporaryDirectory(prefix="emrchain-fuzz-") as temp:
        network = Devnet(Path(temp) / "net", 1)
        try:
            network.start_all()
            try:
                network.wait_for_height(1, [0], timeout_s=START_TIMEOUT_S)
            except DevnetError as error:
                print(f"{error}\nnode log tail:\n{_log_tail(network)}", file=sys.stderr)
                return summary
            report = args.report or Path(temp) / "schemathesis.json"
            config = Path(temp) / "schemathesis.toml"
            config.write_text(CONFIG)
            command = schemathesis_command(network.rpc_urls[0], config, report, args)
            print("+", " ".join(command), file=sys.stderr, flush=True)
            try:
                completed = subprocess.run(
                    command, stdout=sys.stderr, cwd=temp, timeout=RUN_TIMEOUT_S, check=False
                )
                summary["schemathesis_exit"] = completed.returncode
            except subprocess.TimeoutExpired:
                summary["schemathesis_exit"] = "timeout"
            if report.exists():
                data = json.loads(report.read_text())
                summary["operations"] = data["operations"]["tested"]
                summary["examples"] = data["test_cases"]["generated"]
                summary["failures"] = data["test_cases"]["unique_failures"]
                summary["errors"] = data["test_cases"]["errored"] + len(data["errors"])
            summary["node_alive"] = _node_alive(network)
            if not summary["node_alive"]:
                print(f"node log tail:\n{_log_tail(network)}", file=sys.stderr)
        finally:
            network.stop_all()
    return summary


def passed(summary: dict[str, Any]) -> bool:
    return (
        summary["schemathesis_exit"] == 0
        and summary["operations"] > 0
        and summary["failures"] == 0
        and summary["errors"] == 0
        and summary["node_alive"]
    )


def main(argv: list[str] | None = None) -> int:
    summary = run(_parse(argv))
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0 if passed(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
