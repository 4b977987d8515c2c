"""Membership commands: `join`, `approve-validator`, `register-node`, `remove-node`.

A hospital joins a running chain (`docs/spec/state.md` §4.2, §4.5):

1. `emrchain join` creates its home: fresh keys, the chain's genesis, the running nodes as
   persistent peers. It prints the validator key and node key to be approved.
2. Either more than 2/3 of the voting power runs `emrchain approve-validator` (each validator
   signs with its own validator key), or an admin of the hospital's organisation runs
   `emrchain register-node --node-home` (a full node: it never votes); the node's own key signs
   the registration, so an admin can register only a node whose key it holds.
3. Once that is committed, `emrchain start` connects, block-syncs and follows commits; an
   approved validator votes from the height the update takes effect.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from emrchain.cli.arguments import bounded_integer, home_path, moniker_argument
from emrchain.cli.client import _connection_arguments as connection_arguments
from emrchain.cli.client import _with_client, hex_id, organization_id, rpc_url
from emrchain.cli.registry import CommandError, UsageError, command
from emrchain.client import transactions
from emrchain.config.address import Address, PeerAddress, parse_address
from emrchain.config.homes import create_joining_home
from emrchain.config.node import load_node_config
from emrchain.crypto.keys import Signer
from emrchain.keystore import load_key_file, node_id
from emrchain.keystore.file import KeystoreError
from emrchain.schema import MAX_VALIDATOR_POWER, NODE_ADDRESS_MAX_BYTES, U64_MAX

COMMIT_TIMEOUT_S = 60.0


def _address(text: str) -> Address:
    try:
        address = parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if len(str(address).encode()) > NODE_ADDRESS_MAX_BYTES:
        raise argparse.ArgumentTypeError(f"longer than {NODE_ADDRESS_MAX_BYTES} bytes")
    return address


def _peer(text: str) -> PeerAddress:
    identity, separator, location = text.partition("@")
    if not separator or not re.fullmatch(r"[0-9a-f]{64}", identity):
        raise argparse.ArgumentTypeError(f"a peer is <node id (64 hex)>@host:port, got {text!r}")
    return PeerAddress(bytes.fromhex(identity), _address(location))


# ---- join ------------------------------------------------------------------------------------


def _join_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=home_path, required=True, metavar="DIR", help="new home")
    parser.add_argument("--moniker", type=moniker_argument, default="node", help="node name")
    parser.add_argument(
        "--genesis", type=home_path, required=True, metavar="FILE", help="the chain's genesis"
    )
    parser.add_argument(
        "--peer",
        type=_peer,
        action="append",
        required=True,
        metavar="NODE_ID@HOST:PORT",
        help="a running node to connect to (repeat for several)",
    )
    parser.add_argument(
        "--p2p-address", type=_address, required=True, help="where this node listens (host:port)"
    )
    parser.add_argument("--rpc-address", type=_address, required=True, help="RPC listen address")
    parser.add_argument(
        "--advertise",
        type=_address,
        help="address other nodes dial, recorded on chain (default: --p2p-address)",
    )
    parser.add_argument(
        "--organization-id", type=organization_id, help="organisation whose records it serves"
    )


@command("join", "create a home for a node joining a running chain", arguments=_join_arguments)
def join(args: argparse.Namespace) -> int:
    advertised = args.advertise or args.p2p_address
    if advertised.host in ("0.0.0.0", "::"):
        # Peers would dial the unspecified address, i.e. themselves.
        raise UsageError(f"{advertised} cannot be dialled by peers: give --advertise HOST:PORT")
    config, genesis = create_joining_home(
        args.home,
        moniker=args.moniker,
        genesis_path=args.genesis,
        persistent_peers=args.peer,
        p2p_address=args.p2p_address,
        rpc_address=args.rpc_address,
        organization_id=args.organization_id or "",
    )
    validator_key = load_key_file(config.validator_key_path).public_key.hex()
    node_key = node_id(load_key_file(config.node_key_path).public_key)
    print(f"initialised {config.home} for chain {genesis.chain_id}")
    print(f"  validator key  {validator_key}")
    print(f"  node key       {node_key}")
    print("to join as a validator, validators holding more than 2/3 of the power each run:")
    print(
        f"  emrchain approve-validator --home <their home> --validator-key {validator_key} "
        f"--node-key {node_key} --address {advertised} --power <power> --epoch <epoch>"
    )
    print("to run it as a full node, an admin of its organisation runs:")
    print(
        f"  emrchain register-node --key <admin key file> --rpc <url> --node-home {config.home} "
        f"--address {advertised}"
    )
    print(f"then: emrchain start --home {config.home}")
    return 0


# ---- approve-validator -------------------------------------------------------------------------


def _approve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        type=home_path,
        required=True,
        metavar="DIR",
        help="the approving validator's home (its validator key signs)",
    )
    parser.add_argument("--rpc", type=rpc_url, help="node RPC URL (default: the home's RPC)")
    parser.add_argument("--validator-key", type=hex_id("validator key"), required=True)
    parser.add_argument(
        "--power",
        type=bounded_integer(0, MAX_VALIDATOR_POWER),
        required=True,
        help="voting power; 0 removes the validator",
    )
    parser.add_argument(
        "--epoch",
        type=bounded_integer(1, U64_MAX),
        required=True,
        help="above the epoch of the validator's last applied update (1 for a new one)",
    )
    parser.add_argument("--node-key", type=hex_id("node key"), help="its P2P key (not for 0)")
    parser.add_argument("--address", type=_address, help="its advertised P2P host:port")


@command(
    "approve-validator",
    "sign this validator's approval of a validator-set change and submit it",
    arguments=_approve_arguments,
)
def approve_validator(args: argparse.Namespace) -> int:
    from emrchain.hsm.node_keys import validator_signer  # loads PKCS#11 only when asked

    if args.power and args.node_key is None:
        raise UsageError("--node-key is required unless --power is 0")
    if not args.power and (args.node_key is not None or args.address is not None):
        raise UsageError("a removal (--power 0) takes no --node-key or --address")
    config = load_node_config(args.home)
    url = args.rpc or f"http://{config.rpc.listen_address}"
    signer = validator_signer(config)
    chain_id = str(_get(url, "/status")["chain_id"]).encode("ascii")

    def build(nonce: int) -> bytes:
        return transactions.validator_update(
            signer,
            chain_id,
            nonce,
            validator_key=args.validator_key,
            power=args.power,
            epoch=args.epoch,
            node_key=args.node_key or bytes(32),
            address=str(args.address) if args.address else "",
        ).encode()

    tx_id = _submit(url, build(_next_nonce(url, signer)))
    height = _wait_committed(url, tx_id)
    print(f"approval {tx_id} committed at height {height}")
    return 0


def _next_nonce(url: str, signer: Signer) -> int:
    """A validator is no member (no /accounts entry): the node answers its nonces at
    /validators/{key}/nonce, counting its pending transactions."""
    return int(_get(url, f"/validators/{signer.public_key.hex()}/nonce")["next_nonce"])


def _submit(url: str, tx: bytes) -> str:
    result = _post_txs(url, tx)
    if not result.get("accepted"):
        raise CommandError(
            f"the node refused the approval: {result.get('code')}: {result.get('reason')}"
        )
    return str(result["tx_id"])


def _wait_committed(url: str, tx_id: str) -> int:
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            reply = _get(url, f"/txs/{tx_id}")
        except CommandError:
            reply = {}
        if reply.get("status") == "committed":
            if reply.get("result_code") != 0:
                raise CommandError(f"execution refused it: result code {reply.get('result_code')}")
            return int(reply["height"])
        time.sleep(0.5)
    raise CommandError(f"transaction {tx_id} not committed after {COMMIT_TIMEOUT_S:g} s")


def _post_txs(url: str, tx: bytes) -> dict[str, Any]:
    body = json.dumps({"txs": [tx.hex()]}).encode()
    reply = _request(url, "/txs", body)
    results = reply.get("results")
    if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], dict):
        raise CommandError(f"unexpected reply to POST /txs: {reply}")
    return results[0]


def _get(url: str, path: str) -> dict[str, Any]:
    return _request(url, path, None)


def _request(url: str, path: str, body: bytes | None) -> dict[str, Any]:
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=body,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            document = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise CommandError(f"{path}: HTTP {error.code}: {error.read()[:200]!r}") from None
    except (OSError, ValueError) as error:
        raise CommandError(f"{url}{path}: {error}") from None
    if not isinstance(document, dict):
        raise CommandError(f"{path}: the reply is not a JSON object")
    return document


# ---- register-node / remove-node ------------------------------------------------------------


def _register_arguments(parser: argparse.ArgumentParser) -> None:
    connection_arguments(parser)
    parser.add_argument(
        "--node-home",
        type=home_path,
        required=True,
        metavar="DIR",
        help="the node's home: its node key signs the proof that you hold the node",
    )
    parser.add_argument("--address", type=_address, help="its advertised P2P host:port")


def _node_signer(node_home: Path) -> Signer:
    try:
        return load_key_file(load_node_config(node_home).node_key_path)
    except (OSError, ValueError, KeystoreError) as error:
        raise CommandError(f"cannot load the node key of {node_home}: {error}") from None


@command(
    "register-node",
    "as an admin, register a full node of your organisation (signed by its node key)",
    arguments=_register_arguments,
)
def register_node(args: argparse.Namespace) -> int:
    address = str(args.address) if args.address else ""
    node = _node_signer(args.node_home)

    def send(client: Any) -> Any:
        # The proof binds the registering organisation: ask the node which one this admin is in.
        member = client.account().get("member")
        organization = member.get("organization_id") if isinstance(member, dict) else None
        if not isinstance(organization, str):
            raise CommandError("the node did not name this admin's organisation")
        return client.submit_and_wait(
            transactions.register_node(
                client.client.identity,
                client.chain_id(),
                client.next_nonce(),
                organization_id=organization,
                node=node,
                address=address,
            )
        )

    committed = _with_client(args, send)
    print(f"node {node.public_key.hex()} registered at height {committed.height}")
    return 0


def _remove_arguments(parser: argparse.ArgumentParser) -> None:
    connection_arguments(parser)
    parser.add_argument("--node-key", type=hex_id("node key"), required=True)


@command(
    "remove-node",
    "as an admin, remove a full node your organisation registered",
    arguments=_remove_arguments,
)
def remove_node(args: argparse.Namespace) -> int:
    def send(client: Any) -> Any:
        return client.submit_and_wait(
            transactions.remove_node(
                client.client.identity,
                client.chain_id(),
                client.next_nonce(),
                node_key=args.node_key,
            )
        )

    committed = _with_client(args, send)
    print(f"node {args.node_key.hex()} removed at height {committed.height}")
    return 0
