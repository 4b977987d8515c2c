"""Read access to application state, and the overlay that collects a block's pending writes.

The application never touches storage: it reads through a `StateView` and writes into an
`OverlayStateView` layered over it. Overlays nest (a transaction's overlay sits on the block's),
so a transaction that fails is dropped by discarding its overlay, and nothing it wrote survives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

# The state key and value limits are data every layer shares (the store checks the writes it
# persists against them): defined with the execution result, re-exported here.
from emrchain.types.execution import MAX_STATE_KEY_BYTES as MAX_STATE_KEY_BYTES
from emrchain.types.execution import MAX_STATE_VALUE_BYTES as MAX_STATE_VALUE_BYTES
from emrchain.types.execution import StateLimitError as StateLimitError
from emrchain.types.execution import check_key as check_key
from emrchain.types.execution import check_value as check_value

DEFAULT_MAX_PENDING_WRITES = 1_000_000
"""Default cap on the distinct keys one overlay may hold before it refuses more writes."""


@runtime_checkable
class StateView(Protocol):
    """Read-only access to application state."""

    def get(self, key: bytes) -> bytes | None:
        """The value stored under `key`, or None if there is none."""
        ...


@runtime_checkable
class CommittedState(StateView, Protocol):
    """The last committed state, together with the height and app hash it corresponds to."""

    def last_height(self) -> int:
        """Height of the last executed block (0 after genesis)."""
        ...

    def last_app_hash(self) -> bytes:
        """App hash after the last executed block (the genesis app hash at height 0)."""
        ...


def read_u64(view: StateView, key: bytes) -> int:
    """A u64 state value (a nonce, an epoch, a counter), 0 when absent."""
    raw = view.get(key)
    return 0 if raw is None else int.from_bytes(raw, "big")


class ReadOnceView:
    """Reads of a base view that does not change while this object is in use, each key read
    from the base at most once.

    Why: a block's transactions read the same committed entries again and again (a sender's
    key index and member entry, once per transaction it signs), and the node's committed state
    is LevelDB, where each read is a prefixed key, two calls and a lookup. Execution wraps the
    committed view in one for the duration of one block only — it is created and dropped by
    `execute_block`, and nothing commits in between — so it cannot outlive the state it saw.
    """

    __slots__ = ("_base", "_values")

    def __init__(self, base: StateView) -> None:
        self._base = base
        self._values: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        values = self._values
        if key in values:
            return values[key]
        value = values[key] = self._base.get(key)
        return value

    @property
    def values_read(self) -> Mapping[bytes, bytes | None]:
        """Every key read so far with the base's value (None: absent)."""
        return self._values


ImpliedAbsent = Callable[[bytes, Mapping[bytes, bytes | None]], bool]
"""(a key a block wrote without reading it, the block's reads) -> True when an application
invariant proves the key was absent before the block."""


class PreviousValues(Mapping[bytes, bytes | None]):
    """The committed values before a block, as far as its execution knows them without another
    read: every key it read, and the keys the application's `implied_absent` rule proves were
    absent (answered, not listed: iteration and len cover the reads). Asked lazily, by the
    store's writer thread, for the block's undo record (`emrchain/store/undo.py`)."""

    __slots__ = ("_implied_absent", "_reads")

    def __init__(
        self, reads: Mapping[bytes, bytes | None], implied_absent: ImpliedAbsent | None
    ) -> None:
        self._reads = reads
        self._implied_absent = implied_absent

    def __getitem__(self, key: bytes) -> bytes | None:
        reads = self._reads
        if key in reads:
            return reads[key]
        implied = self._implied_absent
        if implied is not None and implied(key, reads):
            return None
        raise KeyError(key)

    def get(self, key: bytes, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key, _UNKNOWN) is not _UNKNOWN

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._reads)

    def __len__(self) -> int:
        return len(self._reads)


_UNKNOWN: Any = object()


class OverlayStateView:
    """Pending writes layered over a base view: reads see the writes first, then the base.

    `writes()` returns what would change in the base (None = delete). `merge_into()` pushes the
    writes down into a parent overlay, which is how a successful transaction joins its block.
    """

    __slots__ = ("_base", "_max_pending_writes", "_pending")

    def __init__(
        self, base: StateView, max_pending_writes: int = DEFAULT_MAX_PENDING_WRITES
    ) -> None:
        if not 1 <= max_pending_writes <= 100_000_000:
            raise ValueError("max_pending_writes must be within 1..100000000")
        self._base = base
        self._max_pending_writes = max_pending_writes
        self._pending: dict[bytes, bytes | None] = {}

    @property
    def base(self) -> StateView:
        return self._base

    @property
    def pending(self) -> dict[bytes, bytes | None]:
        """The pending writes themselves, not a copy (None = delete): for a writer that keeps
        this overlay's rules itself (`_core.AnchorPath`: checked keys and values, the cap)."""
        return self._pending

    @property
    def max_pending_writes(self) -> int:
        return self._max_pending_writes

    def get(self, key: bytes) -> bytes | None:
        # A transaction's overlay sits on the block's, which sits on committed state, and every
        # read walks down: iterate through the overlays instead of one call per level.
        view: StateView = self
        while type(view) is OverlayStateView:
            pending = view._pending
            if key in pending:
                return pending[key]
            view = view._base
        return view.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        # Every transaction writes a few keys: the common case (exact bytes within the limits)
        # is checked inline; anything else goes through check_key/check_value, which accept
        # bytes subclasses as before and raise the precise error.
        if not (
            type(key) is bytes
            and 0 < len(key) <= MAX_STATE_KEY_BYTES
            and type(value) is bytes
            and len(value) <= MAX_STATE_VALUE_BYTES
        ):
            check_key(key)
            check_value(value)
        pending = self._pending
        if key not in pending and len(pending) >= self._max_pending_writes:
            raise StateLimitError(f"more than {self._max_pending_writes} pending writes")
        pending[key] = value

    def delete(self, key: bytes) -> None:
        check_key(key)
        self._record(key, None)

    def _record(self, key: bytes, value: bytes | None) -> None:
        if key not in self._pending and len(self._pending) >= self._max_pending_writes:
            raise StateLimitError(f"more than {self._max_pending_writes} pending writes")
        self._pending[key] = value

    def __len__(self) -> int:
        return len(self._pending)

    def writes(self) -> dict[bytes, bytes | None]:
        """A copy of the pending writes (key -> value, None = delete)."""
        return dict(self._pending)

    def merge_into(self, parent: OverlayStateView) -> None:
        """Apply these writes to `parent` (normally this overlay's own base)."""
        # Keys and values were checked when first written; only the parent's cap is left, and
        # when even all-new keys stay within it one dict update does what per-key records do.
        pending = self._pending
        if len(parent._pending) + len(pending) <= parent._max_pending_writes:
            parent._pending.update(pending)
            return
        for key, value in pending.items():
            parent._record(key, value)
