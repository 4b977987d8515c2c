"""`MemoryState`: committed application state held in a dict.

The in-process counterpart of the store's committed view, for the simulator and for building
chains in tests: it applies genesis and block results with the same ordering checks the store
makes (next height only, and the block must carry the app hash of the state it executes on).
"""

from __future__ import annotations

from collections.abc import Iterator

from emrchain.state.result import ExecutionResult
from emrchain.types.block import Block


class MemoryState:
    """A `CommittedState` in memory; empty until `apply_genesis`."""

    def __init__(self) -> None:
        self._values: dict[bytes, bytes] = {}
        self._height = 0
        self._app_hash: bytes | None = None

    def apply_genesis(self, genesis: ExecutionResult) -> None:
        """Apply the genesis result (height 0); refused once anything was applied."""
        if self._app_hash is not None:
            raise ValueError("genesis was already applied")
        self._apply_writes(genesis)
        self._app_hash = genesis.app_hash

    def get(self, key: bytes) -> bytes | None:
        return self._values.get(key)

    def last_height(self) -> int:
        return self._height

    def last_app_hash(self) -> bytes:
        if self._app_hash is None:
            raise ValueError("no genesis applied yet")
        return self._app_hash

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value), ascending by key."""
        for key in sorted(self._values):
            yield key, self._values[key]

    def apply(self, block: Block, result: ExecutionResult) -> None:
        """Commit `result`, the execution of `block`; raise ValueError if `block` does not
        follow this state (so nothing is applied)."""
        if block.height != self._height + 1:
            raise ValueError(f"block {block.height} does not follow height {self._height}")
        if block.header.app_hash != self.last_app_hash():
            raise ValueError("the block's app_hash is not the app hash of this state")
        self._apply_writes(result)
        self._height = block.height
        self._app_hash = result.app_hash

    def _apply_writes(self, result: ExecutionResult) -> None:
        for key, value in result.writes.items():
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value
