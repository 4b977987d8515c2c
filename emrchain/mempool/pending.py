"""The pending set: admitted transactions indexed by id, by sender (in nonce order) and by
admission order. It enforces no admission rule itself; it keeps the structure the rules rely on.

A sender's pending transactions always hold the nonces committed + 1, committed + 2, ... without
a gap (insertion only appends the next nonce; removal cuts a queue's head after a commit or its
tail after a failed recheck), so a queue is a deque and a nonce is implied by its position.

The admission log lists entries by sequence number. Because a sender's nonce n + 1 can only be
admitted after its nonce n, admission order is also a valid execution order, which is what
reaping for a proposal and gossiping to peers walk.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Collection, Hashable, Iterator
from operator import attrgetter

from emrchain.invariants import InvariantViolation
from emrchain.schema import TxKind
from emrchain.types.envelope import CHAIN_ID_LENGTH_OFFSET, KIND_OFFSET

COMPACT_MINIMUM_ENTRIES = 1_024
"""The log is compacted once its removed entries outnumber its live ones by this margin."""


class PendingTx:
    """One admitted transaction. `live` turns False when it leaves the set; the admission log
    keeps such entries until compaction and skips them (so a re-admitted id is never listed
    twice: its old entry stays dead)."""

    __slots__ = ("live", "nonce", "origin", "raw", "sender", "sequence", "tx_id")

    def __init__(
        self,
        tx_id: bytes,
        raw: bytes,
        sender: bytes,
        nonce: int,
        sequence: int,
        origin: Hashable | None,
    ) -> None:
        self.tx_id = tx_id
        self.raw = raw
        self.sender = sender
        self.nonce = nonce
        self.sequence = sequence
        self.origin = origin
        self.live = True


class SenderQueue:
    """One sender's pending transactions: `entries[i].nonce == committed_nonce + 1 + i`."""

    __slots__ = ("committed_nonce", "entries")

    def __init__(self, committed_nonce: int) -> None:
        self.committed_nonce = committed_nonce
        self.entries: deque[PendingTx] = deque()


_SEQUENCE = attrgetter("sequence")


class PendingSet:
    """Pending transactions by id, by sender and by admission order, with their byte total.

    The admission log is compacted when removed entries dominate, so its length stays below
    2 * live entries + COMPACT_MINIMUM_ENTRIES: bounded by whatever bounds the live set.
    """

    __slots__ = ("_log", "access_events", "by_id", "latest_sequence", "senders", "total_bytes")

    def __init__(self) -> None:
        self.by_id: dict[bytes, PendingTx] = {}
        self.senders: dict[bytes, SenderQueue] = {}
        self.total_bytes = 0
        self.latest_sequence = 0
        self.access_events = 0
        """Pending ACCESS_EVENT transactions: each is a reader waiting for its block."""
        self._log: list[PendingTx] = []

    def __len__(self) -> int:
        return len(self.by_id)

    @property
    def log_entries(self) -> int:
        return len(self._log)

    def append(
        self,
        tx_id: bytes,
        raw: bytes,
        sender: bytes,
        committed_nonce: int,
        origin: Hashable | None,
    ) -> None:
        """Add `raw` as the sender's next nonce; `committed_nonce` is used only when the sender
        has no queue yet. The caller has checked the nonce and the limits."""
        queue = self.senders.get(sender)
        if queue is None:
            queue = self.senders[sender] = SenderQueue(committed_nonce)
        self.latest_sequence += 1
        nonce = queue.committed_nonce + len(queue.entries) + 1
        entry = PendingTx(tx_id, raw, sender, nonce, self.latest_sequence, origin)
        queue.entries.append(entry)
        self.by_id[tx_id] = entry
        self._log.append(entry)
        self.total_bytes += len(raw)
        if _is_access_event(raw):
            self.access_events += 1

    def advance_committed(
        self, sender: bytes, committed_nonce: int, committed_ids: Collection[bytes]
    ) -> tuple[int, list[bytes]]:
        """Set the sender's committed nonce and drop its entries at or below it.

        Returns (how many dropped entries are in `committed_ids`, ids of the other dropped ones:
        stale, their nonce was used by another transaction).
        """
        queue = self.senders[sender]
        committed = 0
        stale: list[bytes] = []
        for _ in range(min(committed_nonce - queue.committed_nonce, len(queue.entries))):
            entry = queue.entries.popleft()
            self._forget(entry)
            if entry.tx_id in committed_ids:
                committed += 1
            else:
                stale.append(entry.tx_id)
        queue.committed_nonce = committed_nonce
        if not queue.entries:
            del self.senders[sender]
        else:
            _check_contiguous(sender, queue)
        return committed, stale

    def cut_from(self, entry: PendingTx) -> list[bytes]:
        """Drop `entry` and every later nonce of its sender; return the dropped ids."""
        queue = self.senders[entry.sender]
        keep = entry.nonce - queue.committed_nonce - 1
        dropped: list[bytes] = []
        while len(queue.entries) > keep:
            removed = queue.entries.pop()
            self._forget(removed)
            dropped.append(removed.tx_id)
        if not queue.entries:
            del self.senders[entry.sender]
        else:
            _check_contiguous(entry.sender, queue)
        return dropped

    def _forget(self, entry: PendingTx) -> None:
        entry.live = False
        del self.by_id[entry.tx_id]
        self.total_bytes -= len(entry.raw)
        if _is_access_event(entry.raw):
            self.access_events -= 1

    def live_after(self, cursor: int) -> Iterator[PendingTx]:
        """Live entries with sequence > `cursor`, oldest first. Entries removed while iterating
        are skipped; nothing may be appended meanwhile."""
        log = self._log
        for position in range(bisect_right(log, cursor, key=_SEQUENCE), len(log)):
            entry = log[position]
            if entry.live:
                yield entry

    def live_of(self, senders: Collection[bytes]) -> Iterator[PendingTx]:
        """Live entries of `senders`, each sender's in nonce order (senders without pending
        entries are skipped). Entries removed while iterating are skipped; nothing may be
        appended meanwhile."""
        for sender in senders:
            queue = self.senders.get(sender)
            if queue is None:
                continue
            for entry in tuple(queue.entries):  # a cut may shorten the queue meanwhile
                if entry.live:
                    yield entry

    def compact_if_sparse(self) -> None:
        """Drop removed entries from the log once they dominate."""
        if len(self._log) > 2 * len(self.by_id) + COMPACT_MINIMUM_ENTRIES:
            self._log = [entry for entry in self._log if entry.live]


def _check_contiguous(sender: bytes, queue: SenderQueue) -> None:
    """A sender's pending nonces run from its committed nonce + 1 without a gap (the module
    docstring). Appends only ever add the next nonce, so checking both ends after a removal
    covers the whole queue in O(1)."""
    entries = queue.entries
    if (
        entries[0].nonce != queue.committed_nonce + 1
        or entries[-1].nonce != queue.committed_nonce + len(entries)
    ):
        raise InvariantViolation(
            "a sender's pending nonces are contiguous from its committed nonce + 1",
            f"sender {sender.hex()[:16]}: committed {queue.committed_nonce}, pending "
            f"{entries[0].nonce}..{entries[-1].nonce} ({len(entries)} entries)",
        )


def _is_access_event(raw: bytes) -> bool:
    # envelope.kind, inlined: twice in the life of every pending transaction.
    return raw[KIND_OFFSET + raw[CHAIN_ID_LENGTH_OFFSET]] == TxKind.ACCESS_EVENT
