"""A devnet whose validators run on hosts of their own: one Linux network namespace each.

Layout (all of it made by `HostNetwork.create`, nothing in the root namespace):

    <prefix>-sw   the switch: bridges br0 and br1, and port `hN` for host N
    <prefix>-hN   host N: `eth0` (the other end of port hN) with address 10.77.0.(N+1)/24, and lo

Every validator listens for P2P on its host's address; its RPC and metrics listen on 127.0.0.1
inside its host, and the harness reaches them through management relays (listening sockets
made in the root namespace and inherited by the host's agent, `emrchain.devnet.netns_agent`),
so the test can read a host's height while its link is down. Peers dial each other's host
addresses directly, or through per-link delay proxies in the dialing host when one-way latency
is asked for (a round trip then takes 2 x latency_ms more).

Faults are the kernel's: `link_down` takes the host's switch port down (the host loses carrier,
as when its cable is pulled), `partition` moves hosts' ports to a second bridge (two switches
with no cable between them), `rate_limit` puts a `tbf` qdisc on both ends of a host's link.

Names start with `NAME_PREFIX`, the pid of the creating process and a random tag, so parallel
runs never collide; `sweep_stale` deletes the namespaces (and ends the processes in them) of
runs whose creating process is gone. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emrchain.config.address import Address, PeerAddress
from emrchain.config.node import load_node_config
from emrchain.devnet.harness import DEVNET_CONSENSUS, Devnet, DevnetError
from emrchain.devnet.netns_agent import READY_LINE, AgentSpec, LinkSpec

NAME_PREFIX = "emrnt"
SUBNET_PREFIX = "10.77.0."
SUBNET_BITS = 24
P2P_PORT = 26656
RPC_PORT = 26657
INSTRUMENTATION_PORT = 26660
PROXY_BASE_PORT = 27000
"""Host N reaches peer M's delay proxy at 127.0.0.1:(PROXY_BASE_PORT + M) inside host N."""
BRIDGES = ("br0", "br1")
COMMAND_TIMEOUT_S = 20.0
AGENT_READY_TIMEOUT_S = 30.0
AGENT_MAX_QUEUED_CHUNKS = 256
"""Per direction of a relayed connection: at most 256 x 64 KiB = 16 MiB held back."""

NETNS_P2P = {
    "ping_interval_ms": 1_000,
    "idle_timeout_ms": 3_000,
    "dial_timeout_ms": 2_000,
    "reconnect_initial_ms": 200,
    "reconnect_max_ms": 2_000,
}
"""P2P timing of the namespace devnet: a peer whose link died is noticed after idle_timeout_ms
(no RST arrives when a cable is pulled) and redialled at most reconnect_max_ms apart, so the
bound on healing (docs/spec/network-faults.md) is seconds rather than the defaults' ~minute."""


CATCH_UP_BOUND_S = 30.0
"""A host whose link comes back reaches the others' height within this (a redial, at most
reconnect_max_ms + dial_timeout_ms, then block sync of what it missed: tens of blocks in the
tests and the soak)."""


def heal_bound_ms(
    p2p: dict[str, int] = NETNS_P2P, consensus: dict[str, int | bool] = DEVNET_CONSENSUS
) -> int:
    """How soon after a partition heals every node commits a new block (docs/spec/
    network-faults.md §3): the links come back within one redial (a dial under way when the
    partition heals may first time out: dial_timeout_ms + reconnect_max_ms), then consensus
    needs at most two rounds, and a partition does not push rounds up (without 2f+1 prevotes
    of any kind no prevote timeout starts), so rounds 0 and 1:
    2 x (propose + prevote + precommit) + 3 x delta (the round-1 timeouts are delta longer)."""
    reconnect_ms = p2p["dial_timeout_ms"] + p2p["reconnect_max_ms"]
    round_ms = sum(
        int(consensus[key])
        for key in ("timeout_propose_ms", "timeout_prevote_ms", "timeout_precommit_ms")
    )
    return reconnect_ms + 2 * round_ms + 3 * int(consensus["timeout_delta_ms"])


class NetnsError(DevnetError):
    pass


