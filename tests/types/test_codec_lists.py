"""`Writer.var_bytes_u32_list` / `Reader.var_bytes_u32_list` (the one-pass framing of a block's
or a gossip batch's transactions) are the per-item `var_bytes(…, 4)` path, byte for byte and
error for error, on valid, truncated, oversized and corrupted inputs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.types.codec import DecodeError, EncodeError, Reader, Writer

ITEMS = st.lists(st.binary(max_size=300), max_size=30)


def per_item_encoding(items: list[bytes]) -> bytes:
    writer = Writer()
    for item in items:
        writer.var_bytes(item, 4)
    return writer.bytes()


def read(data: bytes, count: int, maximum: int, one_pass: bool) -> object:
    """(items, position) or the DecodeError's message."""
    reader = Reader(data, "Thing")
    try:
        if one_pass:
            items = reader.var_bytes_u32_list(count, maximum, "tx")
        else:
            items = tuple(reader.var_bytes(4, maximum, "tx") for _ in range(count))
    except DecodeError as error:
        return str(error)
    return items, reader.remaining


@settings(max_examples=400, deadline=None)
@given(ITEMS)
def test_encoding_is_the_per_item_encoding(items: list[bytes]) -> None:
    assert Writer().var_bytes_u32_list(items).bytes() == per_item_encoding(items)
    assert Writer().var_bytes_u32_list(tuple(items)).bytes() == per_item_encoding(items)


@settings(max_examples=600, deadline=None)
@given(
    ITEMS,
    st.integers(0, 34),
    st.integers(0, 400),
    st.integers(0, 10_000),
    st.binary(max_size=8),
    st.booleans(),
)
def test_decoding_is_the_per_item_decoding(
    items: list[bytes], count: int, maximum: int, cut: int, noise: bytes, corrupt: bool
) -> None:
    data = per_item_encoding(items)
    data = data[: cut % (len(data) + 1)] if corrupt else data + noise
    one_pass = read(data, count, maximum, one_pass=True)
    assert one_pass == read(data, count, maximum, one_pass=False)


def test_valid_list_round_trips_and_leaves_the_rest() -> None:
    data = per_item_encoding([b"a", b"", b"ccc"]) + b"tail"
    reader = Reader(data, "Thing")
    assert reader.var_bytes_u32_list(3, 10, "tx") == (b"a", b"", b"ccc")
    assert reader.remaining == 4


@pytest.mark.parametrize("bad", [bytearray(b"x"), "text", None, 5])
def test_encoding_refuses_non_bytes_like_the_per_item_path(bad: object) -> None:
    with pytest.raises(EncodeError, match="expected bytes"):
        Writer().var_bytes_u32_list([b"ok", bad])  # type: ignore[list-item]
    with pytest.raises(EncodeError, match="expected bytes"):
        Writer().var_bytes(bad, 4)  # type: ignore[arg-type]
