#!/usr/bin/env python3
"""Build, start and stop a private Kubo (go-ipfs) node whose HTTP RPC API listens on 127.0.0.1.

Used by the test fixtures, the benchmarks and by hand; standard library only, so it runs before
the project's virtualenv exists.

    daemon.py install                                           # build Kubo once, cached
    daemon.py binary                                            # print the cached binary's path
    daemon.py start --repo DIR [--api-port N] [--timeout-s S]   # prints {"pid":..,"api_url":..}
    daemon.py stop --repo DIR [--timeout-s S]
    daemon.py status --repo DIR

Kubo is built from its Go module (`KUBO_MODULE` at `KUBO_VERSION`) into
`$EMRCHAIN_CACHE_DIR/kubo/<version>/bin/ipfs` (default `~/.cache/emrchain`); `install` is a
no-op when that binary answers with the right version and build recipe. The documented route
`go install github.com/ipfs/kubo/cmd/ipfs@v0.43.1` fails: Kubo's go.mod replaces go-libp2p by a
fork (`github.com/lidel/go-libp2p`) that the Go module proxy does not serve (403), and `go
install pkg@version` refuses modules with replace directives anyway. The fork exists only to
require newer quic-go/webtransport-go (go.mod's own comment says to drop it once a go-libp2p
release requires quic-go >= v0.62.0 and webtransport-go >= v0.13.0); go-libp2p v0.50.0 is that
release, so `install` builds a copy of the module with the replace removed and go-libp2p at
v0.50.0 (`GO_MODULE_OVERRIDES`).

Every node this script starts reaches nothing beyond this machine: the `test` profile (API and
swarm on 127.0.0.1, empty Bootstrap, MDNS off, AutoConf and AutoTLS off, no DNS resolvers or
delegated routers), plus no gateway, no routing (`Routing.Type = "none"`: no DHT, no
providing), NAT port mapping, relays and AutoNAT off, and telemetry off (config and
`IPFS_TELEMETRY=off`). `start` runs the daemon `--offline` (no libp2p at all); an online node
for replication tests (tests/records/ipfs_swarm.py) listens on a 127.0.0.1 swarm port and
knows only the peers it is told to dial.

Facts this script is built around: a daemon that fails to start is detected by polling its API
(and killed at the deadline); after SIGKILL the repo's lock files are removed whenever no
daemon of this repo is alive, so a restart never waits on them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

KUBO_MODULE = "github.com/ipfs/kubo"
KUBO_VERSION = "v0.43.1"
# (module, version) pairs `install` requires instead of Kubo's go.mod replace directives; see
# the module docstring. Part of the build recipe: changing it rebuilds the cached binary.
GO_MODULE_OVERRIDES = (("github.com/libp2p/go-libp2p", "v0.50.0"),)
CACHE_DIRECTORY_VARIABLE = "EMRCHAIN_CACHE_DIR"
# Where go.dev's tarball installs Go, for a root shell whose PATH lacks it.
GO_FALLBACK_PATHS = ("/usr/local/go/bin/go",)
PID_FILE_NAME = "daemon.pid"
LOG_FILE_NAME = "daemon.log"
RECIPE_FILE_NAME = "recipe.json"
INIT_TIMEOUT_S = 60.0
BUILD_TIMEOUT_S = 3600.0
POLL_INTERVAL_S = 0.1


class DaemonError(RuntimeError):
    """The node could not be built, initialised, started or stopped."""


# -- building Kubo ---------------------------------------------------------------------------


def cache_directory() -> Path:
    configured = os.environ.get(CACHE_DIRECTORY_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "emrchain"


def kubo_directory() -> Path:
    return cache_directory() / "kubo" / KUBO_VERSION


def kubo_binary() -> Path:
    return kubo_directory() / "bin" / "ipfs"


def build_recipe() -> dict[str, object]:
    return {
        "module": KUBO_MODULE,
        "version": KUBO_VERSION,
        "overrides": [list(pair) for pair in GO_MODULE_OVERRIDES],
    }


def installed_version(binary: Path) -> str | None:
    """`ipfs version --number` of `binary` when it was built by the current recipe."""
    try:
        recorded = json.loads((binary.parent / RECIPE_FILE_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if recorded != build_recipe() or not os.access(binary, os.X_OK):
        return None
    try:
        completed = subprocess.run(
            [str(binary), "version", "--number"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=node_environment(None),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    number = completed.stdout.strip()
    return number if completed.returncode == 0 and f"v{number}" == KUBO_VERSION else None


def patched_go_mod(text: str) -> str:
    """Kubo's go.mod with its replace directives dropped and `GO_MODULE_OVERRIDES` required."""
    replace_pattern = re.compile(r"^replace [^\n]*\n", re.MULTILINE)
    if not replace_pattern.search(text):
        raise DaemonError(
            f"{KUBO_MODULE}@{KUBO_VERSION} has no replace directive any more: revisit "
            "GO_MODULE_OVERRIDES in scripts/ipfs/daemon.py"
        )
    text = replace_pattern.sub("", text)
    for module, version in GO_MODULE_OVERRIDES:
        requirement = re.compile(rf"^(\t{re.escape(module)}) v\S+$", re.MULTILINE)
        text, count = requirement.subn(rf"\1 {version}", text, count=1)
        if count != 1:
            raise DaemonError(f"go.mod of {KUBO_MODULE} does not require {module}")
    return text


