"""CIDs: published vectors, text/bytes round trips, strict parsing, the single-chunk rule."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrchain.storage.cid import (
    CHUNK_SIZE,
    DAG_PB_CODEC,
    RAW_CODEC,
    ContentId,
    InvalidCidError,
    cid_bytes_to_text,
    cid_text_to_bytes,
    compute_cid,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "cid.json").read_text())

_MODULUS = 1 << 64
_MULTIPLIER = 6364136223846793005
_INCREMENT = 1442695040888963407


def pattern(length: int, lanes: int = 65_536) -> bytes:
    """The vectors' generator: byte i is the top byte of the (i+1)-th state of Knuth's MMIX LCG.

    Stepping 50 million states one by one takes Python half a minute, so `lanes` consecutive
    states are packed into one big integer (128 bits apart, room for a 64x64-bit product) and
    all of them are advanced by `lanes` steps at once: that is one affine map,
    x -> a*x + c mod 2^64, with a and c composed from the single step.
    """
    states = []
    state = 1
    for _ in range(min(lanes, length)):
        state = (state * _MULTIPLIER + _INCREMENT) % _MODULUS
        states.append(state)
    lanes = len(states)
    if lanes == 0:
        return b""
    jump_multiplier, jump_increment = 1, 0
    for _ in range(lanes):
        jump_multiplier = (jump_multiplier * _MULTIPLIER) % _MODULUS
        jump_increment = (jump_increment * _MULTIPLIER + _INCREMENT) % _MODULUS
    lane_mask = ((1 << 64) - 1).to_bytes(8, "little") + bytes(8)
    mask = int.from_bytes(lane_mask * lanes, "little")
    increments = int.from_bytes((jump_increment.to_bytes(8, "little") + bytes(8)) * lanes, "little")
    packed = int.from_bytes(b"".join(s.to_bytes(16, "little") for s in states), "little")
    blocks = []
    produced = 0
    while produced < length:
        blocks.append(packed.to_bytes(16 * lanes, "little")[7::16])  # top byte of each lane
        produced += lanes
        packed = (((packed * jump_multiplier) & mask) + increments) & mask
    return b"".join(blocks)[:length]


def vector_input(vector: dict) -> bytes:
    source = vector["input"]
    if "text" in source:
        return source["text"].encode("utf-8")
    if "hex" in source:
        return bytes.fromhex(source["hex"])
    return pattern(source["pattern_length"])


def test_pattern_generator_matches_the_one_step_definition() -> None:
    state, expected = 1, bytearray()
    for _ in range(5_000):
        state = (state * _MULTIPLIER + _INCREMENT) % _MODULUS
        expected.append(state >> 56)
    assert pattern(5_000, lanes=7) == bytes(expected)
    assert pattern(5_000) == bytes(expected)


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS["vectors"] if v["input"].get("pattern_length", 0) < 10_000_000],
    ids=lambda vector: vector["name"],
)
def test_vectors(vector: dict) -> None:
    data = vector_input(vector)
    content_id = compute_cid(data, chunk_size=vector.get("chunk_size", CHUNK_SIZE))
    assert content_id.to_text() == vector["cid"]


@pytest.mark.slow
def test_large_vector_with_two_levels_of_inner_nodes() -> None:
    (vector,) = [v for v in VECTORS["vectors"] if v["input"].get("pattern_length") == 50_000_000]
    assert compute_cid(vector_input(vector)).to_text() == vector["cid"]


@pytest.mark.parametrize("vector", VECTORS["binary"], ids=lambda vector: vector["cid"][:12])
def test_binary_vectors(vector: dict) -> None:
    assert cid_text_to_bytes(vector["cid"]).hex() == vector["bytes_hex"]
    assert cid_bytes_to_text(bytes.fromhex(vector["bytes_hex"])) == vector["cid"]


def test_raw_and_dag_pb_prefixes() -> None:
    assert compute_cid(b"x").to_text().startswith("bafkrei")
    assert compute_cid(b"x" * (CHUNK_SIZE + 1)).to_text().startswith("bafybei")
    assert compute_cid(b"x").to_bytes()[:4] == bytes((1, RAW_CODEC, 0x12, 32))
    assert compute_cid(b"x" * (CHUNK_SIZE + 1)).codec == DAG_PB_CODEC


@given(st.binary(max_size=2_048), st.integers(min_value=1, max_value=64))
def test_data_of_one_chunk_is_a_raw_block(data: bytes, spare: int) -> None:
    # spare = 1 puts the data exactly on the chunk boundary, still one chunk.
    chunk_size = max(1, len(data) + spare - 1)
    expected = ContentId(RAW_CODEC, hashlib.sha256(data).digest())
    assert compute_cid(data, chunk_size=chunk_size) == expected
    assert compute_cid(data).to_bytes() == bytes((1, RAW_CODEC, 0x12, 32)) + expected.digest


@given(st.binary(min_size=2, max_size=600), st.integers(min_value=1, max_value=16))
def test_data_of_several_chunks_is_a_dag_pb_root(data: bytes, chunk_size: int) -> None:
    if len(data) <= chunk_size:
        chunk_size = len(data) - 1
    content_id = compute_cid(data, chunk_size=chunk_size, max_links=3)
    assert content_id.codec == DAG_PB_CODEC
    # Any change of content changes the root.
    changed = bytes([data[0] ^ 1]) + data[1:]
    assert compute_cid(changed, chunk_size=chunk_size, max_links=3) != content_id


@given(st.sampled_from([RAW_CODEC, DAG_PB_CODEC]), st.binary(min_size=32, max_size=32))
def test_text_and_bytes_round_trip(codec: int, digest: bytes) -> None:
    content_id = ContentId(codec, digest)
    text = content_id.to_text()
    assert text == text.lower() and text.startswith("b") and len(text) == 59
    assert ContentId.from_text(text) == content_id
    assert ContentId.from_bytes(content_id.to_bytes()) == content_id
    assert cid_bytes_to_text(cid_text_to_bytes(text)) == text


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(min_value=1, max_value=58),
    st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"),
)
def test_a_changed_character_is_refused_or_is_another_cid(
    digest: bytes, position: int, character: str
) -> None:
    text = ContentId(RAW_CODEC, digest).to_text()
    changed = text[:position] + character + text[position + 1 :]
    if changed == text:
        return
    try:
        parsed = ContentId.from_text(changed)
    except InvalidCidError:
        return
    assert parsed.to_text() == changed != text


EMPTY = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (EMPTY.upper(), "prefix 'b'"),
        ("B" + EMPTY[1:], "prefix 'b'"),
        ("z" + EMPTY[1:], "prefix 'b'"),
        (EMPTY[:-1], "59 characters"),
        (EMPTY + "a", "59 characters"),
        ("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", "59 characters"),
        (EMPTY[:10] + "1" + EMPTY[11:], "a-z and 2-7"),
        (EMPTY[:10] + "A" + EMPTY[11:], "a-z and 2-7"),
        # The final character carries 2 unused bits; setting them spells the same bytes.
        (EMPTY[:-1] + "v", "canonical"),
        ("", "59 characters"),
    ],
)
def test_invalid_texts_are_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidCidError, match=reason):
        ContentId.from_text(text)


def test_non_strings_and_non_bytes_are_refused() -> None:
    with pytest.raises(InvalidCidError, match="string"):
        ContentId.from_text(b"bafk")  # type: ignore[arg-type]
    with pytest.raises(InvalidCidError, match="bytes"):
        ContentId.from_bytes("0155")  # type: ignore[arg-type]


DIGEST = bytes(range(32))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes((0x12, 0x20)) + DIGEST, "36 bytes"),  # CIDv0: a bare multihash
        (bytes((0x00, 0x55, 0x12, 0x20)) + DIGEST, "version 0"),
        (bytes((0x02, 0x55, 0x12, 0x20)) + DIGEST, "version 2"),
        (bytes((0x01, 0x71, 0x12, 0x20)) + DIGEST, "codec 0x71"),
        (bytes((0x01, 0x55, 0x13, 0x20)) + DIGEST, "sha2-256"),
        (bytes((0x01, 0x55, 0x12, 0x1F)) + DIGEST[:31] + b"\x00", "sha2-256"),
        (bytes((0x01, 0x55, 0x12, 0x20)) + DIGEST[:31], "36 bytes"),
        (bytes((0x01, 0x55, 0x12, 0x20)) + DIGEST + b"\x00", "36 bytes"),
        (b"", "36 bytes"),
    ],
)
def test_invalid_binary_cids_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidCidError, match=reason):
        ContentId.from_bytes(data)


def test_constructor_checks_codec_and_digest() -> None:
    with pytest.raises(InvalidCidError, match="codec"):
        ContentId(0x71, DIGEST)
    with pytest.raises(InvalidCidError, match="32 bytes"):
        ContentId(RAW_CODEC, DIGEST[:16])


@pytest.mark.parametrize(("chunk_size", "max_links"), [(0, 174), (1_048_577, 174), (4, 1)])
def test_builder_parameters_are_bounded(chunk_size: int, max_links: int) -> None:
    with pytest.raises(ValueError):
        compute_cid(b"data", chunk_size=chunk_size, max_links=max_links)
