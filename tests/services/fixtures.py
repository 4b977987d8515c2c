"""Private instances of the external services, for tests that must talk to the real thing.

Each fixture starts its own service in a temporary directory, on a unix socket or a free port
of 127.0.0.1, and stops it in teardown. When a service's software is missing, the test is
skipped locally with the reason, and FAILS under `CI=true` (CI installs everything through
`scripts/setup --with-services`, so a missing service there is a broken setup, not a reason to
pass quietly).

Exposed to every test through `pytest_plugins` in tests/conftest.py:
- `redis_server` (per test): a `RedisServer` on a unix socket; `.kill()`, `.start()` restart it.
- `softhsm_token` (per session): a freshly initialised SoftHSM2 token; `SOFTHSM2_CONF` and the
  PIN environment variable are set for the session, before PKCS#11 is loaded.
- `hsm_worker` (per module): an `HsmWorker` logged in to that token.
- `ipfs_daemon` (per session) and `private_ipfs_daemon` (per test, for tests that kill it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.ci import running_in_ci

REPOSITORY = Path(__file__).resolve().parents[2]
IPFS_DAEMON_SCRIPT = REPOSITORY / "scripts" / "ipfs" / "daemon.py"
SOFTHSM_MODULE_CANDIDATES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
)
SERVICE_START_TIMEOUT_S = 60.0
TEST_DEADLINE_S = 60.0
HSM_PIN_ENVIRONMENT_VARIABLE = "EMRCHAIN_TEST_HSM_PIN"

Result = TypeVar("Result")


def run(coroutine: Coroutine[Any, Any, Result], deadline_s: float = TEST_DEADLINE_S) -> Result:
    """Run an async test body with a hard deadline (pytest-asyncio is not a dependency)."""

    async def bounded() -> Result:
        async with asyncio.timeout(deadline_s):
            return await coroutine

    return asyncio.run(bounded())


def require_service(name: str) -> None:
    """Skip (locally) or fail (CI=true) the current test when service `name` is not installed.

    Names: "redis", "softhsm", "ipfs", "prometheus" (with promtool), "alertmanager" (with
    amtool), "chromium".
    """
    missing = _missing_reason(name)
    if missing is None:
        return
    message = f"{name} is not available: {missing}; install it with scripts/setup --with-services"
    if running_in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def _missing_reason(name: str) -> str | None:
    if name == "redis":
        return None if shutil.which("redis-server") else "no redis-server binary"
    if name == "softhsm":
        if not shutil.which("softhsm2-util"):
            return "no softhsm2-util binary"
        return None if softhsm_module_path() else "no libsofthsm2.so module"
    if name == "ipfs":
        binary = kubo_binary()
        return None if binary.exists() else f"Kubo missing at {binary}"
    if name == "chromium":
        return None if shutil.which("chromium") else "no chromium binary"
    if name in MONITORING_BINARIES:
        missing = [binary for binary in MONITORING_BINARIES[name] if not shutil.which(binary)]
        return f"no {', '.join(missing)} binary" if missing else None
    raise ValueError(f"unknown service {name!r}")


MONITORING_BINARIES = {
    "prometheus": ("prometheus", "promtool"),
    "alertmanager": ("prometheus-alertmanager", "amtool"),
}
"""Debian's `prometheus` and `prometheus-alertmanager` packages (scripts/setup installs them)."""


def kubo_binary() -> Path:
    """Where scripts/setup caches the Kubo binary (the script's own answer)."""
    completed = subprocess.run(
        [sys.executable, str(IPFS_DAEMON_SCRIPT), "binary"], capture_output=True, text=True,
        timeout=30, check=True,
    )
    return Path(completed.stdout.strip())


def softhsm_module_path() -> Path | None:
    return next((path for path in SOFTHSM_MODULE_CANDIDATES if path.exists()), None)


def _wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout_s} s")
        time.sleep(0.02)


# -- Redis -----------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A private redis-server on a unix socket (TCP disabled), no persistence; `arguments` are
    added to its command line (e.g. `--requirepass`, a `--tls-port`)."""

    directory: Path
    process: subprocess.Popen[bytes] | None = None
    arguments: tuple[str, ...] = ()

    @property
    def unix_socket(self) -> str:
        return str(self.directory / "redis.sock")

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        Path(self.unix_socket).unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", "0", "--unixsocket", self.unix_socket,
                "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
                *self.arguments,
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_until(self._answers_ping, SERVICE_START_TIMEOUT_S, "redis-server")
        except TimeoutError:
            self.stop()
            raise

    def _answers_ping(self) -> bool:
        import socket

        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as connection:
                connection.settimeout(1.0)
                connection.connect(self.unix_socket)
                connection.sendall(b"PING\r\n")
                # NOAUTH: up, and asking for the password it was started with.
                return connection.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def started_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running RedisServer until the generator closes (for fixtures of any scope)."""
    require_service("redis")
    # A short directory: unix socket paths are limited to ~107 bytes.
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from started_redis(tmp_path_factory)


