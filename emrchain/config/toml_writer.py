"""A minimal TOML writer for our config: tables of booleans, integers, strings, string arrays.

The standard library reads TOML (`tomllib`) but cannot write it, and our files are flat enough
that a few lines beat a dependency. Output is always valid TOML 1.0 (tests read it back).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from emrchain.config.settings import TomlValue

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


@dataclass(frozen=True)
class Entry:
    key: str
    value: TomlValue
    comment: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    entries: Sequence[Entry]
    comment: str = ""


def format_string(text: str) -> str:
    """A TOML basic string; control characters are escaped so the value stays on one line."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def format_value(value: TomlValue) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return format_string(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        if not value:
            return "[]"
        return "[\n" + "".join(f"    {format_string(item)},\n" for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _comment_lines(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()]


def render(tables: Sequence[Table]) -> str:
    """Render tables in order; comments go on the lines above what they describe."""
    lines: list[str] = []
    for table in tables:
        if not _BARE_KEY.fullmatch(table.name):
            raise ValueError(f"table name {table.name!r} is not a bare key")
        if lines:
            lines.append("")
        lines.extend(_comment_lines(table.comment))
        lines.append(f"[{table.name}]")
        for entry in table.entries:
            if not _BARE_KEY.fullmatch(entry.key):
                raise ValueError(f"key {entry.key!r} is not a bare key")
            lines.extend(_comment_lines(entry.comment))
            lines.append(f"{entry.key} = {format_value(entry.value)}")
    return "\n".join(lines) + "\n"
