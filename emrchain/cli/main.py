"""The `emrchain` command's front end: one argparse parser over every registered command.

Errors a user can cause print one line, `emrchain <command>: error: <what and where>`, to
stderr: exit status 2 for bad arguments (usage), 1 for everything else the user can fix
(bad config, key file permissions, an existing home). Only bugs show a traceback.

Commands live in the modules of this package (`COMMAND_MODULES`), which register them when
imported (`registry.py`); no other package imports the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

import emrchain
from emrchain.cli.registry import Command, CommandError, UsageError, registered_commands
from emrchain.config import ConfigError
from emrchain.config.homes import HomeError
from emrchain.keystore import KeystoreError
from emrchain.storage.interfaces import KeyUnavailableError

PROGRAM = "emrchain"
EXIT_RUNTIME_ERROR = 1
EXIT_USAGE_ERROR = 2
EXIT_INTERRUPTED = 130

COMMAND_MODULES = (
    "home",
    "membership",
    "bench",
    "client",
    "studies",
    "node",
    "records",
    "backup",
    "maintenance",
    "portal",
)
"""The modules of this package that register commands, in the order `--help` lists them."""

USER_ERRORS: tuple[type[Exception], ...] = (
    CommandError,
    ConfigError,
    KeystoreError,
    HomeError,
    KeyUnavailableError,  # an HSM that is absent, locked or lacks the configured key
    OSError,
)
"""Exceptions a user can cause and fix; anything else is a bug and keeps its traceback."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def load_commands() -> None:
    """Import every command module, so that its commands are registered (once: Python imports
    a module once)."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"emrchain.cli.{name}")


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
    load_commands()
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
