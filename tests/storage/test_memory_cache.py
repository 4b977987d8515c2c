"""MemoryCache: LRU order, byte and entry bounds, TTL on an injected clock."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.storage.interfaces import Cache
from emrchain.storage.memory_cache import MemoryCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def make_cache(
    max_bytes: int = 1_000, max_entries: int = 100, ttl_ms: int = 10_000
) -> tuple[MemoryCache, FakeClock]:
    clock = FakeClock()
    return MemoryCache(max_bytes, max_entries, ttl_ms, clock), clock


def test_implements_the_protocol() -> None:
    assert isinstance(make_cache()[0], Cache)


def test_get_set_delete() -> None:
    async def scenario() -> None:
        cache, _ = make_cache()
        assert await cache.get("a") is None
        await cache.set("a", b"one")
        assert await cache.get("a") == b"one"
        await cache.set("a", b"uno")
        assert await cache.get("a") == b"uno" and cache.total_bytes == 3
        await cache.delete("a")
        await cache.delete("a")
        assert await cache.get("a") is None and cache.total_bytes == 0

    asyncio.run(scenario())


def test_entry_bound_evicts_least_recently_used() -> None:
    async def scenario() -> None:
        cache, _ = make_cache(max_entries=3)
        for key in "abc":
            await cache.set(key, key.encode())
        await cache.get("a")  # a is now the most recent; b the least
        await cache.set("d", b"d")
        assert await cache.get("b") is None
        assert [await cache.get(key) for key in "acd"] == [b"a", b"c", b"d"]
        assert len(cache) == 3

    asyncio.run(scenario())


def test_byte_bound_evicts_as_many_as_needed() -> None:
    async def scenario() -> None:
        cache, _ = make_cache(max_bytes=10)
        for key in "abcde":
            await cache.set(key, b"xx")
        assert cache.total_bytes == 10
        await cache.set("big", b"y" * 7)  # needs 7: evicts a, b, c, d
        assert cache.total_bytes == 9
        assert [await cache.get(key) for key in "abcd"] == [None] * 4
        assert await cache.get("e") == b"xx"
        assert await cache.get("big") == b"y" * 7

    asyncio.run(scenario())


def test_value_larger_than_the_cache_is_not_cached_and_evicts_nothing() -> None:
    async def scenario() -> None:
        cache, _ = make_cache(max_bytes=10)
        await cache.set("a", b"12345")
        await cache.set("huge", b"z" * 11)
        assert await cache.get("huge") is None
        assert await cache.get("a") == b"12345"

    asyncio.run(scenario())


def test_oversized_replacement_drops_the_old_value() -> None:
    async def scenario() -> None:
        cache, _ = make_cache(max_bytes=10)
        await cache.set("a", b"old")
        await cache.set("a", b"z" * 11)
        assert await cache.get("a") is None and cache.total_bytes == 0

    asyncio.run(scenario())


def test_ttl_expires_entries_and_reads_do_not_extend_it() -> None:
    async def scenario() -> None:
        cache, clock = make_cache(ttl_ms=100)
        await cache.set("a", b"1")
        clock.now += 99
        assert await cache.get("a") == b"1"
        clock.now += 1
        assert await cache.get("a") is None
        assert cache.total_bytes == 0 and len(cache) == 0
        await cache.set("a", b"2")  # setting again starts a new lifetime
        clock.now += 50
        assert await cache.get("a") == b"2"

    asyncio.run(scenario())


def test_expired_entries_make_room_before_live_ones_are_evicted() -> None:
    async def scenario() -> None:
        cache, clock = make_cache(max_entries=2, ttl_ms=100)
        await cache.set("old", b"1")
        clock.now += 60
        await cache.set("live", b"2")
        clock.now += 50  # "old" expired, "live" has 10 ms left
        await cache.set("new", b"3")
        assert await cache.get("live") == b"2"
        assert await cache.get("new") == b"3"

    asyncio.run(scenario())


@pytest.mark.parametrize("key", ["", "k" * 257, 7, b"bytes"])
def test_keys_are_bounded_strings(key: object) -> None:
    async def scenario() -> None:
        cache, _ = make_cache()
        with pytest.raises(ValueError, match="cache keys"):
            await cache.get(key)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="cache keys"):
            await cache.set(key, b"v")  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_values_are_bytes() -> None:
    async def scenario() -> None:
        cache, _ = make_cache()
        with pytest.raises(TypeError):
            await cache.set("a", "text")  # type: ignore[arg-type]

    asyncio.run(scenario())


@pytest.mark.parametrize(("max_bytes", "max_entries", "ttl_ms"), [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_bounds_must_be_positive(max_bytes: int, max_entries: int, ttl_ms: int) -> None:
    with pytest.raises(ValueError):
        MemoryCache(max_bytes, max_entries, ttl_ms)


def test_close_empties_the_cache() -> None:
    async def scenario() -> None:
        cache, _ = make_cache()
        await cache.set("a", b"1")
        await cache.close()
        assert await cache.get("a") is None and cache.total_bytes == 0

    asyncio.run(scenario())


operations = st.lists(
    st.tuples(
        st.sampled_from(["set", "get", "delete", "tick"]),
        st.sampled_from("abcdefgh"),
        st.integers(min_value=0, max_value=40),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_matches_a_simple_model(steps: list[tuple[str, str, int]]) -> None:
    """Against a plain list model: same answers, and the bounds always hold."""
    max_bytes, max_entries, ttl_ms = 64, 4, 30

    async def scenario() -> None:
        cache, clock = make_cache(max_bytes, max_entries, ttl_ms)
        model: list[tuple[str, bytes, int]] = []  # (key, value, expires), oldest use first
        for operation, key, number in steps:
            if operation == "tick":
                clock.now += number
                continue
            index = next((i for i, entry in enumerate(model) if entry[0] == key), None)
            if operation == "get":
                expected = None
                if index is not None:
                    entry = model.pop(index)
                    if clock.now < entry[2]:
                        model.append(entry)
                        expected = entry[1]
                assert await cache.get(key) == expected
            elif operation == "delete":
                if index is not None:
                    model.pop(index)
                await cache.delete(key)
            else:
                value = bytes([number]) * number
                if index is not None:
                    model.pop(index)
                if len(value) <= max_bytes:
                    while model and clock.now >= model[0][2]:
                        model.pop(0)
                    while model and (
                        len(model) >= max_entries
                        or sum(len(e[1]) for e in model) + len(value) > max_bytes
                    ):
                        model.pop(0)
                    model.append((key, value, clock.now + ttl_ms))
                await cache.set(key, value)
            assert len(cache) == len(model) <= max_entries
            assert cache.total_bytes == sum(len(e[1]) for e in model) <= max_bytes

    asyncio.run(scenario())
