"""Key layout of the node's one LevelDB (`docs/spec/state.md` §5).

Each keyspace is one ASCII prefix byte; heights are u64 big-endian so keys sort by height.
"""

from __future__ import annotations

import struct

BLOCK = b"B"
"""B | height u64 -> Block encoding."""
BLOCK_HEIGHT = b"H"
"""H | block id -> height u64."""
COMMIT = b"C"
"""C | height u64 -> the CommitCertificate that committed that block."""
TX_LOCATION = b"T"
"""T | tx id -> height u64 | index u32."""
TX_RESULTS = b"R"
"""R | height u64 -> count u32 | per tx: code u16 | message bytes16 (UTF-8)."""
APP_HASH = b"A"
"""A | height u64 -> app hash after executing that height (0 = genesis)."""
VALIDATOR_SET = b"V"
"""V | height u64 -> ValidatorSet in force from that height until the next V entry."""
STATE = b"S"
"""S | application key -> application value."""
META_CHAIN = b"Mchain"
"""-> format u8 | chain_id bytes8."""
META_HEAD = b"Mhead"
"""-> last height u64 | last block id 32 | last app hash 32."""
META_BASE = b"Mbase"
"""-> base height u64: the lowest height whose block, commit and results are stored (absent:
1, nothing was pruned). Written in the same batch as the deletions below it; a state-synced
store starts above its snapshot's height (docs/spec/statesync.md §4)."""
UNDO = b"U"
"""U | height u64 -> the undo record of that height: the state values its block overwrote
(`store/undo.py`), kept for the last `[storage] undo_heights` heights for `emrchain rollback`."""
SIGNING_STATE = b"G"
"""-> the consensus signing guard's state (opaque bytes)."""
PENDING_EVIDENCE = b"E"
"""E | evidence hash -> evidence encoding: the node's evidence pool, not yet committed
(node-local, not consensus state; `emrchain/node/evidence_pool.py`)."""

STORE_FORMAT = 1

_U64 = struct.Struct(">Q")
HEAD = struct.Struct(">Q32s32s")
TX_LOCATION_VALUE = struct.Struct(">QI")


def u64(value: int) -> bytes:
    return _U64.pack(value)


def read_u64(raw: bytes) -> int:
    return _U64.unpack(raw)[0]


def block_key(height: int) -> bytes:
    return BLOCK + _U64.pack(height)


def block_height_key(block_id: bytes) -> bytes:
    return BLOCK_HEIGHT + block_id


def commit_key(height: int) -> bytes:
    return COMMIT + _U64.pack(height)


def tx_location_key(tx_id: bytes) -> bytes:
    return TX_LOCATION + tx_id


def tx_results_key(height: int) -> bytes:
    return TX_RESULTS + _U64.pack(height)


def app_hash_key(height: int) -> bytes:
    return APP_HASH + _U64.pack(height)


def validator_set_key(height: int) -> bytes:
    return VALIDATOR_SET + _U64.pack(height)


def state_key(app_key: bytes) -> bytes:
    return STATE + app_key


def pending_evidence_key(evidence_hash: bytes) -> bytes:
    return PENDING_EVIDENCE + evidence_hash


def undo_key(height: int) -> bytes:
    return UNDO + _U64.pack(height)
