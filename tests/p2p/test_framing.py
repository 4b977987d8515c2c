"""Frames: secretstream round trip, and every malformed frame refused with its reason."""

from __future__ import annotations

import asyncio
import os

import pytest

from emrchain.p2p.config import FRAME_OVERHEAD_BYTES
from emrchain.p2p.errors import CloseReason, FrameError
from emrchain.p2p.framing import (
    LENGTH_PREFIX,
    FrameOpener,
    FrameSealer,
    frame_prefix,
    read_frame,
)
from tests.p2p.helpers import run

MAX_FRAME_BYTES = 1_024


def stream_pair() -> tuple[FrameSealer, FrameOpener]:
    key = os.urandom(32)
    sealer = FrameSealer(key)
    return sealer, FrameOpener(key, sealer.header)


def test_round_trip_in_order() -> None:
    sealer, opener = stream_pair()
    messages = [(1, b""), (2, b"vote"), (255, os.urandom(900))]
    frames = [sealer.seal_message(channel, payload) for channel, payload in messages]
    assert [opener.open_message(frame) for frame in frames] == messages


def test_flipped_bit_fails_to_decrypt() -> None:
    sealer, opener = stream_pair()
    frame = bytearray(sealer.seal_message(1, b"payload"))
    frame[len(frame) // 2] ^= 0x01
    with pytest.raises(FrameError) as refused:
        opener.open_message(bytes(frame))
    assert refused.value.reason is CloseReason.DECRYPTION_FAILED


def test_reordered_and_replayed_frames_fail() -> None:
    sealer, opener = stream_pair()
    first, second = sealer.seal_message(1, b"a"), sealer.seal_message(1, b"b")
    with pytest.raises(FrameError):
        opener.open_message(second)  # out of order
    sealer, opener = stream_pair()
    first = sealer.seal_message(1, b"a")
    opener.open_message(first)
    with pytest.raises(FrameError):
        opener.open_message(first)  # replayed


def test_wrong_key_fails() -> None:
    sealer = FrameSealer(os.urandom(32))
    opener = FrameOpener(os.urandom(32), sealer.header)
    with pytest.raises(FrameError):
        opener.open_message(sealer.seal_message(1, b"x"))


def fed_reader(data: bytes, eof: bool) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def read_from(data: bytes, eof: bool) -> bytes:
    # No EOF means "the peer keeps the connection open": a reader that waited for more data
    # would hit this timeout instead of raising the expected FrameError.
    async with asyncio.timeout(1):
        return await read_frame(fed_reader(data, eof), MAX_FRAME_BYTES)


def test_read_frame_accepts_a_well_formed_frame() -> None:
    body = os.urandom(100)
    assert run(read_from(frame_prefix(body) + body, eof=False)) == body


@pytest.mark.parametrize(
    ("data", "eof", "reason"),
    [
        # Oversized: refused from the prefix alone, the body is never awaited.
        (LENGTH_PREFIX.pack(MAX_FRAME_BYTES + 1), False, CloseReason.FRAME_TOO_LARGE),
        (b"\xff\xff\xff\xff", False, CloseReason.FRAME_TOO_LARGE),
        (LENGTH_PREFIX.pack(FRAME_OVERHEAD_BYTES - 1), False, CloseReason.FRAME_TOO_SMALL),
        (LENGTH_PREFIX.pack(100) + b"\x00" * 50, True, CloseReason.TRUNCATED_FRAME),
        (b"\x00\x00", True, CloseReason.TRUNCATED_FRAME),
        (b"", True, CloseReason.CLOSED_BY_PEER),
    ],
)
def test_read_frame_refusals(data: bytes, eof: bool, reason: CloseReason) -> None:
    with pytest.raises(FrameError) as refused:
        run(read_from(data, eof))
    assert refused.value.reason is reason
