"""The node's consensus WAL on disk (docs/spec/consensus.md §4.3): one file per height, appended
in order, a torn tail cut off at load, decided heights deleted."""

from __future__ import annotations

import hashlib
from pathlib import Path

from emrchain.consensus.wal import HEADER_BYTES, VoteEntry, read_segment, vote_record
from emrchain.crypto.keys import Ed25519Signer
from emrchain.store.consensus_wal import ConsensusWal, wal_path
from emrchain.types.vote import Vote, VoteType

CHAIN_ID = b"wal-test"
MAX_ENTRY_BYTES = 1 << 20
MAX_ENTRIES = 100


def vote(height: int, round_number: int) -> Vote:
    signer = Ed25519Signer(hashlib.sha256(b"wal-test-key").digest())
    block_id = hashlib.sha256(b"block %d" % height).digest()
    return Vote.create(signer, CHAIN_ID, VoteType.PREVOTE, height, round_number, block_id)


def entries(segment_bytes: bytes) -> list[Vote]:
    segment = read_segment(segment_bytes, MAX_ENTRY_BYTES, MAX_ENTRIES)
    return [entry.vote for entry in segment.entries if isinstance(entry, VoteEntry)]


def test_appended_records_load_back_in_order_per_height(tmp_path: Path) -> None:
    wal = ConsensusWal.open(tmp_path)
    wal.append(5, vote_record(vote(5, 0)), sync=True)
    wal.append(5, vote_record(vote(5, 1)), sync=False)
    wal.append(6, vote_record(vote(6, 0)), sync=False)
    wal.close()
    segments = ConsensusWal.open(tmp_path).load(MAX_ENTRY_BYTES, MAX_ENTRIES)
    assert sorted(segments) == [5, 6]
    assert entries(segments[5]) == [vote(5, 0), vote(5, 1)]
    assert entries(segments[6]) == [vote(6, 0)]


def test_a_torn_tail_is_cut_off_on_disk_and_appending_goes_on(tmp_path: Path) -> None:
    wal = ConsensusWal.open(tmp_path)
    wal.append(7, vote_record(vote(7, 0)), sync=True)
    wal.close()
    [path] = wal_path(tmp_path).iterdir()
    intact = path.stat().st_size
    with path.open("ab") as file:  # a crash in the middle of the next record
        file.write(vote_record(vote(7, 1))[:20])
    reopened = ConsensusWal.open(tmp_path)
    segments = reopened.load(MAX_ENTRY_BYTES, MAX_ENTRIES)
    assert entries(segments[7]) == [vote(7, 0)]
    assert path.stat().st_size == intact
    reopened.append(7, vote_record(vote(7, 2)), sync=True)
    reopened.close()
    again = ConsensusWal.open(tmp_path).load(MAX_ENTRY_BYTES, MAX_ENTRIES)
    assert entries(again[7]) == [vote(7, 0), vote(7, 2)]


def test_a_file_without_a_valid_header_is_removed(tmp_path: Path) -> None:
    wal = ConsensusWal.open(tmp_path)
    wal.append(3, vote_record(vote(3, 0)), sync=True)
    wal.close()
    [path] = wal_path(tmp_path).iterdir()
    path.write_bytes(b"\x00" * (HEADER_BYTES - 1))
    assert ConsensusWal.open(tmp_path).load(MAX_ENTRY_BYTES, MAX_ENTRIES) == {}
    assert not path.exists()


def test_discard_below_deletes_decided_heights_only(tmp_path: Path) -> None:
    wal = ConsensusWal.open(tmp_path)
    for height in (1, 2, 3):
        wal.append(height, vote_record(vote(height, 0)), sync=True)
    wal.discard_below(3)
    wal.close()
    assert sorted(ConsensusWal.open(tmp_path).load(MAX_ENTRY_BYTES, MAX_ENTRIES)) == [3]