def go_command() -> str:
    found = shutil.which("go") or next(
        (path for path in GO_FALLBACK_PATHS if os.access(path, os.X_OK)), None
    )
    if found is None:
        raise DaemonError(
            "no Go toolchain (`go`) on PATH or in /usr/local/go/bin: Kubo is built from its Go "
            "module; install Go >= 1.21 (it fetches the toolchain Kubo's go.mod asks for)"
        )
    return found


def run_go(go: str, arguments: list[str], directory: Path) -> str:
    environment = dict(os.environ)
    # -mod=mod lets the build record the overrides' checksums in the copy's go.sum.
    environment["GOFLAGS"] = "-mod=mod"
    completed = subprocess.run(
        [go, *arguments],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
        env=environment,
    )
    if completed.returncode != 0:
        raise DaemonError(
            f"`go {' '.join(arguments)}` failed ({completed.returncode}):\n"
            f"{completed.stderr.strip()[-4000:]}"
        )
    return completed.stdout


def progress(message: str) -> None:
    print(f"setup: {message}", file=sys.stderr, flush=True)


def install() -> Path:
    """Build Kubo into the cache unless the binary of this recipe is already there."""
    binary = kubo_binary()
    if installed_version(binary) is not None:
        progress(f"Kubo {KUBO_VERSION} cached at {binary}")
        return binary
    go = go_command()
    progress(
        f"building Kubo {KUBO_VERSION} from its Go module into {binary} (once; ~6 min on 2 "
        "cores with empty Go caches)"
    )
    started = time.monotonic()
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=kubo_directory(), prefix="build-") as scratch:
        downloaded = json.loads(
            run_go(go, ["mod", "download", "-json", f"{KUBO_MODULE}@{KUBO_VERSION}"], Path(scratch))
        )
        source = Path(scratch) / "kubo"
        # The module cache is read-only: build a writable copy with the patched go.mod.
        shutil.copytree(downloaded["Dir"], source)
        for path in (source, *source.rglob("*")):
            path.chmod(path.stat().st_mode | 0o200)
        (source / "go.mod").write_text(patched_go_mod((source / "go.mod").read_text()))
        built = Path(scratch) / "ipfs"
        run_go(go, ["build", "-trimpath", "-o", str(built), "./cmd/ipfs"], source)
        (binary.parent / RECIPE_FILE_NAME).unlink(missing_ok=True)
        os.replace(built, binary)
    (binary.parent / RECIPE_FILE_NAME).write_text(json.dumps(build_recipe()))
    if installed_version(binary) is None:
        raise DaemonError(f"the Kubo built at {binary} does not report version {KUBO_VERSION}")
    progress(f"Kubo {KUBO_VERSION} built in {time.monotonic() - started:.0f} s")
    return binary


