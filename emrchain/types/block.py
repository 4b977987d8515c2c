"""Block header and block.

Header: version u8 | chain_id (u8 len + bytes) | height u64 | time_ms u64 | previous_block_id 32 |
last_commit_hash 32 | tx_root 32 | tx_count u32 | app_hash 32 | validators_hash 32 |
next_validators_hash 32 | evidence_hash 32 | proposer 32.
The block id is SHA-256 of the header encoding. `app_hash` is the application state after the
previous block (execution lags one block, as in Tendermint, so it can be pipelined).

Block: header | tx count u32 | count × (u32 len + tx) | has_last_commit u8 (0/1) | commit |
evidence count u16 | evidence (each item begins with its kind, `evidence.py`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from emrchain import _core
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.commit import CommitCertificate
from emrchain.types.evidence import Evidence, read_evidence
from emrchain.types.limits import DEFAULT_LIMITS, Limits

BLOCK_VERSION = 1
ZERO_HASH = bytes(32)
EMPTY_MERKLE_ROOT = hashlib.sha256(b"").digest()


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: bytes
    height: int
    time_ms: int
    previous_block_id: bytes
    last_commit_hash: bytes
    tx_root: bytes
    tx_count: int
    app_hash: bytes
    validators_hash: bytes
    next_validators_hash: bytes
    evidence_hash: bytes
    proposer: bytes
    version: int = BLOCK_VERSION

    _HASH_FIELDS = (
        "previous_block_id",
        "last_commit_hash",
        "tx_root",
        "app_hash",
        "validators_hash",
        "next_validators_hash",
        "evidence_hash",
        "proposer",
    )

    def validate_basic(self) -> None:
        if self.version != BLOCK_VERSION:
            raise ValueError(f"unsupported block version {self.version}")
        if not 1 <= len(self.chain_id) <= 50:
            raise ValueError("chain id must be 1..50 bytes")
        if not 1 <= self.height < 1 << 63:
            raise ValueError("height must be within 1..2^63-1")
        if not 0 <= self.time_ms < 1 << 63:
            raise ValueError("time_ms must be within 0..2^63-1")
        if not 0 <= self.tx_count <= 0xFFFFFFFF:
            raise ValueError("tx_count must fit u32")
        for name in self._HASH_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise ValueError(f"{name} must be 32 bytes")
        first = self.height == 1
        if first != (self.previous_block_id == ZERO_HASH):
            raise ValueError("previous_block_id is all zeros exactly at height 1")
        if first != (self.last_commit_hash == ZERO_HASH):
            raise ValueError("last_commit_hash is all zeros exactly at height 1")

    def encode(self) -> bytes:
        writer = (
            Writer()
            .u8(self.version)
            .var_bytes(self.chain_id, 1)
            .u64(self.height)
            .u64(self.time_ms)
            .fixed(self.previous_block_id, 32)
            .fixed(self.last_commit_hash, 32)
            .fixed(self.tx_root, 32)
            .u32(self.tx_count)
        )
        for name in self._HASH_FIELDS[3:]:
            writer.fixed(getattr(self, name), 32)
        return writer.bytes()

    @classmethod
    def read(cls, reader: Reader) -> BlockHeader:
        version = reader.u8("version")
        if version != BLOCK_VERSION:
            raise DecodeError(f"BlockHeader.version: unsupported version {version}")
        header = cls(
            chain_id=reader.var_bytes(1, 50, "chain_id"),
            height=reader.u64("height"),
            time_ms=reader.u64("time_ms"),
            previous_block_id=reader.fixed(32, "previous_block_id"),
            last_commit_hash=reader.fixed(32, "last_commit_hash"),
            tx_root=reader.fixed(32, "tx_root"),
            tx_count=reader.u32("tx_count"),
            app_hash=reader.fixed(32, "app_hash"),
            validators_hash=reader.fixed(32, "validators_hash"),
            next_validators_hash=reader.fixed(32, "next_validators_hash"),
            evidence_hash=reader.fixed(32, "evidence_hash"),
            proposer=reader.fixed(32, "proposer"),
        )
        try:
            header.validate_basic()
        except ValueError as error:
            raise DecodeError(f"BlockHeader: {error}") from None
        return header

    @classmethod
    def decode(cls, data: bytes) -> BlockHeader:
        reader = Reader(data, "BlockHeader")
        header = cls.read(reader)
        reader.finish()
        return header

    @property
    def block_id(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()


def tx_ids(txs: tuple[bytes, ...] | list[bytes]) -> list[bytes]:
    """SHA-256 of each transaction (the compiled core hashes the batch without the GIL)."""
    ids: list[bytes] = _core.tx_ids(txs)
    return ids


def evidence_root(evidence: tuple[Evidence, ...]) -> bytes:
    root: bytes = _core.merkle_root([item.encode() for item in evidence])
    return root


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    txs: tuple[bytes, ...]
    last_commit: CommitCertificate | None
    evidence: tuple[Evidence, ...] = ()
    _tx_ids: tuple[bytes, ...] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )
    """Computed once: a node needs a block's tx ids for its root check (at decode, validation
    and commit), its index entries and the mempool update — five hashings of every
    transaction per block before this cache."""

    @classmethod
    def with_known_tx_ids(
        cls,
        header: BlockHeader,
        txs: tuple[bytes, ...],
        last_commit: CommitCertificate | None,
        evidence: tuple[Evidence, ...],
        tx_ids: tuple[bytes, ...],
    ) -> Block:
        """A block whose tx ids the caller already computed with `tx_ids` (the proposer: its
        mempool hashed every transaction at admission). They are trusted, not checked: a wrong
        one makes a tx_root that every other validator's own hashing refuses."""
        if len(tx_ids) != len(txs):
            raise ValueError(f"{len(tx_ids)} tx ids for {len(txs)} transactions")
        block = cls(header, txs, last_commit, evidence)
        object.__setattr__(block, "_tx_ids", tx_ids)  # the cache `tx_ids` would fill
        return block

    @property
    def block_id(self) -> bytes:
        return self.header.block_id

    @property
    def tx_ids(self) -> tuple[bytes, ...]:
        """SHA-256 of each transaction, in block order (computed on first use)."""
        ids = self._tx_ids
        if ids is None:
            ids = tuple(_core.tx_ids(self.txs))
            object.__setattr__(self, "_tx_ids", ids)  # a cache of immutable fields
        return ids

    @property
    def height(self) -> int:
        return self.header.height

    def validate_basic(self, limits: Limits = DEFAULT_LIMITS) -> None:
        """Internal consistency: counts, sizes, roots and the link to the last commit."""
        header = self.header
        header.validate_basic()
        if len(self.txs) != header.tx_count:
            raise ValueError("tx_count does not match the transactions")
        if len(self.txs) > limits.max_block_txs:
            raise ValueError(f"more than {limits.max_block_txs} transactions")
        total = 0
        for tx in self.txs:
            if not isinstance(tx, bytes) or not 1 <= len(tx) <= limits.max_tx_bytes:
                raise ValueError(f"a transaction is empty or longer than {limits.max_tx_bytes}")
            total += len(tx)
        if total > limits.max_block_bytes:
            raise ValueError(f"transactions exceed {limits.max_block_bytes} bytes")
        if _core.merkle_root(self.tx_ids) != header.tx_root:
            raise ValueError("tx_root does not match the transactions")
        if len(self.evidence) > limits.max_evidence_per_block:
            raise ValueError(f"more than {limits.max_evidence_per_block} evidence items")
        for item in self.evidence:
            item.validate_basic()
        if evidence_root(self.evidence) != header.evidence_hash:
            raise ValueError("evidence_hash does not match the evidence")
        if header.height == 1:
            if self.last_commit is not None:
                raise ValueError("the first block has no last commit")
            return
        if self.last_commit is None:
            raise ValueError("a block after height 1 carries the previous block's commit")
        self.last_commit.validate_basic(limits)
        if self.last_commit.height != header.height - 1:
            raise ValueError("last commit is not for the previous height")
        if self.last_commit.block_id != header.previous_block_id:
            raise ValueError("last commit is not for the previous block")
        if self.last_commit.hash != header.last_commit_hash:
            raise ValueError("last_commit_hash does not match the last commit")

    def encode(self) -> bytes:
        writer = Writer().raw(self.header.encode()).u32(len(self.txs))
        writer.var_bytes_u32_list(self.txs)
        if self.last_commit is None:
            writer.u8(0)
        else:
            writer.u8(1).raw(self.last_commit.encode())
        writer.u16(len(self.evidence))
        for item in self.evidence:
            writer.raw(item.encode())
        return writer.bytes()

    @classmethod
    def decode(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Block:
        if len(data) > limits.max_block_bytes + 1024 * 1024:
            raise DecodeError("Block: encoding exceeds max_block_bytes plus overhead")
        reader = Reader(data, "Block")
        header = BlockHeader.read(reader)
        count = reader.count(4, limits.max_block_txs, "tx_count")
        txs = reader.var_bytes_u32_list(count, limits.max_tx_bytes, "tx")
        has_commit = reader.u8("has_last_commit")
        if has_commit not in (0, 1):
            raise DecodeError("Block.has_last_commit: must be 0 or 1")
        last_commit = CommitCertificate.read(reader, limits) if has_commit else None
        evidence_count = reader.count(2, limits.max_evidence_per_block, "evidence_count")
        evidence = tuple(read_evidence(reader) for _ in range(evidence_count))
        reader.finish()
        block = cls(header, txs, last_commit, evidence)
        try:
            block.validate_basic(limits)
        except ValueError as error:
            raise DecodeError(f"Block: {error}") from None
        return block
