"""The batch arguments' check, shared by the reference modules (the compiled twin's is
`_items.pxd`: same snapshot, same TypeError)."""

from __future__ import annotations

from collections.abc import Iterable


def checked_bytes(items: Iterable[bytes], what: str) -> tuple[bytes, ...]:
    """Snapshot `items` as a tuple and make sure every element is a bytes object."""
    snapshot = tuple(items)
    for position, item in enumerate(snapshot):
        if not isinstance(item, bytes):
            raise TypeError(f"{what} {position} is {type(item).__name__}, not bytes")
    return snapshot
