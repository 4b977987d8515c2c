"""`emrchain backup keygen|create|verify` and `emrchain restore` (docs/spec/backup.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from emrchain.cli.arguments import add_home_argument, bounded_integer, home_path
from emrchain.cli.registry import CommandError, UsageError, command

MAX_HEIGHT = (1 << 63) - 1


def _backup_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    keygen = actions.add_parser("keygen", help="make a recovery identity (keep it off the node)")
    keygen.add_argument("--out", type=home_path, required=True, metavar="FILE")
    create = actions.add_parser("create", help="write an encrypted backup of a home")
    add_home_argument(create)
    create.add_argument(
        "--recipient", help="recovery public key (age1...); default [backup] recipient"
    )
    create.add_argument(
        "--output", type=home_path, metavar="DIR", help="default [backup] directory"
    )
    create.add_argument(
        "--keep",
        type=bounded_integer(1, 10_000),
        help="archives kept in DIR; default [backup] keep",
    )
    verify = actions.add_parser("verify", help="check an archive without restoring it")
    verify.add_argument("archive", type=home_path)
    verify.add_argument("--identity", type=home_path, required=True, metavar="FILE")
    verify.add_argument(
        "--deep", action="store_true", help="also re-execute the chain and compare app hashes"
    )


@command(
    "backup",
    "encrypted backups of a node home: keygen, create, verify",
    arguments=_backup_arguments,
)
def backup(args: argparse.Namespace) -> int:
    from emrchain.backup.archive import BackupError

    try:
        if args.action == "keygen":
            return _keygen(args)
        if args.action == "create":
            return _create(args)
        return _verify(args)
    except BackupError as error:
        raise CommandError(str(error)) from None


def _keygen(args: argparse.Namespace) -> int:
    from emrchain.backup.archive import write_identity

    public = write_identity(args.out)
    print(f"recovery identity written to {args.out} (mode 0600): keep it off the node")
    print(f"public key (the recipient for [backup] recipient / --recipient): {public}")
    return 0


def _create(args: argparse.Namespace) -> int:
    from emrchain.backup.archive import BackupError, parse_recipient
    from emrchain.backup.create import backup_stopped_home
    from emrchain.backup.service import admin_socket_path, request_backup
    from emrchain.config.node import load_node_config

    config = load_node_config(args.home)
    recipient = args.recipient or config.backup.recipient
    if not recipient:
        raise UsageError("give --recipient, or set [backup] recipient in node.toml")
    parse_recipient(recipient)
    output = args.output or (Path(config.backup.directory) if config.backup.directory else None)
    if output is None:
        raise UsageError("give --output, or set [backup] directory in node.toml")
    keep = args.keep or config.backup.keep
    socket_path = admin_socket_path(config)
    try:
        answer = request_backup(socket_path, output.absolute(), recipient, keep)
    except (FileNotFoundError, ConnectionRefusedError):
        # No node answers: a stopped home, whose stores this process may open itself.
        summary = backup_stopped_home(config, output.absolute(), recipient, keep).summary()
        summary["made_by"] = "this command (node stopped)"
    else:
        if not answer.get("ok"):
            raise BackupError(f"the node refused: {answer.get('error')}")
        summary = {key: value for key, value in answer.items() if key != "ok"}
        summary["made_by"] = "the running node"
    print(json.dumps(summary, indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from emrchain.backup.archive import load_identity, verify_archive
    from emrchain.backup.deep import deep_verify

    identity = load_identity(args.identity)
    if args.deep:
        manifest = deep_verify(args.archive, identity)
    else:
        manifest = verify_archive(args.archive, identity)
    print(
        json.dumps(
            {
                "ok": True,
                "deep": args.deep,
                "chain_id": manifest.chain_id,
                "height": manifest.height,
                "app_hash": manifest.app_hash,
                "parts": len(manifest.parts),
                "hsm_resident_keys": manifest.fields.get("hsm_resident_keys", []),
            },
            indent=2,
        )
    )
    return 0


def _restore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", type=home_path)
    parser.add_argument("--identity", type=home_path, required=True, metavar="FILE")
    add_home_argument(parser)
    parser.add_argument("--force", action="store_true", help="replace a non-empty home")
    parser.add_argument(
        "--peer-rpc",
        action="append",
        default=None,
        metavar="URL",
        help="RPC URL of a running node to learn the chain's head from (repeatable); default: "
        "the other organisations' [records] custodian_rpc_urls of the backed-up config",
    )
    parser.add_argument(
        "--signing-hold-height",
        type=bounded_integer(0, MAX_HEIGHT),
        metavar="H",
        help="the chain's current head, when no peer can be asked (every node is down): the "
        "validator signs nothing at or below H + 1",
    )


@command("restore", "rebuild a node home from a backup archive", arguments=_restore_arguments)
def restore(args: argparse.Namespace) -> int:
    from emrchain.backup.archive import BackupError, load_identity

    try:
        identity = load_identity(args.identity)
        network_height = _network_height(args, identity)
        from emrchain.backup.restore import restore_home

        result = restore_home(
            args.archive, identity, args.home, network_height=network_height, force=args.force
        )
    except BackupError as error:
        raise CommandError(str(error)) from None
    print(
        json.dumps(
            {
                "home": str(result.home),
                "chain_id": result.manifest.chain_id,
                "height": result.manifest.height,
                "app_hash": result.manifest.app_hash,
                "signing_hold_height": result.signing_hold_height,
                "hsm_resident_keys": result.manifest.fields.get("hsm_resident_keys", []),
                "restore_seconds": round(result.elapsed_s, 3),
            },
            indent=2,
        )
    )
    return 0


def _network_height(args: argparse.Namespace, identity: Any) -> int:
    """The highest head known now: given, or the best a peer reports."""
    from emrchain.backup.restore import learn_network_head

    if args.signing_hold_height is not None:
        return int(args.signing_hold_height)
    return learn_network_head(args.archive, identity, args.peer_rpc or [], args.home)
