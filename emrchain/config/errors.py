"""The one error type of configuration loading: it always names the file and the key."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad configuration: `source` is the file (or `<generated>`), `key` the offending key.

    `str(error)` is a single line, `"<file>: <key>: <message>"`, so the CLI can print it as is.
    """

    def __init__(self, source: str, key: str | None, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        location = f"{source}: {key}" if key else source
        super().__init__(" ".join(f"{location}: {message}".split("\n")))
