"""The `emrchain` command: the front end (`main.py`), the command registry (`registry.py`),
shared argument types (`arguments.py`) and one module per group of commands (`home.py`,
`node.py`, `client.py`, `records.py`, `bench.py`). The top layer: it may import every package,
and none imports it."""

from emrchain.cli.main import main

__all__ = ["main"]