# -- repositories and daemons ----------------------------------------------------------------


def node_environment(repo: Path | None) -> dict[str, str]:
    environment = dict(os.environ)
    if repo is not None:
        environment["IPFS_PATH"] = str(repo)
    environment["IPFS_TELEMETRY"] = "off"
    return environment


def api_multiaddress(port: int) -> str:
    return f"/ip4/127.0.0.1/tcp/{port}"


def section(config: dict, *names: str) -> dict:
    """The nested object `config[names[0]][names[1]]...`, created where missing or null."""
    for name in names:
        if not isinstance(config.get(name), dict):
            config[name] = {}
        config = config[name]
    return config


def loopback_only(config: dict) -> dict:
    """Settings on top of Kubo's `test` profile that keep a node's traffic on this machine."""
    section(config, "Addresses").update(
        {
            "API": api_multiaddress(0),
            "Gateway": [],
            "Swarm": [],
            "Announce": [],
            "AppendAnnounce": [],
            "NoAnnounce": [],
        }
    )
    config["Bootstrap"] = []
    section(config, "Discovery", "MDNS")["Enabled"] = False
    section(config, "Routing")["Type"] = "none"
    section(config, "Swarm")["DisableNatPortMap"] = True
    section(config, "Swarm", "RelayClient")["Enabled"] = False
    section(config, "Swarm", "RelayService")["Enabled"] = False
    section(config, "Swarm", "Transports")["Network"] = {
        "QUIC": False,
        "WebTransport": False,
        "WebRTCDirect": False,
        "Websocket": False,
        "Relay": False,
    }
    section(config, "AutoNAT")["ServiceMode"] = "disabled"
    section(config, "Plugins", "Plugins", "telemetry", "Config")["Mode"] = "off"
    return config


def init_repo(repo: Path) -> None:
    """Create an empty, loopback-only repository in `repo` (no-op if it exists)."""
    if (repo / "config").exists():
        return
    binary = kubo_binary()
    if not binary.exists():
        raise DaemonError(f"Kubo is not built at {binary}: run scripts/setup --with-services")
    repo.mkdir(parents=True, exist_ok=True)
    try:
        completed = subprocess.run(
            [str(binary), "init", "--empty-repo", "--profile", "test"],
            env=node_environment(repo),
            capture_output=True,
            text=True,
            timeout=INIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DaemonError(f"ipfs init did not finish within {INIT_TIMEOUT_S} s") from error
    if completed.returncode != 0:
        raise DaemonError(f"ipfs init failed: {completed.stderr.strip()[-2000:]}")
    config_path = repo / "config"
    config = loopback_only(json.loads(config_path.read_text()))
    config_path.write_text(json.dumps(config, indent=2))


def daemon_command(*, online: bool) -> list[str]:
    """The daemon's command line; offline unless `online` (then only dialled peers exist)."""
    command = [str(kubo_binary()), "daemon", "--migrate=false"]
    return command if online else [*command, "--offline"]


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
    """Remove what a killed daemon leaves behind; only called when none is alive (a stale
    `api` file would point clients at a dead port)."""
    (repo / "repo.lock").unlink(missing_ok=True)
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
            daemon_command(online=False),
            env=node_environment(repo),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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
    parser.add_argument("command", choices=["install", "binary", "start", "stop", "status"])
    parser.add_argument("--repo", type=Path, help="IPFS repository directory")
    parser.add_argument("--api-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    arguments = parser.parse_args(argv)
    if arguments.command == "binary":
        print(kubo_binary())
        return 0
    if arguments.command == "install":
        try:
            print(install())
        except DaemonError as error:
            print(f"ipfs install: {error}", file=sys.stderr)
            return 1
        return 0
    if arguments.repo is None:
        parser.error(f"{arguments.command} needs --repo")
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
