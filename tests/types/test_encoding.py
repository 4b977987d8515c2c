"""Canonical encodings: pinned vectors, an independent layout check, round-trips, and decoders
that refuse every other byte string with DecodeError (never another exception, never a hang)."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.crypto.keys import verify_signature
from emrchain.state.emr.membership import rotation_message
from emrchain.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    DecodeError,
    DuplicateVoteEvidence,
    Proposal,
    Transaction,
    Validator,
    ValidatorSet,
    Vote,
    VoteType,
    decode_evidence,
)
from tests.vectors import generate_types

VECTORS = Path(__file__).parent.parent / "vectors"
TYPE_VECTORS = json.loads((VECTORS / "types.json").read_text())
TX_VECTORS = json.loads((VECTORS / "transactions.json").read_text())
STRUCTURES = generate_types.structures()
DECODERS = {
    "validator": lambda data: _read_all(Validator, data),
    "validator_set": ValidatorSet.decode,
    "prevote": Vote.decode,
    "precommit_nil": Vote.decode,
    "proposal": Proposal.decode,
    "commit": CommitCertificate.decode,
    "evidence": DuplicateVoteEvidence.decode,
    "conflicting_proposals": decode_evidence,
    "block_with_both_evidence_kinds": Block.decode,
    "header": BlockHeader.decode,
    "block": Block.decode,
}


def _read_all(cls, data: bytes):
    from emrchain.types.codec import Reader

    reader = Reader(data, cls.__name__)
    value = cls.read(reader)
    reader.finish()
    return value


def test_rotate_key_vector_carries_a_proof_that_verifies() -> None:
    """The vector is a transaction a chain would accept, not only one that decodes: its proof
    is the new key's signature over the rotation message for the vector's sender."""
    chain = TX_VECTORS["chain_id"].encode()
    tx = Transaction.decode(bytes.fromhex(TX_VECTORS["transactions"]["rotate_key"]["hex"]), chain)
    fields = tx.fields
    message = rotation_message(
        chain, tx.sender, fields["new_member_key"], fields["new_encryption_key"]
    )
    assert verify_signature(fields["new_member_key"], message, fields["proof"])
    assert not verify_signature(fields["new_member_key"], message[:-1] + b"\x00", fields["proof"])


@pytest.mark.parametrize("name", sorted(TYPE_VECTORS))
def test_structure_matches_pinned_vector(name: str) -> None:
    value = STRUCTURES[name]
    vector = TYPE_VECTORS[name]
    assert value.encode().hex() == vector["hex"]
    decoded = DECODERS[name](bytes.fromhex(vector["hex"]))
    assert decoded == value
    assert decoded.encode().hex() == vector["hex"]
    for attribute in ("hash", "block_id"):
        if attribute in vector:
            assert getattr(decoded, attribute).hex() == vector[attribute]


def test_vote_layout_independently() -> None:
    vote = STRUCTURES["prevote"]
    expected = (
        struct.pack(">BQI", 1, 7, 2)
        + generate_types.digest("block-7")
        + generate_types.key(0).public_key
        + vote.signature
    )
    assert vote.encode() == expected
    chain = generate_types.CHAIN_ID
    assert vote.signed_message(chain) == b"\x02" + bytes([len(chain)]) + chain + expected[:45]


def test_proposal_layout_independently() -> None:
    proposal = STRUCTURES["proposal"]
    body = struct.pack(">QIi", 7, 2, 1) + generate_types.digest("block-7")
    assert proposal.encode() == body + proposal.proposer + proposal.signature
    assert proposal.signed_message(b"c")[:3] == b"\x03\x01c"


@pytest.mark.parametrize("name", sorted(TX_VECTORS["transactions"]))
def test_transaction_vector(name: str) -> None:
    vector = TX_VECTORS["transactions"][name]
    raw = bytes.fromhex(vector["hex"])
    chain = TX_VECTORS["chain_id"].encode()
    tx = Transaction.decode(raw, chain)
    assert tx.encode() == raw
    assert tx.tx_id.hex() == vector["tx_id"]
    assert int(tx.kind) == vector["kind"]
    assert tx.verify_signature()
    tx.validate_basic()
    rebuilt = generate_types.transactions()[name]
    assert rebuilt.encode() == raw
    # Independent envelope layout: version, chain id, kind, sender, nonce, payload length.
    assert raw[0] == 1 and raw[1] == len(chain) and raw[2 : 2 + len(chain)] == chain
    offset = 2 + len(chain)
    assert raw[offset] == vector["kind"]
    assert raw[offset + 1 : offset + 33] == generate_types.key(1).public_key
    nonce, payload_length = struct.unpack(">QH", raw[offset + 33 : offset + 43])
    assert nonce == 1000 + vector["kind"]
    assert len(raw) == offset + 43 + payload_length + 64


@pytest.mark.parametrize("name", sorted(TYPE_VECTORS))
def test_every_truncation_and_extension_is_refused(name: str) -> None:
    data = bytes.fromhex(TYPE_VECTORS[name]["hex"])
    decode = DECODERS[name]
    for length in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:length])
    with pytest.raises(DecodeError):
        decode(data + b"\x00")


@pytest.mark.parametrize("name", sorted(TYPE_VECTORS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutations_raise_only_decode_error(name: str, data: st.DataObject) -> None:
    original = bytearray(bytes.fromhex(TYPE_VECTORS[name]["hex"]))
    position = data.draw(st.integers(0, len(original) - 1))
    original[position] ^= data.draw(st.integers(1, 255))
    try:
        value = DECODERS[name](bytes(original))
    except DecodeError:
        return
    # A mutation that still decodes must re-encode to exactly the mutated bytes (canonical).
    assert value.encode() == bytes(original)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_decode_error(blob: bytes) -> None:
    for decode in DECODERS.values():
        with contextlib.suppress(DecodeError):
            decode(blob)


def test_huge_declared_counts_are_refused_before_reading() -> None:
    commit_header = struct.pack(">QI", 5, 0) + b"\x11" * 32
    with pytest.raises(DecodeError, match="count 65535 exceeds"):
        CommitCertificate.decode(commit_header + b"\xff\xff")
    with pytest.raises(DecodeError, match="count 65535 exceeds"):
        ValidatorSet.decode(b"\xff\xff")
    header = STRUCTURES["header"].encode()
    with pytest.raises(DecodeError, match="count 4294967295 exceeds"):
        Block.decode(header + b"\xff\xff\xff\xff")
    with pytest.raises(DecodeError, match="length 4294967295 exceeds"):
        Block.decode(header + b"\x00\x00\x00\x01" + b"\xff\xff\xff\xff")


def test_non_canonical_orderings_are_refused() -> None:
    validators = STRUCTURES["validator_set"].validators
    unsorted = struct.pack(">H", 2) + validators[1].encode() + validators[0].encode()
    with pytest.raises(DecodeError, match="not sorted"):
        ValidatorSet.decode(unsorted)
    duplicate = struct.pack(">H", 2) + validators[0].encode() * 2
    with pytest.raises(DecodeError):
        ValidatorSet.decode(duplicate)
    evidence = STRUCTURES["evidence"]
    swapped = evidence.vote_b.encode() + evidence.vote_a.encode()
    with pytest.raises(DecodeError, match="block id order"):
        DuplicateVoteEvidence.decode(swapped)
    commit = STRUCTURES["commit"]
    entries = commit.encode()[46:]
    reversed_entries = entries[96:192] + entries[:96] + entries[192:]
    with pytest.raises(DecodeError, match="sorted"):
        CommitCertificate.decode(commit.encode()[:46] + reversed_entries)


def test_vote_bounds() -> None:
    key = generate_types.key(0)
    chain = generate_types.CHAIN_ID
    with pytest.raises(ValueError, match="height"):
        Vote.create(key, chain, VoteType.PREVOTE, 0, 0, bytes(32))
    with pytest.raises(ValueError, match="round"):
        Vote.create(key, chain, VoteType.PREVOTE, 1, 1 << 31, bytes(32))
    with pytest.raises(ValueError, match="pol_round"):
        Proposal.create(key, chain, 1, 2, 2, b"\x01" * 32)
    with pytest.raises(ValueError, match="nil"):
        Proposal.create(key, chain, 1, 2, -1, bytes(32))
    with pytest.raises(DecodeError, match="unknown vote type"):
        Vote.decode(b"\x03" + STRUCTURES["prevote"].encode()[1:])


def test_signatures_are_bound_to_chain_and_domain() -> None:
    vote = STRUCTURES["prevote"]
    assert vote.verify(generate_types.CHAIN_ID)
    assert not vote.verify(b"another-chain")
    proposal = STRUCTURES["proposal"]
    assert proposal.verify(generate_types.CHAIN_ID)
    # The same signer, height, round and block id signed as a vote never verifies as a proposal.
    forged = Proposal(7, 2, 1, vote.block_id, vote.validator, vote.signature)
    assert not forged.verify(generate_types.CHAIN_ID)
