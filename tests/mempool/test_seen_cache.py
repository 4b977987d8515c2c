"""SeenCache (`mempool/seen.py`): bounded, returns the latest state of every id it holds, and
keeps every id used within the last half of its capacity (two generations: the bound on what
a rotation may forget). Batch calls behave exactly like the single ones in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.mempool.seen import SeenCache, SeenState

ids = st.integers(0, 40).map(lambda n: n.to_bytes(32, "big"))
states = st.sampled_from(list(SeenState))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("remember"), ids, states),
        st.tuples(st.just("touch"), ids, st.none()),
        st.tuples(st.just("remember_all"), st.lists(ids, max_size=6), states),
        st.tuples(st.just("touch_all"), st.lists(ids, max_size=6), st.none()),
    ),
    max_size=120,
)


def _run(cache: SeenCache, steps: list) -> None:
    for name, argument, state in steps:
        if name == "remember":
            cache.remember(argument, state)
        elif name == "touch":
            cache.touch(argument)
        elif name == "remember_all":
            cache.remember_all(argument, state)
        else:
            cache.touch_all(argument)


@settings(max_examples=300, deadline=None)
@given(max_entries=st.integers(1, 12), steps=operations)
def test_bounded_latest_state_and_recent_ids_kept(max_entries: int, steps: list) -> None:
    cache = SeenCache(max_entries)
    latest: dict[bytes, SeenState] = {}
    uses: list[bytes] = []  # every remember/touch of a held id, in order
    for name, argument, state in steps:
        for tx_id in argument if isinstance(argument, list) else [argument]:
            if name.startswith("remember"):
                cache.remember(tx_id, state)
                latest[tx_id] = state
                uses.append(tx_id)
            else:
                held = cache.get(tx_id) is not None
                cache.touch(tx_id)
                if held:
                    uses.append(tx_id)
            assert len(cache) <= max_entries
        for tx_id in set(latest):
            got = cache.get(tx_id)
            assert got is None or got == latest[tx_id]  # never a stale state
    # The ids of the last max_entries // 2 distinct uses (at least the newest one) are held.
    recent: list[bytes] = []
    for tx_id in reversed(uses):
        if tx_id not in recent:
            recent.append(tx_id)
        if len(recent) == max(1, max_entries // 2):
            break
    assert all(cache.get(tx_id) == latest[tx_id] for tx_id in recent)
    everything = sorted(latest)
    assert cache.get_many(everything) == [cache.get(tx_id) for tx_id in everything]


@settings(max_examples=200, deadline=None)
@given(max_entries=st.integers(1, 12), steps=operations)
def test_batch_calls_equal_single_calls_in_order(max_entries: int, steps: list) -> None:
    batched, single = SeenCache(max_entries), SeenCache(max_entries)
    _run(batched, steps)
    for name, argument, state in steps:
        for tx_id in argument if isinstance(argument, list) else [argument]:
            if name.startswith("remember"):
                single.remember(tx_id, state)
            else:
                single.touch(tx_id)
    universe = [n.to_bytes(32, "big") for n in range(41)]
    assert [batched.get(i) for i in universe] == [single.get(i) for i in universe]
    assert len(batched) == len(single)