# -- SoftHSM2 --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftHsmToken:
    """A SoftHSM2 token initialised in a private directory."""

    configuration_file: Path
    module_path: Path
    token_label: str
    pin_environment_variable: str

    @property
    def config(self) -> Any:
        from emrchain.hsm import HsmConfig, PinSource

        return HsmConfig(
            module_path=self.module_path,
            token_label=self.token_label,
            pin_source=PinSource(environment_variable=self.pin_environment_variable),
        )


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    require_service("softhsm")
    module_path = softhsm_module_path()
    assert module_path is not None
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    configuration_file = directory / "softhsm2.conf"
    configuration_file.write_text(
        f"directories.tokendir = {directory / 'tokens'}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    pin = os.urandom(8).hex()
    security_officer_pin = os.urandom(8).hex()
    token_label = "emrchain-test"
    saved = {name: os.environ.get(name) for name in ("SOFTHSM2_CONF", HSM_PIN_ENVIRONMENT_VARIABLE)}
    # SoftHSM reads SOFTHSM2_CONF when the library initialises: set it before any PKCS#11 use.
    os.environ["SOFTHSM2_CONF"] = str(configuration_file)
    os.environ[HSM_PIN_ENVIRONMENT_VARIABLE] = pin
    try:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", token_label,
             "--so-pin", security_officer_pin, "--pin", pin],
            check=True, capture_output=True, timeout=SERVICE_START_TIMEOUT_S,
        )
        yield SoftHsmToken(configuration_file, module_path, token_label,
                           HSM_PIN_ENVIRONMENT_VARIABLE)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def hsm_worker(softhsm_token: SoftHsmToken) -> Iterator[Any]:
    from emrchain.hsm import HsmWorker

    worker = HsmWorker(softhsm_token.config)
    worker.start()
    try:
        yield worker
    finally:
        worker.close()


# -- IPFS ------------------------------------------------------------------------------------


@dataclass
class IpfsDaemon:
    """A private offline Kubo node, managed through scripts/ipfs/daemon.py."""

    repo: Path
    api_port: int = 0
    api_url: str = ""
    pid: int | None = None
    history: list[str] = field(default_factory=list)

    def _helper(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(IPFS_DAEMON_SCRIPT), *arguments, "--repo", str(self.repo)],
            capture_output=True, text=True, timeout=SERVICE_START_TIMEOUT_S + 15, check=False,
        )

    def start(self) -> None:
        """Start (or restart, on the same API port) and wait until the API answers."""
        completed = self._helper(
            "start", "--api-port", str(self.api_port), "--timeout-s", str(SERVICE_START_TIMEOUT_S)
        )
        if completed.returncode != 0:
            raise RuntimeError(f"ipfs daemon did not start: {completed.stderr.strip()}")
        started = json.loads(completed.stdout)
        self.pid = int(started["pid"])
        self.api_url = str(started["api_url"])
        # Keep the port: a restarted node must answer where the store under test points.
        self.api_port = int(self.api_url.rsplit(":", 1)[1])
        self.history.append(f"started pid {self.pid} at {self.api_url}")

    def kill(self) -> None:
        """SIGKILL the daemon's process group, as a crash would (leaves a stale repo.lock)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.history.append(f"killed pid {self.pid}")

    def stop(self) -> None:
        completed = self._helper("stop", "--timeout-s", "10")
        if completed.returncode != 0:
            raise RuntimeError(f"ipfs daemon did not stop: {completed.stderr.strip()}")


def _started_ipfs_daemon(repo: Path) -> Iterator[IpfsDaemon]:
    require_service("ipfs")
    daemon = IpfsDaemon(repo)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def ipfs_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsDaemon]:
    yield from _started_ipfs_daemon(tmp_path_factory.mktemp("ipfs") / "repo")


@pytest.fixture
def private_ipfs_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsDaemon]:
    yield from _started_ipfs_daemon(tmp_path_factory.mktemp("ipfs-private") / "repo")
