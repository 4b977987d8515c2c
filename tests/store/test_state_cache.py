"""The committed state cache (`store/state_cache.py`): a state view with the cache returns
exactly what the database holds for every key at every step of a pipelined commit — before
the write, while it is in flight (either side of it for the keys the block writes, the old
value for the rest), after it, after an abandoned commit and when the cache overflows — and
serves the keys every block reads again without a database search.
Invariant (as for the absence filter): a committed state view returns exactly the database's
value for every key, cache or not."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from emrchain.state import keys
from emrchain.store import BlockStore, ChainDatabase
from emrchain.store.state_cache import MISSING, StateCache
from tests.state.chain import CHAIN_ID, CLIENTS, ChainBuilder, register_tx, signer
from tests.store.counting import CountingDatabase

SENDERS = list(CLIENTS[2:])  # six genesis admins besides ALICE and BOB


def _blocks(chain: ChainBuilder, count: int, seed: int) -> list:
    """Blocks of anchors by a few senders: their nonce keys are rewritten block after block."""
    rng = random.Random(seed)
    nonces = dict.fromkeys(range(len(SENDERS)), 0)
    built = []
    for height in range(count):
        txs = []
        for index in rng.sample(range(len(SENDERS)), rng.randint(1, len(SENDERS))):
            nonces[index] += 1
            txs.append(register_tx(SENDERS[index], nonces[index], label=height * 100 + index))
        built.append(chain.add_block(txs))
    return built


def _expect(store: BlockStore, state: dict[bytes, bytes], probes: list[bytes]) -> None:
    view = store.state_view()
    for key in probes:
        assert view.get(key) == state.get(key), key


@pytest.mark.parametrize("max_entries", [3, 10_000])  # overflowing all the time, and never
def test_reads_equal_the_database_at_every_step_of_pipelined_commits(
    tmp_path: Path, max_entries: int
) -> None:
    chain = ChainBuilder()
    store = BlockStore(ChainDatabase.open(tmp_path / "node"), cache=StateCache(max_entries))
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    states = [dict(chain.state.items())]
    blocks = _blocks(chain, 12, seed=max_entries)
    replay = ChainBuilder()
    for built in blocks:
        replay.add_block(built.block.txs)
        states.append(dict(replay.state.items()))
    never = [keys.nonce_key(signer(f"never/{index}").public_key) for index in range(3)]
    for height, built in enumerate(blocks, start=1):
        old, new = states[height - 1], states[height]
        probes = sorted(set(old) | set(new)) + never
        _expect(store, old, probes)  # fills the cache with the old values
        prepared = store.prepare_commit(built.block, built.commit, built.result)
        written = set(built.result.writes)
        unchanged = [key for key in probes if key not in written]
        _expect(store, old, probes)  # nothing written yet: the old values throughout
        store.write_prepared(prepared)
        view = store.state_view()
        for key in probes:
            assert view.get(key) == (new if key in written else old).get(key), key
        assert all(view.get(key) == old.get(key) for key in unchanged)
        store.finish_commit(prepared)
        _expect(store, new, probes)
    store.database.close()


def test_a_key_read_while_its_block_is_written_is_not_remembered_stale(tmp_path: Path) -> None:
    chain = ChainBuilder()
    store = BlockStore(ChainDatabase.open(tmp_path / "node"), cache=StateCache(1000))
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    built = chain.add_block([register_tx(SENDERS[0], 1, label=1)])
    nonce_key = keys.nonce_key(SENDERS[0].public_key)
    prepared = store.prepare_commit(built.block, built.commit, built.result)
    assert store.state_view().get(nonce_key) is None  # read before the write lands
    store.write_prepared(prepared)
    store.finish_commit(prepared)
    assert store.state_view().get(nonce_key) == (1).to_bytes(8, "big")
    store.database.close()


def test_an_abandoned_commit_leaves_the_cache_exact(tmp_path: Path) -> None:
    chain = ChainBuilder()
    store = BlockStore(ChainDatabase.open(tmp_path / "node"), cache=StateCache(1000))
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    first, second = _blocks(chain, 2, seed=7)
    store.commit_block(first.block, first.commit, first.result)
    after_first = {key: store.state_view().get(key) for key in second.result.writes}
    prepared = store.prepare_commit(second.block, second.commit, second.result)
    store.abandon_commit(prepared)  # as if the write had failed before reaching LevelDB
    view = store.state_view()
    assert {key: view.get(key) for key in second.result.writes} == after_first
    store.commit_block(second.block, second.commit, second.result)
    view = store.state_view()
    for key, value in chain.state.items():
        assert view.get(key) == value
    store.database.close()


def test_the_keys_each_block_reads_again_come_from_the_cache(tmp_path: Path) -> None:
    chain = ChainBuilder()
    cache = StateCache(1000)
    store = BlockStore(ChainDatabase.open(tmp_path / "node"), cache=cache)
    store.initialize(CHAIN_ID, chain.genesis_validators, chain.genesis)
    nonce_keys = [keys.nonce_key(sender.public_key) for sender in SENDERS]
    for built in _blocks(chain, 4, seed=3):
        for key in nonce_keys:
            store.state_view().get(key)
        store.commit_block(built.block, built.commit, built.result)
    counting = CountingDatabase(store.database)
    view = store.state_view()
    assert [view.get(key) for key in nonce_keys] == [chain.state.get(key) for key in nonce_keys]
    assert counting.reads == 0  # refreshed at each commit, never read from LevelDB again
    assert cache.hits > 0
    store.database.close()


def test_cache_bounds_and_arguments() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        StateCache(0)
    cache = StateCache(2)
    cache.remember(b"a", b"1")
    cache.remember(b"b", None)
    assert cache.lookup(b"b") is None and cache.lookup(b"z") is MISSING
    cache.remember(b"c", b"3")  # full: emptied, then holds the newest
    assert len(cache) == 1 and cache.lookup(b"a") is MISSING and cache.lookup(b"c") == b"3"
    refreshed = cache.begin_commit({b"c": b"new", b"d": b"x"})
    assert refreshed == ((b"c", b"new"),) and cache.lookup(b"c") is MISSING
    cache.remember(b"e", b"mid-write")  # not remembered while a commit is in flight
    cache.finish_commit(refreshed)
    assert cache.lookup(b"e") is MISSING and cache.lookup(b"c") == b"new"
    assert cache.lookup(b"d") is MISSING  # never held: not added by the commit
