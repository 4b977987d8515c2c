"""The registry of `emrchain` subcommands, and the two errors a command raises for its user.

A command module of this package registers its commands at import with `@command`; the front
end (`main.py`) imports every command module before parsing, so a new command is one function
in one of them (or a new module added to `main.COMMAND_MODULES`):

    import argparse
    from emrchain.cli.arguments import add_home_argument
    from emrchain.cli.registry import CommandError, command

    def _arguments(parser: argparse.ArgumentParser) -> None:
        add_home_argument(parser)

    @command("start", "run the node", arguments=_arguments)
    def start(args: argparse.Namespace) -> int:
        ...  # raise CommandError("...") for a user error; return the exit status (or None)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


class CommandError(Exception):
    """A user error found while running a command: printed as one line, exit status 1."""


class UsageError(Exception):
    """Bad arguments found after parsing (e.g. two options that contradict): exit status 2."""


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
