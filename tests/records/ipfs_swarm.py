"""Two private js-ipfs nodes that talk to each other over a 127.0.0.1 swarm, for replication.

`scripts/ipfs/daemon.py` runs nodes `--offline` (no libp2p at all), which is right for every
single-node test; replication needs libp2p, so these nodes run online but can still reach
nothing beyond loopback: empty Bootstrap, MDNS off, preload off, swarm listening on
127.0.0.1 only, and the only peer is the one `connect` dials. The repository setup and the
helpers (init, stale-lock removal, API polling) are the script's own.

A swarm connection is not yet a bitswap partnership: js-ipfs's bitswap starts sending wants to a
peer only once libp2p's identify exchange has stored that peer's protocols, so `connect` waits
for identify on both sides. (`bitswap/stat` is no readiness signal here: js-ipfs lists as Peers
only the peers it has exchanged bitswap messages with, so it is empty until the first want.)
Identify failed (logged only under DEBUG) until `scripts/ipfs/package.json` pinned
`@libp2p/peer-record` and `@libp2p/utils` to releases on libp2p 0.42's multiaddr major (11).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from tests.services.fixtures import IPFS_DAEMON_SCRIPT, SERVICE_START_TIMEOUT_S

REQUEST_TIMEOUT_S = 10.0
# Identify takes ~0.1 s on an idle machine; the bound is for a loaded CI box.
IDENTIFY_TIMEOUT_S = 30.0
BITSWAP_PROTOCOL_PREFIX = "/ipfs/bitswap/"


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

    def peer_id(self) -> str:
        return self.call("id")["ID"]

    def knows_bitswap_peer(self, peer_id: str) -> bool:
        """Whether identify with `peer_id` completed here: this node's peer store lists the
        peer's bitswap protocols, which is what makes its bitswap treat the peer as a partner."""
        try:
            protocols = self.call(f"id?arg={peer_id}").get("Protocols") or []
        except urllib.error.HTTPError:  # js-ipfs answers 500 for a peer it has never seen
            return False
        return any(protocol.startswith(BITSWAP_PROTOCOL_PREFIX) for protocol in protocols)

    def connect(self, other: SwarmIpfsDaemon) -> None:
        """Dial `other` (libp2p connections are two-way: one dial connects both), then wait
        until identify has completed in both directions, so each bitswap knows the other."""
        reply = self.call("swarm/connect?arg=" + other.swarm_address())
        assert "success" in " ".join(reply.get("Strings", [])), reply
        mine, theirs = self.peer_id(), other.peer_id()
        deadline = time.monotonic() + IDENTIFY_TIMEOUT_S
        while not (self.knows_bitswap_peer(theirs) and other.knows_bitswap_peer(mine)):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"identify between {mine} and {theirs} did not complete within "
                    f"{IDENTIFY_TIMEOUT_S} s (no bitswap protocols in `id?arg=`): see "
                    f"daemon.log in {self.repo} and {other.repo} with DEBUG=libp2p:identify*"
                )
            time.sleep(0.05)
        self.history.append(f"connected to {theirs}")

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
