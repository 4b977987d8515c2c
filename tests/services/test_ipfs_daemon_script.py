"""scripts/ipfs/daemon.py: the Kubo build recipe, the cache, and the loopback-only node."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.records.ipfs_swarm import SwarmIpfsDaemon
from tests.records.ipfs_swarm import _script as daemon_script
from tests.services.fixtures import IpfsDaemon, require_service

GO_MOD = """module github.com/ipfs/kubo

require (
\tgithub.com/libp2p/go-libp2p v0.49.0
\tgithub.com/quic-go/quic-go v0.62.0 // indirect
)

replace github.com/libp2p/go-libp2p => github.com/lidel/go-libp2p v0.0.0-20260914191659-9c4ee60cf924
"""


def test_the_go_mod_patch_drops_the_fork_and_requires_the_release() -> None:
    patched = daemon_script.patched_go_mod(GO_MOD)
    assert "replace" not in patched and "lidel" not in patched
    assert "\tgithub.com/libp2p/go-libp2p v0.50.0\n" in patched
    assert "\tgithub.com/quic-go/quic-go v0.62.0 // indirect\n" in patched


def test_a_go_mod_without_the_replace_directive_asks_for_the_recipe_to_be_revisited() -> None:
    without_replace = GO_MOD.split("replace")[0]
    with pytest.raises(daemon_script.DaemonError, match="revisit GO_MODULE_OVERRIDES"):
        daemon_script.patched_go_mod(without_replace)
    without_requirement = GO_MOD.replace("\tgithub.com/libp2p/go-libp2p v0.49.0\n", "")
    with pytest.raises(daemon_script.DaemonError, match="does not require"):
        daemon_script.patched_go_mod(without_requirement)


def test_install_reuses_the_cached_binary_without_a_go_toolchain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_service("ipfs")
    # No `go` anywhere: a rebuild would fail, so returning proves the cache was used.
    monkeypatch.setattr(daemon_script.shutil, "which", lambda name: None)
    monkeypatch.setattr(daemon_script, "GO_FALLBACK_PATHS", ())
    assert daemon_script.install() == daemon_script.kubo_binary()
    with pytest.raises(daemon_script.DaemonError, match="no Go toolchain"):
        daemon_script.go_command()


def test_a_binary_of_another_recipe_is_not_reused(tmp_path: Path) -> None:
    require_service("ipfs")
    binary = tmp_path / "bin" / "ipfs"
    binary.parent.mkdir()
    binary.symlink_to(daemon_script.kubo_binary())
    assert daemon_script.installed_version(binary) is None  # no recipe file
    recipe = daemon_script.build_recipe()
    (binary.parent / "recipe.json").write_text(json.dumps(recipe))
    assert daemon_script.installed_version(binary) == daemon_script.KUBO_VERSION.removeprefix("v")
    (binary.parent / "recipe.json").write_text(json.dumps({**recipe, "overrides": []}))
    assert daemon_script.installed_version(binary) is None


def api(url: str, path: str) -> dict:
    request = urllib.request.Request(f"{url}/api/v0/{path}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read().decode().splitlines()[-1])


def test_the_offline_node_is_kubo_and_reaches_nothing(ipfs_daemon: IpfsDaemon) -> None:
    assert api(ipfs_daemon.api_url, "version")["Version"] == "0.43.1"
    assert ipfs_daemon.api_url.startswith("http://127.0.0.1:")
    config = json.loads((ipfs_daemon.repo / "config").read_text())
    assert config["Bootstrap"] == [] and config["Addresses"]["Gateway"] == []
    assert config["Addresses"]["Swarm"] == [] and config["Routing"]["Type"] == "none"
    assert config["Discovery"]["MDNS"]["Enabled"] is False
    assert config["AutoConf"]["Enabled"] is False
    assert config["Plugins"]["Plugins"]["telemetry"]["Config"]["Mode"] == "off"
    assert config["DNS"]["Resolvers"] == {} and config["Routing"]["DelegatedRouters"] == []
    environment = daemon_script.node_environment(ipfs_daemon.repo)
    assert environment["IPFS_TELEMETRY"] == "off"


def socket_addresses(pid: int) -> set[str]:
    """Local and remote IPv4/IPv6 addresses of every TCP and UDP socket process `pid` holds
    (its descriptors' socket inodes, looked up in /proc/PID/net)."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(descriptor)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    addresses = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                addresses.update(hex_address(field) for field in fields[1:3])
    return addresses


def hex_address(field: str) -> str:
    """/proc/net's `HEXADDR:PORT` as an address without the port (IPv4 or IPv6)."""
    raw = bytes.fromhex(field.split(":")[0])
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[index : index + 4][::-1] for index in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


LOOPBACK_OR_UNSET = {"127.0.0.1", "0.0.0.0", "::1", "::"}


def test_an_online_node_listens_on_loopback_only_and_has_no_peers(tmp_path: Path) -> None:
    require_service("ipfs")
    daemon = SwarmIpfsDaemon(tmp_path / "repo")
    daemon.start()
    try:
        listening = api(daemon.api_url, "swarm/addrs/listen")["Strings"]
        assert listening and all(address.startswith("/ip4/127.0.0.1/") for address in listening)
        assert not api(daemon.api_url, "swarm/peers").get("Peers")
        assert daemon.process is not None
        # Every socket the daemon holds is on loopback (no telemetry, update check, DHT or
        # bootstrap connection), and there is more than the API's listener to look at.
        addresses = socket_addresses(daemon.process.pid)
        assert "127.0.0.1" in addresses and addresses <= LOOPBACK_OR_UNSET, addresses
    finally:
        daemon.stop()
    assert os.path.exists(daemon.repo / "config")


def test_the_socket_check_sees_a_non_loopback_socket() -> None:
    """Broken variant: a socket bound to another address shows up in `socket_addresses`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: UDP connect sends nothing
        assert "192.0.2.1" in socket_addresses(os.getpid())
