"""Two private js-ipfs nodes that talk to each other over a 127.0.0.1 swarm, for replication.

`scripts/ipfs/daemon.py` runs nodes `--offline` (no libp2p at all), which is right for every
single-node test; replication needs libp2p, so these nodes run online but can still reach
nothing beyond loopback: empty Bootstrap, MDNS off, preload off, swarm listening on
127.0.0.1 only, and the only peer is the one `connect` dials. The repository setup and the
helpers (init, stale-lock removal, API polling) are the script's own.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from tests.services.fixtures import IPFS_DAEMON_SCRIPT, SERVICE_START_TIMEOUT_S

REQUEST_TIMEOUT_S = 10.0


def _daemon_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ipfs_daemon_script", IPFS_DAEMON_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_script = _daemon_script()


@dataclass
class SwarmIpfsDaemon:
    """An online js-ipfs node on loopback; `kill` and `start` keep its API port."""

    repo: Path
    api_port: int = 0
    api_url: str = ""
    process: subprocess.Popen[bytes] | None = None
    history: list[str] = field(default_factory=list)

    def start(self) -> None:
        _script.init_repo(self.repo)
        _script.remove_stale_files(self.repo)
        config_path = self.repo / "config"
        config = json.loads(config_path.read_text())
        config["Addresses"]["API"] = f"/ip4/127.0.0.1/tcp/{self.api_port}"
        config["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
        config_path.write_text(json.dumps(config, indent=2))
        with open(self.repo / "daemon.log", "ab") as log:
            self.process = subprocess.Popen(
                ["node", str(_script.COMMAND_LINE_SCRIPT), "daemon", "--enable-preload=false"],
                env=_script.node_environment(self.repo), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ipfs daemon exited: {_script.log_tail(self.repo)}")
            api_url = _script.read_api_url(self.repo)
            if api_url and _script.api_answers(api_url):
                self.api_url = api_url
                self.api_port = int(api_url.rsplit(":", 1)[1])
                self.history.append(f"started pid {self.process.pid} at {api_url}")
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"ipfs daemon not ready in {SERVICE_START_TIMEOUT_S} s")

    def kill(self) -> None:
        """SIGKILL the node's process group, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self.history.append(f"killed pid {self.process.pid}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def call(self, path: str) -> dict:
        request = urllib.request.Request(f"{self.api_url}/api/v0/{path}", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return json.loads(response.read().decode().splitlines()[-1])

    def swarm_address(self) -> str:
        addresses = self.call("swarm/addrs/local?id=true")["Strings"]
        return next(address for address in addresses if address.startswith("/ip4/127.0.0.1/"))

    def connect(self, other: SwarmIpfsDaemon) -> None:
        """Dial `other` (libp2p connections are two-way: one dial connects both)."""
        reply = self.call("swarm/connect?arg=" + other.swarm_address())
        assert "success" in " ".join(reply.get("Strings", [])), reply

    def pins(self) -> set[str]:
        request = urllib.request.Request(
            f"{self.api_url}/api/v0/pin/ls?type=recursive&cid-base=base32", method="POST",
            data=b"",
        )
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            pinned: set[str] = set()
            for line in response.read().decode().splitlines():
                document = json.loads(line)
                pinned.update(document.get("Keys", {}))
                if "Cid" in document:
                    pinned.add(document["Cid"])
            return pinned
