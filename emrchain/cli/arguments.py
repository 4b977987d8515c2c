"""Argument types and shared options of the `emrchain` commands: argparse turns the errors of
these types into usage errors (exit status 2) naming the argument."""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path

from emrchain.config import validate_chain_id
from emrchain.config.node import MONIKER_EXPLANATION, MONIKER_PATTERN


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
