"""Strict parsers for RPC text: lowercase hex and ASCII decimal, nothing lenient.

Python's own parsers accept more than the API documents: `bytes.fromhex` takes upper case and
whitespace, `str.isdigit` is true for "²" (which `int` then refuses with a ValueError, a 500
if unchecked) and `int` takes Arabic-Indic digits. Every RPC argument goes through these
instead, so what the node accepts is exactly what `docs/spec/rpc.md` and the OpenAPI document
say.
"""

from __future__ import annotations

import re

_LOWER_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_DECIMAL = re.compile(r"[0-9]+")


def lower_hex(text: str) -> bytes:
    """The bytes of `text`, which must be lowercase hex of even length; ValueError otherwise."""
    if _LOWER_HEX.fullmatch(text) is None:
        raise ValueError("not lowercase hex")
    return bytes.fromhex(text)


def decimal(text: str, maximum: int) -> int | None:
    """`text` as a non-negative integer of at most `maximum`, or None: ASCII digits only,
    length bounded before conversion so no huge number is ever built."""
    if len(text) > len(str(maximum)) or _DECIMAL.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= maximum else None
