"""The msgpack helper: every configured limit refuses with PayloadLimitError naming its field."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.p2p import MsgpackPayloads, P2PConfig, PayloadError, PayloadLimitError

LIMITS = P2PConfig(
    max_frame_bytes=4_096,
    msgpack_max_buffer_bytes=1_024,
    msgpack_max_bin_bytes=64,
    msgpack_max_str_bytes=32,
    msgpack_max_array_items=8,
    msgpack_max_map_items=4,
)
payloads = MsgpackPayloads(LIMITS)


def test_round_trip_within_limits() -> None:
    value = {"height": 7, "block": b"\x00" * 64, "id": "x" * 32, "votes": list(range(8))}
    assert payloads.unpack(payloads.pack(value)) == value


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (b"\x00" * 65, "msgpack_max_bin_bytes"),
        ("x" * 33, "msgpack_max_str_bytes"),
        (list(range(9)), "msgpack_max_array_items"),
        ({str(i): i for i in range(5)}, "msgpack_max_map_items"),
        ([[b"\x00" * 65]], "msgpack_max_bin_bytes"),  # limits apply at any depth
    ],
)
def test_each_limit_is_enforced(value: object, field: str) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    with pytest.raises(PayloadLimitError) as refused:
        payloads.unpack(data)
    assert refused.value.field == field


def test_buffer_limit_is_checked_before_decoding() -> None:
    # Every bin, array and count is within its own limit; only the total is too big.
    data = msgpack.packb([[b"\x00" * 60] * 8] * 3, use_bin_type=True)
    assert len(data) > LIMITS.msgpack_max_buffer_bytes
    with pytest.raises(PayloadLimitError) as refused:
        payloads.unpack(data)
    assert refused.value.field == "msgpack_max_buffer_bytes"


def test_pack_refuses_what_the_peer_could_not_decode() -> None:
    with pytest.raises(PayloadLimitError) as refused:
        payloads.pack([b"\x00" * 60] * 20)
    assert refused.value.field == "msgpack_max_buffer_bytes"


def test_a_huge_declared_length_is_refused() -> None:
    # bin32 header claiming 2^31 bytes with 10 present: nothing is allocated for the claim (the
    # unpacker only ever holds the bytes fed, <= msgpack_max_buffer_bytes); refused as bad input.
    with pytest.raises(PayloadError):
        payloads.unpack(b"\xc6\x80\x00\x00\x00" + b"\x00" * 10)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (b"\x92\x01", "truncated"),
        (b"\x01\x02", "trailing"),
        (b"\xc1", "malformed"),
        (b"\xa2\xff\xfe", "malformed"),  # invalid UTF-8 in a str
        (msgpack.packb({1: 2}), "malformed"),  # only str/bytes map keys
        (b"\x91" * 2_000 + b"\x00", "nested"),
    ],
)
def test_malformed_input_raises_payload_error(data: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        MsgpackPayloads(P2PConfig()).unpack(data)


@pytest.mark.parametrize("data", [b"\xd4\x01\x00", b"\xc7\x00\x05", b"\xd6\xff\x00\x00\x00\x00"])
def test_extension_types_are_refused(data: bytes) -> None:
    with pytest.raises(PayloadLimitError) as refused:
        payloads.unpack(data)
    assert refused.value.field == "msgpack_ext_types"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2_048))
def test_arbitrary_bytes_never_raise_anything_but_payload_error(data: bytes) -> None:
    # Anything else (IndexError, TypeError, MemoryError...) escapes and fails the test.
    with contextlib.suppress(PayloadError):
        payloads.unpack(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(msgpack_values)
def test_values_within_limits_round_trip(value: object) -> None:
    try:
        data = payloads.pack(value)
    except PayloadLimitError:
        return  # too big for the buffer limit as a whole: refused on the sending side already
    assert payloads.unpack(data) == value
