"""The manifest's canonical encoding and digest (vectors), chunks, and the vouch tally: more
than 2/3 of the set's power needed, forged signatures and non-members refused, a validator
vouching two digests at one height counted for neither."""

from __future__ import annotations

import dataclasses
import json
import secrets

import pytest

from emrchain.statesync.chunks import cut_chunks, read_chunk
from emrchain.statesync.manifest import Manifest, Tally, Vouch, sign_vouch
from emrchain.statesync.messages import (
    ChunkRequest,
    ChunkResponse,
    Offer,
    OffersRequest,
    decode_statesync,
    encode_statesync,
)
from emrchain.types import DEFAULT_LIMITS, DecodeError
from tests.statesync import vectors


def test_the_manifest_encoding_digest_and_vouch_match_the_vectors() -> None:
    expected = json.loads(vectors.VECTORS.read_text())
    assert vectors.build() == expected
    decoded = Manifest.decode(bytes.fromhex(expected["manifest"]))
    assert decoded == vectors.manifest()
    assert decoded.digest.hex() == expected["digest"]


def test_a_manifest_whose_parts_disagree_does_not_decode() -> None:
    manifest = vectors.manifest()
    other = dataclasses.replace(manifest, height=manifest.height + 1)  # header says 1,000
    with pytest.raises(DecodeError, match="header"):
        Manifest.decode(other.encode())
    with pytest.raises(DecodeError, match="trailing"):
        Manifest.decode(manifest.encode() + b"\x00")


def test_chunks_read_back_in_order_and_refuse_disorder() -> None:
    chunks = [chunk for chunk, _ in cut_chunks(vectors.ENTRIES, 128)]
    assert len(chunks) > 3 and all(len(chunk) <= 128 for chunk in chunks)
    read: list[tuple[bytes, bytes]] = []
    for chunk in chunks:
        read += read_chunk(chunk, read[-1][0] if read else b"")
    assert read == vectors.ENTRIES
    with pytest.raises(DecodeError, match="increasing"):
        read_chunk(chunks[0], b"zzz")  # not above the previous chunk's last key
    with pytest.raises(DecodeError):
        read_chunk(chunks[0][:-1], b"")
    assert list(cut_chunks([], 128)) == [(b"", 0)]


def test_more_than_two_thirds_of_the_power_must_vouch() -> None:
    manifest = vectors.manifest()
    signers = vectors.signers()
    tally = Tally(manifest.chain_id, manifest.height, manifest.validators)
    for signer in signers[:2]:
        assert tally.add(manifest.digest, sign_vouch(signer, manifest)) is None
    assert not tally.has_quorum(manifest.digest)  # 20 of 40: refused
    assert tally.add(manifest.digest, sign_vouch(signers[2], manifest)) is None
    assert tally.has_quorum(manifest.digest)  # 30 of 40


def test_forged_and_foreign_vouches_are_refused() -> None:
    manifest = vectors.manifest()
    tally = Tally(manifest.chain_id, manifest.height, manifest.validators)
    for validator in manifest.validators:
        forged = Vouch(validator.public_key, secrets.token_bytes(64))
        assert tally.add(manifest.digest, forged) == "forged signature"
    assert tally.power(manifest.digest) == 0
    stranger = sign_vouch(vectors.Ed25519Signer(bytes(32)), manifest)
    assert tally.add(manifest.digest, stranger) == "not a validator of that height"
    # A vouch for another height does not count at this one.
    other = dataclasses.replace(manifest, entry_count=1)
    moved = sign_vouch(vectors.signers()[0], other)
    assert tally.add(manifest.digest, moved) == "forged signature"


def test_a_validator_vouching_two_digests_at_one_height_counts_for_neither() -> None:
    manifest = vectors.manifest()
    other = dataclasses.replace(manifest, entry_count=manifest.entry_count + 1)
    signers = vectors.signers()
    tally = Tally(manifest.chain_id, manifest.height, manifest.validators)
    for signer in signers[:3]:
        tally.add(manifest.digest, sign_vouch(signer, manifest))
    assert tally.has_quorum(manifest.digest)
    reason = tally.add(other.digest, sign_vouch(signers[0], other))
    assert reason is not None and "two different snapshots" in reason
    assert signers[0].public_key in tally.equivocators
    assert not tally.has_quorum(manifest.digest)
    assert tally.power(other.digest) == 0


def test_state_sync_messages_round_trip_and_refuse_junk() -> None:
    manifest = vectors.manifest()
    vouch = sign_vouch(vectors.signers()[1], manifest)
    for message in (
        OffersRequest(),
        Offer(manifest, (vouch,)),
        ChunkRequest(1_000, 3),
        ChunkResponse(1_000, 3, b"chunk"),
        ChunkResponse(1_000, 4, None),
    ):
        assert decode_statesync(encode_statesync(message), DEFAULT_LIMITS) == message
    for junk in (b"", b"\x09", b"\x03\x00", b"\x04" + bytes(12) + b"\x02" + bytes(4)):
        with pytest.raises(DecodeError):
            decode_statesync(junk, DEFAULT_LIMITS)
