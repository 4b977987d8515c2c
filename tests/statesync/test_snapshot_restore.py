"""A snapshot built from a real store restores into an empty one: the same state entries,
base height h+1, a consistent store (reconcile), and the next block commits on it as on the
original. The snapshot directory keeps only complete snapshots, the newest `keep`."""

from __future__ import annotations

from pathlib import Path

from emrchain.state.progress import executed_height
from emrchain.statesync.chunks import read_chunk
from emrchain.statesync.messages import (
    CommitRequest,
    CommitResponse,
    SetChange,
    SetChanges,
    SetChangesRequest,
    decode_statesync,
    encode_statesync,
)
from emrchain.statesync.snapshots import SnapshotStore, open_database_snapshot
from emrchain.store import BlockStore, RestoredHead, layout, reconcile
from tests.state.chain import ALICE, BOB, CHAIN_ID, ChainBuilder, register_tx
from tests.store.conftest import initialized_store, open_store


def state_entries(store: BlockStore) -> list[tuple[bytes, bytes]]:
    return list(store.database.db.iterator(prefix=layout.STATE))


def test_a_snapshot_restores_into_an_empty_store_that_then_commits_the_next_block(
    tmp_path: Path,
) -> None:
    chain = ChainBuilder()
    source = initialized_store(tmp_path / "source", chain)
    for label, sender in enumerate((ALICE, BOB, ALICE), start=1):
        built = chain.add_block([register_tx(sender, 1 + label // 3, label=label)])
        source.commit_block(built.block, built.commit, built.result)
    height = source.last_height()
    last_commit = source.commit(height)
    assert last_commit is not None
    snapshots = SnapshotStore(tmp_path / "snapshots", 2, source.limits)
    manifest = snapshots.build(open_database_snapshot(source.database.db), CHAIN_ID, height, 256)
    assert snapshots.heights() == [height] and len(manifest.chunk_hashes) > 1
    assert snapshots.manifest(height) == manifest
    assert manifest.block_id == source.last_block_id()
    assert manifest.app_hash == source.last_app_hash()

    target = open_store(tmp_path / "target")
    target.begin_restore()
    last = b""
    for index in range(len(manifest.chunk_hashes)):
        chunk = snapshots.chunk(height, index)
        assert chunk is not None
        entries = read_chunk(chunk, last)
        target.put_restored_entries(entries)
        last = entries[-1][0] if entries else last
    target.finish_restore(
        RestoredHead(
            CHAIN_ID,
            height,
            manifest.block_id,
            manifest.app_hash,
            (manifest.validators, manifest.next_validators, manifest.after_next_validators),
            last_commit,
        )
    )
    assert state_entries(target) == state_entries(source)
    assert target.commit(height) == last_commit  # the last commit of a block it proposes
    assert (source.base_height(), target.base_height()) == (1, height + 1)
    assert target.block(height) is None
    assert reconcile(target, application_height=executed_height).consistent
    assert reconcile(target, application_height=executed_height, full=True).consistent

    following = chain.add_block([register_tx(BOB, 2, label=9)])
    for store in (source, target):
        store.commit_block(following.block, following.commit, following.result)
    assert target.last_app_hash() == source.last_app_hash()
    assert state_entries(target) == state_entries(source)


def test_only_the_newest_complete_snapshots_are_kept(tmp_path: Path) -> None:
    chain = ChainBuilder()
    source = initialized_store(tmp_path / "source", chain)
    snapshots = SnapshotStore(tmp_path / "snapshots", 2, source.limits)
    (tmp_path / "snapshots" / f"{99:020d}.building").mkdir()  # a build cut short
    for label in range(1, 5):
        built = chain.add_block([register_tx(ALICE, label, label=label)])
        source.commit_block(built.block, built.commit, built.result)
        snapshots.build(
            open_database_snapshot(source.database.db), CHAIN_ID, source.last_height(), 1024
        )
    reopened = SnapshotStore(tmp_path / "snapshots", 2, source.limits)
    assert reopened.heights() == [3, 4] and reopened.latest_snapshot_height() == 4
    assert not list((tmp_path / "snapshots").glob("*.building"))
    assert reopened.chunk(1, 0) is None and reopened.manifest(2) is None


def test_set_change_proofs_round_trip_and_the_store_lists_the_changes(tmp_path: Path) -> None:
    chain = ChainBuilder()
    store = initialized_store(tmp_path / "source", chain)
    built = chain.add_block([register_tx(ALICE, 1, label=1)])
    store.commit_block(built.block, built.commit, built.result)
    assert store.validator_set_changes(0, 10) == []  # the genesis set is no change
    change = SetChange(built.block.header, built.commit, chain.genesis_validators)
    message = SetChanges((change, change))
    assert decode_statesync(encode_statesync(message), store.limits) == message
    for other in (
        SetChangesRequest(7),
        CommitRequest(1),
        CommitResponse(1, built.commit),
        CommitResponse(2, None),
    ):
        assert decode_statesync(encode_statesync(other), store.limits) == other