def is_supported() -> tuple[bool, str]:
    """Whether this process may create network namespaces, and why not (it tries: root in a
    container without CAP_NET_ADMIN may not)."""
    if sys.platform != "linux":
        return False, "network namespaces are Linux only"
    if os.geteuid() != 0:
        return False, "network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return False, f"iproute2 is not installed ({', '.join(missing)} not found)"
    probe = f"{NAME_PREFIX}-{os.getpid()}-probe"
    try:
        _run("ip", "netns", "add", probe)
    except NetnsError as error:
        return False, f"cannot create a network namespace: {error}"
    _delete_namespace(probe)
    return True, ""


def _run(*command: str) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise NetnsError(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def list_namespaces() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_namespace(name: str) -> None:
    """End every process inside `name` (ours: started in it by a run of this harness), then
    delete it; the veth ends inside it go with it."""
    with contextlib.suppress(NetnsError):
        for pid_text in _run("ip", "netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_text), signal.SIGKILL)
    with contextlib.suppress(NetnsError):
        _run("ip", "netns", "delete", name)


def sweep_stale() -> list[str]:
    """Delete the namespaces left by runs whose creating process no longer exists (a test
    killed before its finaliser ran); returns their names."""
    stale = []
    for name in list_namespaces():
        parts = name.split("-")
        if len(parts) < 3 or parts[0] != NAME_PREFIX or not parts[1].isdigit():
            continue
        if not _pid_alive(int(parts[1])):
            _delete_namespace(name)
            stale.append(name)
    return stale


@dataclasses.dataclass
class HostNetwork:
    """`hosts` namespaces on one switch namespace; see the module docstring."""

    hosts: int
    prefix: str = dataclasses.field(
        default_factory=lambda: f"{NAME_PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
    )
    created: list[str] = dataclasses.field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def namespace(self, host: int) -> str:
        return f"{self.prefix}-h{host}"

    @staticmethod
    def address(host: int) -> str:
        return f"{SUBNET_PREFIX}{host + 1}"

    @staticmethod
    def port(host: int) -> str:
        """The switch's interface for `host`."""
        return f"h{host}"

    def create(self) -> None:
        try:
            self._add_namespace(self.switch)
            for bridge in BRIDGES:
                _run("ip", "-n", self.switch, "link", "add", bridge, "type", "bridge")
                _run("ip", "-n", self.switch, "link", "set", bridge, "up")
            for host in range(self.hosts):
                namespace = self.namespace(host)
                self._add_namespace(namespace)
                _run(
                    "ip", "-n", self.switch, "link", "add", self.port(host), "type", "veth",
                    "peer", "name", "eth0", "netns", namespace,
                )  # fmt: skip
                _run("ip", "-n", self.switch, "link", "set", self.port(host), "master", BRIDGES[0])
                _run("ip", "-n", self.switch, "link", "set", self.port(host), "up")
                _run(
                    "ip", "-n", namespace, "addr", "add",
                    f"{self.address(host)}/{SUBNET_BITS}", "dev", "eth0",
                )  # fmt: skip
                _run("ip", "-n", namespace, "link", "set", "eth0", "up")
                _run("ip", "-n", namespace, "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise

    def _add_namespace(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.created.append(name)

    def destroy(self) -> None:
        """Delete every namespace this network made (idempotent)."""
        while self.created:
            _delete_namespace(self.created.pop())

    # -------------------------------------------------------------------- faults

    def link_down(self, host: int) -> None:
        """Pull host's cable at the switch: its eth0 loses carrier, nothing reaches it."""
        _run("ip", "-n", self.switch, "link", "set", self.port(host), "down")

    def link_up(self, host: int) -> None:
        _run("ip", "-n", self.switch, "link", "set", self.port(host), "up")

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Hosts of groups[0] stay on br0, those of groups[1] move to br1: two switches."""
        if len(groups) != len(BRIDGES):
            raise NetnsError(f"a partition has {len(BRIDGES)} sides, got {len(groups)}")
        for bridge, group in zip(BRIDGES, groups, strict=True):
            for host in group:
                _run("ip", "-n", self.switch, "link", "set", self.port(host), "master", bridge)

    def heal(self) -> None:
        for host in range(self.hosts):
            _run("ip", "-n", self.switch, "link", "set", self.port(host), "master", BRIDGES[0])

    def rate_limit(self, host: int, rate_kbit: int, burst_bytes: int, latency_ms: int) -> None:
        """A token bucket on both directions of host's link (tbf shapes what leaves an
        interface: eth0 for what the host sends, the switch port for what it receives)."""
        shape = [
            "tbf", "rate", f"{rate_kbit}kbit", "burst", str(burst_bytes),
            "latency", f"{latency_ms}ms",
        ]  # fmt: skip
        _run("tc", "-n", self.namespace(host), "qdisc", "replace", "dev", "eth0", "root", *shape)
        _run("tc", "-n", self.switch, "qdisc", "replace", "dev", self.port(host), "root", *shape)

    def clear_rate_limit(self, host: int) -> None:
        for namespace, device in ((self.namespace(host), "eth0"), (self.switch, self.port(host))):
            with contextlib.suppress(NetnsError):  # no qdisc of ours there: nothing to clear
                _run("tc", "-n", namespace, "qdisc", "del", "dev", device, "root")

    def qdisc(self, host: int) -> str:
        return _run("tc", "-n", self.namespace(host), "qdisc", "show", "dev", "eth0")


def _listen_on_loopback() -> socket.socket:
    """A listening socket on 127.0.0.1 of this (root) namespace, for an agent to inherit."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    return listener


class NetnsDevnet(Devnet):
    """`Devnet` (homes, processes, RPC helpers) with each validator on its own host.

    `latency_ms` is the one-way delay of every peer link (0: no proxies, direct dials). The
    network is created here and destroyed by `close()` (also on `__exit__`)."""

    def __init__(
        self,
        root: Path,
        validators: int = 4,
        *,
        latency_ms: int = 0,
        consensus: dict[str, int | bool] | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        super().__init__(root, validators, consensus=consensus, settings=settings)
        self.latency_ms = latency_ms
        self.network = HostNetwork(len(self.homes))
        self._agents: dict[int, subprocess.Popen[str]] = {}
        self._listeners: dict[tuple[int, str], socket.socket] = {}
        try:
            self.network.create()
            self._place_on_hosts()
        except BaseException:
            self.close()
            raise

    def _node_ids(self) -> list[bytes]:
        """Every node's id, read from the peers the testnet homes list for each other."""
        by_address: dict[Address, bytes] = {}
        for home in self.homes:
            for peer in load_node_config(home).p2p.persistent_peers:
                by_address[peer.address] = peer.node_id
        return [by_address[load_node_config(home).p2p.listen_address] for home in self.homes]

    def _place_on_hosts(self) -> None:
        node_ids = self._node_ids()
        for index in range(len(self.homes)):
            peers = tuple(
                PeerAddress(node_ids[peer], self._peer_address(peer))
                for peer in range(len(self.homes))
                if peer != index
            )
            config = load_node_config(self.homes[index])
            self.configure(
                index,
                {
                    "p2p": {
                        **NETNS_P2P,
                        "listen_address": Address(self.network.address(index), P2P_PORT),
                        "persistent_peers": peers,
                    },
                    "rpc": {"listen_address": Address("127.0.0.1", RPC_PORT)},
                    "instrumentation": {
                        "listen_address": Address("127.0.0.1", INSTRUMENTATION_PORT),
                        "enabled": config.instrumentation.enabled,
                    },
                },
            )
            for service in ("rpc", "instrumentation"):
                self._listeners[(index, service)] = _listen_on_loopback()
        self.rpc_urls = [self._management_url(index, "rpc") for index in range(len(self.homes))]

    def _peer_address(self, peer: int) -> Address:
        if self.latency_ms == 0:
            return Address(self.network.address(peer), P2P_PORT)
        return Address("127.0.0.1", PROXY_BASE_PORT + peer)

    def _management_url(self, index: int, service: str) -> str:
        port = self._listeners[(index, service)].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def configure(self, index: int, settings: dict[str, dict[str, Any]]) -> None:
        super().configure(index, settings)
        # The URL stays the management relay's (the base class sets it before ours exist).
        if (index, "rpc") in getattr(self, "_listeners", {}):
            self.rpc_urls[index] = self._management_url(index, "rpc")

    def instrumentation_url(self, index: int) -> str:
        return self._management_url(index, "instrumentation")

    # ----------------------------------------------------------------- processes

    def _agent_links(self, index: int) -> list[LinkSpec]:
        links = [
            LinkSpec("127.0.0.1", RPC_PORT, fd=self._listeners[(index, "rpc")].fileno()),
            LinkSpec(
                "127.0.0.1",
                INSTRUMENTATION_PORT,
                fd=self._listeners[(index, "instrumentation")].fileno(),
            ),
        ]
        if self.latency_ms:
            links += [
                LinkSpec(
                    self.network.address(peer),
                    P2P_PORT,
                    delay_ms=self.latency_ms,
                    listen_port=PROXY_BASE_PORT + peer,
                )
                for peer in range(len(self.homes))
                if peer != index
            ]
        return links

    def _in_host(self, index: int, module: str, *arguments: str) -> list[str]:
        """The command line running Python module `module` inside host `index`."""
        namespace = self.network.namespace(index)
        return ["ip", "netns", "exec", namespace, sys.executable, "-m", module, *arguments]

    def _start_agent(self, index: int) -> None:
        agent = self._agents.get(index)
        if agent is not None and agent.poll() is None:
            return
        links = self._agent_links(index)
        spec = AgentSpec(links, AGENT_MAX_QUEUED_CHUNKS, NETNS_P2P["dial_timeout_ms"])
        log = open(self.homes[index] / "agent.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            agent = subprocess.Popen(
                self._in_host(index, "emrchain.devnet.netns_agent", spec.to_json()),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                pass_fds=[link.fd for link in links if link.fd is not None],
                start_new_session=True,
            )
        finally:
            log.close()
        self._agents[index] = agent
        assert agent.stdout is not None
        # The agent prints one line once it listens; a failed start closes stdout instead.
        line = _read_line(agent, AGENT_READY_TIMEOUT_S)
        if line.strip() != READY_LINE:
            raise NetnsError(
                f"host {index}'s agent did not start (see {self.homes[index] / 'agent.log'})"
            )

    def start(self, index: int) -> None:
        if self.is_running(index):
            raise DevnetError(f"node{index} is already running")
        self._start_agent(index)
        log = open(self.log_path(index), "ab")  # noqa: SIM115 - closed in _reap
        self._log_files[index] = log
        self.processes[index] = subprocess.Popen(
            self._in_host(index, "emrchain.cli", "start", "--home", str(self.homes[index])),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )

    def close(self) -> None:
        """Stop the nodes and agents, delete the namespaces, close the relays' sockets."""
        try:
            self.stop_all()
        finally:
            for agent in self._agents.values():
                if agent.poll() is None:
                    agent.send_signal(signal.SIGTERM)
                    try:
                        agent.wait(5)
                    except subprocess.TimeoutExpired:
                        agent.kill()
                        agent.wait()
                if agent.stdout is not None:
                    agent.stdout.close()
            self._agents.clear()
            self.network.destroy()
            for listener in self._listeners.values():
                listener.close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --------------------------------------------------------------- observation

    def heights(self, nodes: Sequence[int] | None = None) -> list[int]:
        return [self.height(index) for index in (nodes or range(len(self.homes)))]

    def wait_for_heights(
        self, targets: dict[int, int], timeout_s: float, what: str, poll_s: float = 0.1
    ) -> float:
        """Wait until each node reaches its target height; returns the seconds it took."""
        started = time.monotonic()
        self.wait_for(
            lambda: all(self.height(index) >= height for index, height in targets.items()),
            timeout_s,
            what,
            poll_s=poll_s,
        )
        return time.monotonic() - started


def check_no_fork(network: Devnet, from_height: int = 1) -> int:
    """At every height from `from_height` that any two nodes hold, they hold the same header
    (so the same block hash); returns the highest height checked. Raises NetnsError naming the
    first fork."""
    nodes = range(len(network.homes))
    heights = [network.height(index) for index in nodes]
    for height in range(from_height, max(heights) + 1):
        headers = {
            json.dumps(network.rpc(index, f"/blocks/{height}")["header"], sort_keys=True)
            for index in nodes
            if heights[index] >= height
        }
        if len(headers) != 1:
            raise NetnsError(f"fork at height {height}: {len(headers)} different headers")
    return max(heights)


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The first stdout line of `process`, or "" if it exits or stays silent for timeout_s."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            return ""
    return process.stdout.readline()


__all__ = [
    "CATCH_UP_BOUND_S",
    "NETNS_P2P",
    "HostNetwork",
    "NetnsDevnet",
    "NetnsError",
    "check_no_fork",
    "heal_bound_ms",
    "is_supported",
    "sweep_stale",
]
