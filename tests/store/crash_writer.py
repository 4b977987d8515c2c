"""Child process of the crash test: execute and commit blocks from a file until killed.

Usage: python -m tests.store.crash_writer <home> <chain id> <blocks file>
The blocks file holds (u32 length | block | u32 length | commit) records for heights 1..N.
It resumes after the store's last height and prints each committed height.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from emrchain.state.emr import EmrApplication
from emrchain.store import BlockStore, ChainDatabase
from emrchain.types import Block, CommitCertificate

_U32 = struct.Struct(">I")


def read_records(path: Path) -> list[tuple[bytes, bytes]]:
    data = path.read_bytes()
    records, position = [], 0
    while position < len(data):
        parts = []
        for _ in range(2):
            (length,) = _U32.unpack_from(data, position)
            parts.append(data[position + 4 : position + 4 + length])
            position += 4 + length
        records.append((parts[0], parts[1]))
    return records


def write_records(path: Path, records: list[tuple[bytes, bytes]]) -> None:
    path.write_bytes(b"".join(_U32.pack(len(b)) + b + _U32.pack(len(c)) + c for b, c in records))


def main(home: str, chain_id: bytes, blocks_file: str) -> None:
    store = BlockStore(ChainDatabase.open(home))
    app = EmrApplication(chain_id, store.state_view())
    records = read_records(Path(blocks_file))
    for height in range(store.last_height() + 1, len(records) + 1):
        block_bytes, commit_bytes = records[height - 1]
        block = Block.decode(block_bytes)
        result = app.execute_block(block, store.state_view())
        store.commit_block(block, CommitCertificate.decode(commit_bytes), result)
        print(height, flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].encode(), sys.argv[3])
