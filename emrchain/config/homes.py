"""Creating and resetting node homes: what `init`, `testnet` and `unsafe-reset-all` do.

A home is `config/` (node.toml, genesis.json, key files) plus `data/` (chain data and signing
state). Homes are first written to a staging directory and loaded back through the strict
loaders, then moved into place, so a failure never leaves a half-made home behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emrchain.config.address import Address, PeerAddress
from emrchain.config.errors import ConfigError
from emrchain.config.genesis import (
    Genesis,
    load_config_and_genesis,
    load_genesis,
    parse_genesis,
)
from emrchain.config.node import (
    CONFIG_DIR,
    NODE_CONFIG_FILE,
    NodeConfig,
    NodeSection,
    load_node_config,
    node_config_path,
    render_node_config,
)
from emrchain.crypto.keys import Ed25519Signer
from emrchain.keystore import load_key_file, write_key_file
from emrchain.keystore.member import (
    MemberIdentity,
    OrganizationKey,
    write_member_identity,
    write_organization_key,
)
from emrchain.types.limits import DEFAULT_LIMITS, Limits

DATA_DIR = "data"
PRIVATE_DIRECTORY_MODE = 0o700
TESTNET_VALIDATOR_POWER = 10
PORTS_PER_NODE = 3
"""Each testnet node gets a P2P, an RPC and an instrumentation (metrics) port, consecutive
from the base port."""


ADMIN_IDENTITY_FILE = "config/admin_key.json"
"""Testnet homes hold their organisation's first admin identity here (a demo convenience:
in production the admin's key belongs to a person, not to the node)."""


class HomeError(Exception):
    """A home cannot be created or reset as asked (exists already, not a home, ...)."""


@dataclass(frozen=True)
class NodeKeys:
    validator: Ed25519Signer
    node: Ed25519Signer

    @classmethod
    def generate(cls) -> NodeKeys:
        return cls(Ed25519Signer.generate(), Ed25519Signer.generate())


def build_genesis(
    chain_id: str,
    members: Sequence[tuple[str, NodeKeys]],
    *,
    power: int = TESTNET_VALIDATOR_POWER,
    limits: Limits = DEFAULT_LIMITS,
    genesis_time_ms: int | None = None,
    organizations: Sequence[dict[str, object]] = (),
) -> Genesis:
    """A genesis with one validator per (name, keys), through the strict parser."""
    document = {
        "chain_id": chain_id,
        "genesis_time_ms": int(time.time() * 1000) if genesis_time_ms is None else genesis_time_ms,
        "consensus_params": dataclasses.asdict(limits),
        "validators": [
            {
                "name": name,
                "public_key": keys.validator.public_key.hex(),
                "power": power,
                "node_key": keys.node.public_key.hex(),
            }
            for name, keys in members
        ],
        "organizations": list(organizations),
    }
    return parse_genesis(document, "<generated genesis>")


def _write_home(home: Path, config: NodeConfig, genesis: Genesis, keys: NodeKeys) -> None:
    """Write a complete home into `home` (an empty directory), then load it back strictly."""
    config = dataclasses.replace(config, home=home)
    (home / CONFIG_DIR).mkdir(mode=PRIVATE_DIRECTORY_MODE)
    config.data_path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True)
    for path in (config.genesis_path, config.validator_key_path, config.node_key_path):
        path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    config.config_path.write_text(render_node_config(config), encoding="utf-8")
    config.genesis_path.write_text(genesis.to_json(), encoding="utf-8")
    write_key_file(config.validator_key_path, keys.validator)
    write_key_file(config.node_key_path, keys.node)
    # What we wrote must pass the same checks `start` applies; a failure here is a bug.
    loaded, loaded_genesis = load_config_and_genesis(home)
    if loaded != config or loaded_genesis != genesis:
        raise AssertionError(f"{home}: written config does not load back identically")
    for path, signer in (
        (config.validator_key_path, keys.validator),
        (config.node_key_path, keys.node),
    ):
        if load_key_file(path).public_key != signer.public_key:
            raise AssertionError(f"{path}: written key does not load back identically")


def _is_home(path: Path) -> bool:
    return node_config_path(path).is_file()


