#!/usr/bin/env python3
"""Start and stop a private, offline js-ipfs node (Kubo-compatible /api/v0 RPC) on 127.0.0.1.

Used by the test fixtures and by hand for the demo; standard library only, so it runs before
the project's virtualenv exists. The node comes from `scripts/ipfs/node_modules` (installed by
`scripts/setup --with-services`).

    daemon.py start --repo DIR [--api-port N] [--timeout-s S]   # prints {"pid":..,"api_url":..}
    daemon.py stop --repo DIR [--timeout-s S]
    daemon.py status --repo DIR

Facts this script is built around (measured, see the team notes):
- a daemon that fails to start hangs instead of exiting, so readiness is polled and the process
  group is killed when the deadline passes;
- after SIGKILL a stale `repo.lock` blocks the next start for ~20 s, so it is removed whenever
  no daemon of this repo is alive;
- `--offline --enable-preload=false`, an empty Bootstrap list and MDNS off keep every byte of
  traffic on this machine.

The `overrides` in package.json hold js-ipfs 0.66.1's dependency tree together on Node 20:
`mortice`, `@libp2p/tcp`, `@libp2p/websockets` and `@multiformats/mafmt` keep it from crashing
at start; `@libp2p/peer-record` 5.0.2 and `@libp2p/utils` 3.0.4 keep the multiaddrs they create
on `@multiformats/multiaddr` 11 like libp2p 0.42 itself (their later patch releases moved to 12,
whose objects fail libp2p's `isMultiaddr` check, so identify fails and two online nodes never
become bitswap partners).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PACKAGE_DIRECTORY = Path(__file__).resolve().parent
COMMAND_LINE_SCRIPT = PACKAGE_DIRECTORY / "node_modules" / "ipfs" / "src" / "cli.js"
PID_FILE_NAME = "daemon.pid"
LOG_FILE_NAME = "daemon.log"
INIT_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.1


class DaemonError(RuntimeError):
    """The node could not be installed, initialised, started or stopped."""


def node_environment(repo: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment["IPFS_PATH"] = str(repo)
    # The update notifier would otherwise contact the npm registry on every start.
    environment["NO_UPDATE_NOTIFIER"] = "1"
    return environment


def api_multiaddress(port: int) -> str:
    return f"/ip4/127.0.0.1/tcp/{port}"


def init_repo(repo: Path) -> None:
    """Create an empty, offline-only repository in `repo` (no-op if it exists)."""
    if (repo / "config").exists():
        return
    if not COMMAND_LINE_SCRIPT.exists():
        raise DaemonError(
            f"js-ipfs is not installed at {COMMAND_LINE_SCRIPT}: run scripts/setup --with-services"
        )
    repo.mkdir(parents=True, exist_ok=True)
    init_config = {
        "Addresses": {
            "Swarm": [],
            "Announce": [],
            "NoAnnounce": [],
            "API": api_multiaddress(0),
            "Gateway": "",
            "RPC": "",
            "Delegates": [],
        },
        "Discovery": {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}},
        "Bootstrap": [],
        "Pubsub": {"Enabled": False},
        "Swarm": {"DisableNatPortMap": True},
    }
    init_config_path = repo.parent / f"{repo.name}.init-config.json"
    init_config_path.write_text(json.dumps(init_config))
    try:
        completed = subprocess.run(
            ["node", str(COMMAND_LINE_SCRIPT), "init", "--empty-repo", "--profile", "test",
             str(init_config_path)],
            env=node_environment(repo), capture_output=True, text=True, timeout=INIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DaemonError(f"ipfs init did not finish within {INIT_TIMEOUT_S} s") from error
    finally:
        init_config_path.unlink(missing_ok=True)
    if completed.returncode != 0:
        raise DaemonError(f"ipfs init failed: {completed.stderr.strip()[-2000:]}")


def set_api_port(repo: Path, port: int) -> None:
    """Write the API address into the repo config (0 lets the node pick a free port)."""
    config_path = repo / "config"
    config = json.loads(config_path.read_text())
    config["Addresses"]["API"] = api_multiaddress(port)
    config_path.write_text(json.dumps(config, indent=2))


def read_pid(repo: Path) -> int | None:
    try:
        return int((repo / PID_FILE_NAME).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead (it holds no lock and serves nothing).
    try:
        status_text = Path(f"/proc/{pid}/stat").read_text()
        return status_text.rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def read_api_url(repo: Path) -> str | None:
    """The HTTP URL of the running node's API, from the `api` file the daemon writes."""
    try:
        multiaddress = (repo / "api").read_text().strip()
    except FileNotFoundError:
        return None
    parts = multiaddress.split("/")
    # /ip4/127.0.0.1/tcp/PORT[/http]
    if len(parts) < 5 or parts[1] != "ip4" or parts[3] != "tcp":
        return None
    return f"http://{parts[2]}:{parts[4]}"


