"""Signed transactions for a load run, prepared before the measured window.

Signing is the clients' cost, not the chain's: it runs ahead of time in worker processes
(multiprocessing 'spawn' context: no forked copy of an event loop or of open sockets), and the
result can be cached on disk, since the workload is deterministic.

The load is split into lanes. A lane owns its senders (no other lane signs for them) and
submits its batches one at a time, in order, to one node: the mempool admits only a sender's
next nonce, so a sender's transactions must arrive in order, which concurrent requests to one
node would not guarantee. All lanes draw from one workload seed (`emrchain.devnet.workload`): lane l
signs for senders l * senders_per_lane ... (l + 1) * senders_per_lane - 1, so registering the
workload's first lanes x senders_per_lane senders makes every anchor executable.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emrchain import schema
from emrchain.devnet.workload import anchor_fields, sender_key
from emrchain.rpc.binary import encode_batch
from emrchain.types.transaction import Transaction

CHUNK_TXS = 4_000
"""Transactions per signing task: large enough to amortise the process hop, small enough to
spread over the workers."""
CACHE_FORMAT = 2
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What to sign: `lanes` lanes of `senders_per_lane` senders each, `txs_per_lane`
    transactions per lane (round-robin over its senders), cut into batches of `batch_size`."""

    chain_id: bytes
    seed: int
    lanes: int
    senders_per_lane: int
    txs_per_lane: int
    batch_size: int

    @property
    def senders(self) -> int:
        """Workload senders used, all lanes together (the ones to register)."""
        return self.lanes * self.senders_per_lane

    def first_sender(self, lane: int) -> int:
        return lane * self.senders_per_lane

    def cache_key(self) -> str:
        text = repr((CACHE_FORMAT, *(getattr(self, name) for name in self.__slots__)))
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Batch:
    """One request body and the ids of its transactions (32 bytes each, concatenated)."""

    body: bytes
    tx_ids: bytes
    count: int

    def ids(self) -> list[bytes]:
        blob = self.tx_ids
        return [blob[start : start + 32] for start in range(0, len(blob), 32)]


SigningTask = tuple[bytes, int, int, int, int, int]
"""(chain id, seed, first sender index, senders, first nonce, count)."""


def _sign_chunk(task: SigningTask) -> list[bytes]:
    """Worker: `count` anchors round-robin over senders first_sender .. first_sender +
    senders - 1 of the workload, nonces from `first_nonce` (as `workload.anchor_transactions`
    does for senders 0 .. senders - 1)."""
    chain_id, seed, first_sender, senders, first_nonce, count = task
    indexes = range(first_sender, first_sender + min(senders, max(count, 1)))
    keys = [(index, sender_key(seed, index)) for index in indexes]
    txs = []
    for position in range(count):
        index, key = keys[position % len(keys)]
        nonce = first_nonce + position // len(keys)
        fields = anchor_fields(seed, index, nonce)
        tx = Transaction.create(key, chain_id, schema.TxKind.ANCHOR_RECORD, nonce, fields)
        txs.append(tx.encode())
    return txs


def _tasks(plan: LoadPlan) -> Iterator[tuple[int, SigningTask]]:
    """(lane, signing task) pairs, each lane's chunks in nonce order. A chunk holds whole
    rounds over the lane's senders, so its nonces continue exactly where the last one ended."""
    senders = plan.senders_per_lane
    rounds_per_chunk = max(1, CHUNK_TXS // senders)
    for lane in range(plan.lanes):
        done = 0
        while done < plan.txs_per_lane:
            count = min(rounds_per_chunk * senders, plan.txs_per_lane - done)
            first_nonce = 1 + done // senders
            first_sender = plan.first_sender(lane)
            yield lane, (plan.chain_id, plan.seed, first_sender, senders, first_nonce, count)
            done += count


def sign_lanes(plan: LoadPlan, workers: int) -> list[list[bytes]]:
    """Every lane's transactions in submission order, signed by `workers` processes."""
    tasks = list(_tasks(plan))
    lanes: list[list[bytes]] = [[] for _ in range(plan.lanes)]
    if workers <= 1:
        for lane, task in tasks:
            lanes[lane].extend(_sign_chunk(task))
        return lanes
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        chunks = pool.imap(_sign_chunk, [task for _, task in tasks], chunksize=1)
        for (lane, _), txs in zip(tasks, chunks, strict=True):
            lanes[lane].extend(txs)
    return lanes


def batches_of(txs: list[bytes], batch_size: int) -> list[Batch]:
    """Pre-encoded request bodies (binary route) with their tx ids."""
    batches = []
    for start in range(0, len(txs), batch_size):
        chunk = txs[start : start + batch_size]
        ids = b"".join(hashlib.sha256(tx).digest() for tx in chunk)
        batches.append(Batch(encode_batch(chunk), ids, len(chunk)))
    return batches


def _write_cache(path: Path, lanes: list[list[bytes]]) -> None:
    """`lanes u32 | per lane: count u32 | count × (length u32 | tx)` (plain framing, not
    pickle: loading a file must never run code)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as stream:
        stream.write(_U32.pack(len(lanes)))
        for txs in lanes:
            stream.write(encode_batch(txs) if txs else _U32.pack(0))
    partial.replace(path)


def _read_cache(path: Path, plan: LoadPlan) -> list[list[bytes]] | None:
    """The cached lanes, or None when the file is missing or does not hold `plan`."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    lanes: list[list[bytes]] = []
    offset = 0
    try:
        (lane_count,) = _U32.unpack_from(data, offset)
        offset += 4
        for _ in range(lane_count):
            (count,) = _U32.unpack_from(data, offset)
            offset += 4
            txs = []
            for _ in range(count):
                (length,) = _U32.unpack_from(data, offset)
                offset += 4
                txs.append(data[offset : offset + length])
                offset += length
            lanes.append(txs)
    except struct.error:
        return None
    expected = [plan.txs_per_lane] * plan.lanes
    if offset != len(data) or [len(txs) for txs in lanes] != expected:
        return None  # damaged or foreign: simply signed again
    return lanes


def prepare(plan: LoadPlan, workers: int, cache_dir: Path | None) -> list[list[Batch]]:
    """Every lane's batches, from the cache when it holds this plan, else signed now."""
    cache_file = cache_dir / f"load-{plan.cache_key()}.bin" if cache_dir else None
    lanes = _read_cache(cache_file, plan) if cache_file is not None else None
    if lanes is None:
        lanes = sign_lanes(plan, workers)
        if cache_file is not None:
            _write_cache(cache_file, lanes)
    return [batches_of(txs, plan.batch_size) for txs in lanes]
