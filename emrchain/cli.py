"""The `emrchain` command: a registry of subcommands behind one argparse front end.

Errors a user can cause print one line, `emrchain <command>: error: <what and where>`, to
stderr: exit status 2 for bad arguments (usage), 1 for everything else the user can fix
(bad config, key file permissions, an existing home). Only bugs show a traceback.

Adding a command (`start`, `status`, `devnet`, `bench`, record and grant commands): create
`emrchain/<package>/commands.py`; `main()` imports every such module before parsing, so it
needs no change here:

    import argparse
    from emrchain.cli import CommandError, add_home_argument, command

    def _arguments(parser: argparse.ArgumentParser) -> None:
        add_home_argument(parser)

    @command("start", "run the node", arguments=_arguments)
    def start(args: argparse.Namespace) -> int:
        ...  # raise CommandError("...") for a user error; return the exit status (or None)
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import emrchain
from emrchain.config import ConfigError, validate_chain_id
from emrchain.config.homes import HomeError, create_home, create_testnet, reset_data
from emrchain.config.node import MONIKER_EXPLANATION, MONIKER_PATTERN, load_node_config
from emrchain.keystore import KeystoreError, load_key_file, node_id
from emrchain.storage.interfaces import KeyUnavailableError
from emrchain.types.limits import DEFAULT_LIMITS

PROGRAM = "emrchain"
EXIT_RUNTIME_ERROR = 1
EXIT_USAGE_ERROR = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A user error found while running a command: printed as one line, exit status 1."""


class UsageError(Exception):
    """Bad arguments found after parsing (e.g. two options that contradict): exit status 2."""


USER_ERRORS: tuple[type[Exception], ...] = (
    CommandError,
    ConfigError,
    KeystoreError,
    HomeError,
    KeyUnavailableError,  # an HSM that is absent, locked or lacks the configured key
    OSError,
)
"""Exceptions a user can cause and fix; anything else is a bug and keeps its traceback."""

Run = Callable[[argparse.Namespace], int | None]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Run
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


_COMMANDS: dict[str, Command] = {}


def register_command(entry: Command) -> None:
    if entry.name in _COMMANDS:
        raise ValueError(f"command {entry.name!r} is already registered")
    _COMMANDS[entry.name] = entry


def command(
    name: str, help: str, *, arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Run], Run]:
    """Decorator: register `run` as the subcommand `name`; `arguments` adds its options."""

    def register(run: Run) -> Run:
        register_command(Command(name, help, run, arguments))
        return run

    return register


def registered_commands() -> tuple[Command, ...]:
    return tuple(_COMMANDS.values())


def load_extension_commands() -> None:
    """Import `emrchain/<package>/commands.py` modules so their commands register."""
    package_dir = Path(emrchain.__file__).parent
    for module_file in sorted(package_dir.glob("*/commands.py")):
        importlib.import_module(f"emrchain.{module_file.parent.name}.commands")


# ---- argument types: argparse turns their errors into usage errors (exit 2) ----------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def home_path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text)


def chain_id_argument(text: str) -> str:
    try:
        return validate_chain_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def moniker_argument(text: str) -> str:
    if not re.fullmatch(MONIKER_PATTERN, text):
        raise argparse.ArgumentTypeError(f"must be {MONIKER_EXPLANATION}, got {text!r}")
    return text


def bounded_integer(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]+", text) or not minimum <= int(text) <= maximum:
            raise argparse.ArgumentTypeError(
                f"must be an integer within {minimum}..{maximum}, got {text!r}"
            )
        return int(text)

    return parse


def dialable_ip(text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an IP address, got {text!r}") from None
    if address.is_unspecified:
        raise argparse.ArgumentTypeError(
            f"{text} cannot be dialled by peers; use a concrete address such as 127.0.0.1"
        )
    return text


def add_home_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        type=home_path,
        required=True,
        metavar="DIR",
        help="node home directory (config/ and data/)",
    )


# ---- built-in commands ---------------------------------------------------------------------


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


# ---- front end -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_USAGE_ERROR, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROGRAM,
        description="emrchain node: permissioned BFT chain for "
        "medical-record anchors, consent and audit.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {emrchain.__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="<command>", required=True)
    for entry in registered_commands():
        sub = subparsers.add_parser(entry.name, help=entry.help, description=entry.help)
        if entry.arguments is not None:
            entry.arguments(sub)
        sub.set_defaults(_command=entry, _parser=sub)
    return parser


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    load_extension_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    entry: Command = args._command
    prog: str = args._parser.prog
    try:
        status = entry.run(args)
    except UsageError as error:
        args._parser.error(str(error))
    except USER_ERRORS as error:
        print(f"{prog}: error: {_one_line(_describe(error))}", file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if status is None else status


if __name__ == "__main__":
    # `python -m emrchain.cli` runs this file as `__main__`; run the `emrchain.cli` module's
    # main instead, the one extension modules register into when they import emrchain.cli.
    from emrchain.cli import main as canonical_main

    sys.exit(canonical_main())