def api_answers(api_url: str, timeout_s: float = 1.0) -> bool:
    request = urllib.request.Request(f"{api_url}/api/v0/version", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def remove_stale_files(repo: Path) -> None:
    """Remove what a killed daemon leaves behind; only called when none is alive."""
    lock = repo / "repo.lock"
    if lock.is_dir():
        for child in lock.iterdir():
            child.unlink()
        lock.rmdir()
    else:
        lock.unlink(missing_ok=True)
    (repo / "api").unlink(missing_ok=True)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def start(repo: Path, api_port: int, timeout_s: float) -> dict[str, object]:
    """Start the daemon for `repo` (initialising it first) and wait until its API answers."""
    init_repo(repo)
    pid = read_pid(repo)
    if is_alive(pid):
        api_url = read_api_url(repo)
        if api_url and api_answers(api_url):
            return {"pid": pid, "api_url": api_url}
        raise DaemonError(f"daemon pid {pid} of {repo} is alive but its API does not answer")
    remove_stale_files(repo)
    set_api_port(repo, api_port)
    log = (repo / LOG_FILE_NAME).open("ab")
    try:
        process = subprocess.Popen(
            ["node", str(COMMAND_LINE_SCRIPT), "daemon", "--offline", "--enable-preload=false"],
            env=node_environment(repo), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    finally:
        log.close()
    (repo / PID_FILE_NAME).write_text(str(process.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DaemonError(f"daemon exited with {process.returncode}: {log_tail(repo)}")
        api_url = read_api_url(repo)
        if api_url and api_answers(api_url):
            return {"pid": process.pid, "api_url": api_url}
        time.sleep(POLL_INTERVAL_S)
    kill_group(process.pid)
    process.wait(timeout=10)
    raise DaemonError(f"daemon not ready within {timeout_s} s, killed: {log_tail(repo)}")


def stop(repo: Path, timeout_s: float) -> None:
    """Stop the daemon of `repo`: SIGTERM, then SIGKILL after `timeout_s`. Idempotent."""
    pid = read_pid(repo)
    if is_alive(pid):
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
        if is_alive(pid):
            kill_group(pid)
            while is_alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(POLL_INTERVAL_S)
    (repo / PID_FILE_NAME).unlink(missing_ok=True)
    if not is_alive(pid):
        remove_stale_files(repo)


def log_tail(repo: Path, size_bytes: int = 2000) -> str:
    try:
        return (repo / LOG_FILE_NAME).read_bytes()[-size_bytes:].decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--repo", type=Path, required=True, help="IPFS repository directory")
    parser.add_argument("--api-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    arguments = parser.parse_args(argv)
    repo = arguments.repo.resolve()
    try:
        if arguments.command == "start":
            print(json.dumps(start(repo, arguments.api_port, arguments.timeout_s)))
        elif arguments.command == "stop":
            stop(repo, arguments.timeout_s)
        else:
            pid = read_pid(repo)
            api_url = read_api_url(repo)
            running = is_alive(pid) and api_url is not None and api_answers(api_url)
            print(json.dumps({"pid": pid, "api_url": api_url, "running": running}))
            return 0 if running else 3
    except DaemonError as error:
        print(f"ipfs daemon: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