def create_home(
    home: Path, *, moniker: str, chain_id: str, force: bool = False
) -> tuple[NodeConfig, Genesis]:
    """`emrchain init`: a single-validator home with fresh keys.

    An existing home (one with `config/` or `data/`) is refused unless `force`; with `force`
    its config, keys and data are replaced, and only if it really is a home (has
    `config/node.toml`), so a mistyped `--home ~` cannot delete unrelated directories.
    """
    home = home.absolute()
    replaced = [home / CONFIG_DIR, home / DATA_DIR]
    if home.exists() and not home.is_dir():
        raise HomeError(f"{home}: exists and is not a directory")
    if any(path.exists() or path.is_symlink() for path in replaced):
        if not force:
            raise HomeError(
                f"{home}: already an emrchain home (has {CONFIG_DIR}/ or "
                f"{DATA_DIR}/); use --force to replace its config, keys and data"
            )
        if not _is_home(home):
            raise HomeError(
                f"{home}: has {CONFIG_DIR}/ or {DATA_DIR}/ but no "
                f"{NODE_CONFIG_FILE}; not deleting anything in a directory that "
                "is not an emrchain home"
            )
        with contextlib.suppress(ConfigError):  # a broken old config may point nowhere
            old_data = load_node_config(home).data_path
            if old_data not in replaced:
                replaced.append(old_data)
    config = NodeConfig(home=home, node=NodeSection(moniker=moniker))
    keys = NodeKeys.generate()
    genesis = build_genesis(chain_id, [(moniker, keys)], limits=config.limits)

    created_home = not home.exists()
    home.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".emrchain-init-", dir=home))
    renamed: list[tuple[Path, Path]] = []  # done so far, undone in reverse on failure

    def move(source: Path, target: Path) -> None:
        source.rename(target)
        renamed.append((source, target))

    try:
        _write_home(staging, config, genesis, keys)
        # Old entries go aside into staging (renames, no copying), then the new ones move in.
        for index, path in enumerate(replaced):
            if path.exists() or path.is_symlink():
                move(path, staging / f"replaced-{index}")
        move(staging / CONFIG_DIR, home / CONFIG_DIR)
        move(staging / config.node.data_dir, config.data_path)
    except BaseException:
        for source, target in reversed(renamed):
            with contextlib.suppress(OSError):
                target.rename(source)
        shutil.rmtree(staging, ignore_errors=True)
        if created_home:
            with contextlib.suppress(OSError):
                home.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)  # now holds only the replaced config and data
    return config, genesis


