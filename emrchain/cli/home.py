"""`emrchain init`, `testnet`, `show-node-id`, `show-validator` and `unsafe-reset-all`: create
a node's home (or N of them), print its keys, and empty its chain data."""

from __future__ import annotations

import argparse

from emrchain.cli.arguments import (
    add_home_argument,
    bounded_integer,
    chain_id_argument,
    dialable_ip,
    home_path,
    moniker_argument,
)
from emrchain.cli.registry import UsageError, command
from emrchain.config.homes import create_home, create_testnet, reset_data
from emrchain.config.node import load_node_config
from emrchain.keystore import load_key_file, node_id
from emrchain.types.limits import DEFAULT_LIMITS


def _init_arguments(parser: argparse.ArgumentParser) -> None:
    add_home_argument(parser)
    parser.add_argument(
        "--moniker", type=moniker_argument, default="node", help="node name (default: node)"
    )
    parser.add_argument(
        "--chain-id",
        type=chain_id_argument,
        default="emrchain-local",
        help="chain id (default: emrchain-local)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing home's config, keys and data"
    )


@command(
    "init", "create a home: config, keys and a single-validator genesis", arguments=_init_arguments
)
def init(args: argparse.Namespace) -> int:
    config, genesis = create_home(
        args.home, moniker=args.moniker, chain_id=args.chain_id, force=args.force
    )
    validator = load_key_file(config.validator_key_path)
    print(f"initialised {config.home}")
    print(f"  chain id      {genesis.chain_id}")
    print(f"  genesis hash  {genesis.genesis_hash.hex()}")
    print(f"  validator     {validator.public_key.hex()}")
    print(f"  node id       {node_id(load_key_file(config.node_key_path).public_key)}")
    return 0


def _testnet_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--validators",
        type=bounded_integer(1, DEFAULT_LIMITS.max_validators),
        required=True,
        metavar="N",
        help="number of validators / homes",
    )
    parser.add_argument(
        "--output",
        type=home_path,
        required=True,
        metavar="DIR",
        help="new or empty directory to hold node0..node{N-1}",
    )
    parser.add_argument(
        "--chain-id",
        type=chain_id_argument,
        default="emrchain-testnet",
        help="chain id (default: emrchain-testnet)",
    )
    parser.add_argument(
        "--base-port",
        type=bounded_integer(0, 65535),
        default=0,
        metavar="P",
        help="node i uses P+2i (p2p) and P+2i+1 (rpc); 0 (default) picks free ports",
    )
    parser.add_argument(
        "--host",
        type=dialable_ip,
        default="127.0.0.1",
        help="address every node listens on and peers dial (default: 127.0.0.1)",
    )


@command(
    "testnet",
    "create N validator homes sharing one genesis, peers cross-linked",
    arguments=_testnet_arguments,
)
def testnet(args: argparse.Namespace) -> int:
    if args.base_port and args.base_port + 2 * args.validators - 1 > 65535:
        raise UsageError(
            f"argument --base-port: {args.base_port} leaves no room for "
            f"{2 * args.validators} consecutive ports"
        )
    homes, genesis = create_testnet(
        args.output,
        validators=args.validators,
        chain_id=args.chain_id,
        host=args.host,
        base_port=args.base_port,
    )
    print(f"created {len(homes)} homes in {args.output.absolute()}")
    print(f"  chain id      {genesis.chain_id}")
    print(f"  genesis hash  {genesis.genesis_hash.hex()}")
    for home in homes:
        config = load_node_config(home)
        print(
            f"  {config.node.moniker}: p2p {config.p2p.listen_address}, "
            f"rpc {config.rpc.listen_address}"
        )
    return 0


@command(
    "show-node-id", "print this node's id (hex of its node public key)", arguments=add_home_argument
)
def show_node_id(args: argparse.Namespace) -> int:
    config = load_node_config(args.home)
    print(node_id(load_key_file(config.node_key_path).public_key))
    return 0


@command(
    "show-validator", "print this node's validator public key (hex)", arguments=add_home_argument
)
def show_validator(args: argparse.Namespace) -> int:
    from emrchain.hsm.node_keys import validator_signer  # loads PKCS#11 only when asked

    config = load_node_config(args.home)
    # The key the node signs with: under `[keys] backend = "hsm"` the token's key, not a file.
    print(validator_signer(config).public_key.hex())
    return 0


def _reset_arguments(parser: argparse.ArgumentParser) -> None:
    add_home_argument(parser)
    parser.add_argument(
        "--yes",
        action="store_true",
        help="confirm: delete all chain data and the double-sign protection state",
    )


@command(
    "unsafe-reset-all",
    "delete the home's chain data and signing state; keep config and keys",
    arguments=_reset_arguments,
)
def unsafe_reset_all(args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError("refusing to delete chain data and signing state without --yes")
    data = reset_data(args.home)
    print(f"emptied {data}")
    return 0