def choose_free_ports(host: str, count: int) -> list[int]:
    """`count` distinct TCP ports that are free on `host` right now.

    All probe sockets stay bound until every port is chosen, so the ports are distinct. Another
    process may still take one before the node starts; rerun `testnet` if that happens.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            probe = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(probe)
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in sockets]
    except OSError as error:
        raise HomeError(f"cannot bind to {host} to find free ports: {error.strerror}") from None
    finally:
        for probe in sockets:
            probe.close()


def testnet_ports(host: str, nodes: int, base_port: int) -> list[tuple[int, int, int]]:
    """(p2p port, rpc port, instrumentation port) per node: consecutive from `base_port`, or
    free ports if 0."""
    count = nodes * PORTS_PER_NODE
    if base_port == 0:
        ports = choose_free_ports(host, count)
    else:
        if base_port + count - 1 > 65535:
            raise HomeError(f"base port {base_port} leaves no room for {count} ports")
        ports = list(range(base_port, base_port + count))
    return [
        (ports[3 * index], ports[3 * index + 1], ports[3 * index + 2]) for index in range(nodes)
    ]


def create_testnet(
    output: Path, *, validators: int, chain_id: str, host: str, base_port: int
) -> tuple[list[Path], Genesis]:
    """`emrchain testnet`: homes node0..node{N-1} sharing one genesis, peers cross-linked."""
    output = output.absolute()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise HomeError(f"{output}: exists and is not an empty directory; choose a new --output")
    ports = testnet_ports(host, validators, base_port)
    monikers = [f"node{index}" for index in range(validators)]
    keys = [NodeKeys.generate() for _ in range(validators)]
    # One organisation (hospital) per validator node, each with its custody key pair and a
    # first admin whose identity file lands in that node's home (for the devnet and demos).
    organizations = [OrganizationKey.generate(f"hospital-{index}") for index in range(validators)]
    admins = [MemberIdentity.generate() for _ in range(validators)]
    genesis = build_genesis(
        chain_id,
        list(zip(monikers, keys, strict=True)),
        organizations=[
            {
                "organization_id": organization.organization_id,
                "name": f"Hospital {index}",
                "encryption_key": organization.public_key.hex(),
                "admins": [
                    {
                        "member_key": admins[index].member_key.hex(),
                        "encryption_key": admins[index].encryption_public_key.hex(),
                    }
                ],
            }
            for index, organization in enumerate(organizations)
        ],
    )
    peers = [
        PeerAddress(keys[index].node.public_key, Address(host, ports[index][0]))
        for index in range(validators)
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        for index, moniker in enumerate(monikers):
            p2p_port, rpc_port, instrumentation_port = ports[index]
            base = NodeConfig(home=output / moniker)
            config = dataclasses.replace(
                base,
                node=dataclasses.replace(
                    base.node,
                    moniker=moniker,
                    organization_id=organizations[index].organization_id,
                ),
                p2p=dataclasses.replace(
                    base.p2p,
                    listen_address=Address(host, p2p_port),
                    persistent_peers=tuple(peers[:index] + peers[index + 1 :]),
                ),
                rpc=dataclasses.replace(base.rpc, listen_address=Address(host, rpc_port)),
                # Every custodian's node, so clients can hand each its wrap (records.md §9).
                records=dataclasses.replace(
                    base.records,
                    custodian_rpc_urls=tuple(
                        f"{organizations[other].organization_id}="
                        f"http://{_url_host(host)}:{ports[other][1]}"
                        for other in range(validators)
                    ),
                ),
                # Testnets are for trying things out: metrics on, on a port of their own.
                instrumentation=dataclasses.replace(
                    base.instrumentation,
                    enabled=True,
                    listen_address=Address(host, instrumentation_port),
                ),
            )
            (staging / moniker).mkdir(mode=PRIVATE_DIRECTORY_MODE)
            _write_home(staging / moniker, config, genesis, keys[index])
            home_config = dataclasses.replace(config, home=staging / moniker)
            write_organization_key(home_config.organization_key_path, organizations[index])
            write_member_identity(home_config.resolve(ADMIN_IDENTITY_FILE), admins[index])
        if output.exists():
            output.rmdir()  # empty, checked above
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [output / moniker for moniker in monikers], genesis


def create_joining_home(
    home: Path,
    *,
    moniker: str,
    genesis_path: Path,
    persistent_peers: Sequence[PeerAddress],
    p2p_address: Address,
    rpc_address: Address,
    organization_id: str = "",
) -> tuple[NodeConfig, Genesis]:
    """`emrchain join`: a home with fresh keys for a node joining a running chain.

    It holds the chain's genesis (copied, checked by the strict parser) and dials
    `persistent_peers`. It starts as a full node: it block-syncs and follows commits, and
    votes only once validators approve its validator key (VALIDATOR_UPDATE) — or stays a full
    node once an admin registers its node key (REGISTER_NODE). Either way the running nodes
    refuse its connections until that is committed (`docs/spec/p2p.md` §4.1).
    """
    home = home.absolute()
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise HomeError(f"{home}: exists and is not an empty directory")
    genesis = load_genesis(genesis_path)
    base = NodeConfig(home=home)
    config = dataclasses.replace(
        base,
        node=dataclasses.replace(base.node, moniker=moniker, organization_id=organization_id),
        p2p=dataclasses.replace(
            base.p2p, listen_address=p2p_address, persistent_peers=tuple(persistent_peers)
        ),
        rpc=dataclasses.replace(base.rpc, listen_address=rpc_address),
        limits=genesis.consensus_params,
    )
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
    try:
        _write_home(staging, config, genesis, NodeKeys.generate())
        if home.exists():
            home.rmdir()  # empty, checked above
        staging.rename(home)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return config, genesis


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def reset_data(home: Path) -> Path:
    """`emrchain unsafe-reset-all`: empty the data directory; config and keys stay.

    The directory itself is kept (it may be a mount point or a symlink to another disk); its
    entries are deleted. This deletes the consensus signing state, so a validator restarted
    on an old chain could double-sign: only for chains being restarted from genesis.
    """
    config = load_node_config(home)
    data = config.data_path
    if not data.exists():
        data.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True)
        return data
    if not data.is_dir():
        raise HomeError(f"{data}: [node] data_dir is not a directory")
    for entry in data.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return data


__all__ = [
    "HomeError",
    "NodeKeys",
    "build_genesis",
    "choose_free_ports",
    "create_home",
    "create_joining_home",
    "create_testnet",
    "reset_data",
    "testnet_ports",
]
