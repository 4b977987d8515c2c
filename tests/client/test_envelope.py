"""Record envelope: round trips, grantee rewrap, and a specific error for each way to fail."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519
from nacl.public import PrivateKey

from emrchain.client.envelope import (
    ENVELOPE_OVERHEAD_BYTES,
    FORMAT_VERSION,
    HEADER_BYTES,
    WRAPPED_KEY_BYTES,
    InvalidRecipientKeyError,
    MalformedEnvelopeError,
    RecordBindingError,
    RecordTooLargeError,
    TamperedCiphertextError,
    WrongRecipientKeyError,
    decrypt_with_data_key,
    new_record_id,
    open_record,
    rewrap,
    seal_record,
    unwrap_data_key,
)
from emrchain.crypto.encryption_keys import derive_member_key_pair, generate_member_key_pair
from emrchain.crypto.keys import Ed25519Signer
from emrchain.storage.cid import ContentId, compute_cid

ORGANISATION = derive_member_key_pair(hashlib.sha256(b"organisation").digest())
PATIENT = derive_member_key_pair(hashlib.sha256(b"patient").digest())
GRANTEE = derive_member_key_pair(hashlib.sha256(b"grantee").digest())
STRANGER = derive_member_key_pair(hashlib.sha256(b"stranger").digest())
RECIPIENTS = {"organisation": ORGANISATION.public_key, "patient": PATIENT.public_key}
RECORD_ID = hashlib.sha256(b"record").digest()
PATIENT_ID = hashlib.sha256(b"patient id").digest()


def sealed(plaintext: bytes = b"blood pressure 120/80"):
    return seal_record(plaintext, RECORD_ID, PATIENT_ID, RECIPIENTS)


def plaintexts() -> st.SearchStrategy[bytes]:
    """Small structured byte strings, and random ones up to 300 KiB (st.binary alone rarely
    draws anything large)."""
    sized = st.builds(
        lambda length, seed: random.Random(seed).randbytes(length),
        st.integers(min_value=0, max_value=300 * 1024),
        st.integers(min_value=0, max_value=2**32 - 1),
    )
    return st.one_of(st.binary(max_size=4096), sized)


@settings(max_examples=40, deadline=None)
@given(plaintexts(), st.sampled_from(["organisation", "patient"]))
def test_round_trip_for_each_recipient(plaintext: bytes, recipient: str) -> None:
    record = seal_record(plaintext, RECORD_ID, PATIENT_ID, RECIPIENTS)
    private_key = {"organisation": ORGANISATION, "patient": PATIENT}[recipient].private_key
    opened = open_record(
        record.ciphertext, record.wraps[recipient], private_key, RECORD_ID, PATIENT_ID
    )
    assert opened == plaintext
    assert record.size == len(plaintext) + ENVELOPE_OVERHEAD_BYTES


def test_sealed_record_fields_describe_the_ciphertext() -> None:
    plaintext = b"x" * 1000
    record = sealed(plaintext)
    assert record.size == len(record.ciphertext) == len(plaintext) + ENVELOPE_OVERHEAD_BYTES
    assert record.ciphertext[0] == FORMAT_VERSION
    assert record.ciphertext_sha256 == hashlib.sha256(record.ciphertext).digest()
    assert record.cid_text == compute_cid(record.ciphertext).to_text()
    assert ContentId.from_bytes(record.cid_bytes).to_text() == record.cid_text
    assert set(record.wraps) == {"organisation", "patient"}
    assert all(len(wrap) == WRAPPED_KEY_BYTES for wrap in record.wraps.values())
    assert plaintext not in record.ciphertext
    with pytest.raises(TypeError):
        record.wraps["intruder"] = b""  # type: ignore[index]


def test_every_seal_uses_a_fresh_key_and_nonce() -> None:
    first, second = sealed(), sealed()
    assert first.ciphertext[1:HEADER_BYTES] != second.ciphertext[1:HEADER_BYTES]
    first_key = unwrap_data_key(first.wraps["patient"], PATIENT.private_key)
    second_key = unwrap_data_key(second.wraps["patient"], PATIENT.private_key)
    assert first_key != second_key
    # Both recipients hold the same data key.
    assert unwrap_data_key(first.wraps["organisation"], ORGANISATION.private_key) == first_key


def test_grantee_rewrap_opens_and_carries_an_80_byte_key() -> None:
    record = sealed(b"lab result")
    grant_key = rewrap(record.wraps["patient"], PATIENT.private_key, GRANTEE.public_key)
    assert len(grant_key) == WRAPPED_KEY_BYTES
    assert (
        open_record(record.ciphertext, grant_key, GRANTEE.private_key, RECORD_ID, PATIENT_ID)
        == b"lab result"
    )
    with pytest.raises(WrongRecipientKeyError):
        open_record(record.ciphertext, grant_key, PATIENT.private_key, RECORD_ID, PATIENT_ID)


def test_rewrap_needs_the_right_private_key() -> None:
    record = sealed()
    with pytest.raises(WrongRecipientKeyError):
        rewrap(record.wraps["patient"], STRANGER.private_key, GRANTEE.public_key)


def test_wrong_private_key_is_reported_as_such() -> None:
    record = sealed()
    with pytest.raises(WrongRecipientKeyError, match="does not open with this private key"):
        open_record(
            record.ciphertext, record.wraps["patient"], STRANGER.private_key, RECORD_ID, PATIENT_ID
        )
    # Another recipient's wrap with my key is the same failure.
    with pytest.raises(WrongRecipientKeyError):
        open_record(
            record.ciphertext,
            record.wraps["organisation"],
            PATIENT.private_key,
            RECORD_ID,
            PATIENT_ID,
        )


@given(st.integers(min_value=0, max_value=WRAPPED_KEY_BYTES - 1), st.integers(1, 255))
def test_altered_wrapped_key_does_not_open(position: int, flip: int) -> None:
    record = sealed()
    wrap = bytearray(record.wraps["patient"])
    wrap[position] ^= flip
    with pytest.raises(WrongRecipientKeyError):
        open_record(record.ciphertext, bytes(wrap), PATIENT.private_key, RECORD_ID, PATIENT_ID)


@pytest.mark.parametrize(
    ("record_id", "patient_id"),
    [
        (hashlib.sha256(b"another record").digest(), PATIENT_ID),
        (RECORD_ID, hashlib.sha256(b"another patient").digest()),
        (PATIENT_ID, RECORD_ID),
    ],
    ids=["other record", "other patient", "ids swapped"],
)
def test_ciphertext_is_bound_to_its_record_and_patient(record_id: bytes, patient_id: bytes) -> None:
    record = sealed()
    with pytest.raises(RecordBindingError, match="not bound to this record id and patient id"):
        open_record(
            record.ciphertext, record.wraps["patient"], PATIENT.private_key, record_id, patient_id
        )


def test_another_records_key_does_not_open_this_ciphertext() -> None:
    """Key commitment: a data key that did not seal the envelope is refused before decryption."""
    record, other = sealed(), sealed()
    other_key = unwrap_data_key(other.wraps["patient"], PATIENT.private_key)
    with pytest.raises(RecordBindingError):
        decrypt_with_data_key(record.ciphertext, other_key, RECORD_ID, PATIENT_ID)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=2048), st.data())
def test_altered_ciphertext_is_tampering(plaintext: bytes, data: st.DataObject) -> None:
    record = sealed(plaintext)
    # Nonce, body and tag: everything after the version byte and the key commitment.
    candidates = [*range(1, 13), *range(HEADER_BYTES, len(record.ciphertext))]
    position = data.draw(st.sampled_from(candidates))
    flip = data.draw(st.integers(1, 255))
    altered = bytearray(record.ciphertext)
    altered[position] ^= flip
    with pytest.raises(TamperedCiphertextError):
        open_record(
            bytes(altered), record.wraps["patient"], PATIENT.private_key, RECORD_ID, PATIENT_ID
        )


def test_altered_key_commitment_is_a_binding_failure() -> None:
    record = sealed()
    altered = bytearray(record.ciphertext)
    altered[20] ^= 1
    with pytest.raises(RecordBindingError):
        open_record(
            bytes(altered), record.wraps["patient"], PATIENT.private_key, RECORD_ID, PATIENT_ID
        )


def test_truncated_or_extended_ciphertext_fails() -> None:
    record = sealed()
    with pytest.raises(TamperedCiphertextError):
        open_record(
            record.ciphertext[:-1],
            record.wraps["patient"],
            PATIENT.private_key,
            RECORD_ID,
            PATIENT_ID,
        )
    with pytest.raises(TamperedCiphertextError):
        open_record(
            record.ciphertext + b"\x00",
            record.wraps["patient"],
            PATIENT.private_key,
            RECORD_ID,
            PATIENT_ID,
        )


@pytest.mark.parametrize(
    ("ciphertext", "message"),
    [
        (b"", "at least 61 bytes"),
        (bytes([FORMAT_VERSION]) * 60, "at least 61 bytes"),
        (bytes([2]) + bytes(100), "unknown envelope format version 2"),
        (bytes([0]) + bytes(100), "unknown envelope format version 0"),
    ],
)
def test_malformed_envelopes(ciphertext: bytes, message: str) -> None:
    record = sealed()
    with pytest.raises(MalformedEnvelopeError, match=message):
        open_record(ciphertext, record.wraps["patient"], PATIENT.private_key, RECORD_ID, PATIENT_ID)


@pytest.mark.parametrize("length", [0, 79, 81, 128])
def test_wrapped_key_must_be_80_bytes(length: int) -> None:
    record = sealed()
    with pytest.raises(MalformedEnvelopeError, match="exactly 80 bytes"):
        open_record(record.ciphertext, bytes(length), PATIENT.private_key, RECORD_ID, PATIENT_ID)


def test_size_limit_applies_to_seal_and_open() -> None:
    with pytest.raises(RecordTooLargeError, match="exceeds the maximum of 1024"):
        seal_record(bytes(1025), RECORD_ID, PATIENT_ID, RECIPIENTS, max_plaintext_bytes=1024)
    record = seal_record(bytes(1024), RECORD_ID, PATIENT_ID, RECIPIENTS, max_plaintext_bytes=1024)
    assert open_record(
        record.ciphertext,
        record.wraps["patient"],
        PATIENT.private_key,
        RECORD_ID,
        PATIENT_ID,
        max_plaintext_bytes=1024,
    ) == bytes(1024)
    with pytest.raises(RecordTooLargeError):
        open_record(
            record.ciphertext,
            record.wraps["patient"],
            PATIENT.private_key,
            RECORD_ID,
            PATIENT_ID,
            max_plaintext_bytes=1023,
        )


@pytest.mark.parametrize(
    ("record_id", "patient_id", "message"),
    [
        (bytes(32), PATIENT_ID, "record_id must not be all zeros"),
        (RECORD_ID, bytes(32), "patient_id must not be all zeros"),
        (RECORD_ID[:31], PATIENT_ID, "record_id must be exactly 32 bytes"),
        (RECORD_ID, PATIENT_ID + b"\x00", "patient_id must be exactly 32 bytes"),
    ],
)
def test_ids_are_checked(record_id: bytes, patient_id: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        seal_record(b"note", record_id, patient_id, RECIPIENTS)


@pytest.mark.parametrize(
    ("recipients", "message"),
    [
        ({}, "at least one recipient"),
        ({"": PATIENT.public_key}, "1..64 characters"),
        ({"x" * 65: PATIENT.public_key}, "1..64 characters"),
        ({f"r{index}": PATIENT.public_key for index in range(65)}, "at most 64 recipients"),
    ],
)
def test_recipient_lists_are_bounded(recipients: dict[str, bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        seal_record(b"note", RECORD_ID, PATIENT_ID, recipients)


@pytest.mark.parametrize(
    ("public_key", "message"),
    [
        (bytes(31), "exactly 32 bytes"),
        (bytes(32), "small order"),  # the identity point
        (bytes([1]) + bytes(31), "small order"),  # a point of order 4
    ],
)
def test_unusable_recipient_keys_are_refused(public_key: bytes, message: str) -> None:
    with pytest.raises(InvalidRecipientKeyError, match=message):
        seal_record(b"note", RECORD_ID, PATIENT_ID, {"patient": public_key})


def test_member_key_derivation_is_deterministic_and_separated_from_ed25519() -> None:
    seed = hashlib.sha256(b"member seed").digest()
    assert derive_member_key_pair(seed) == derive_member_key_pair(seed)
    assert derive_member_key_pair(seed).public_key != derive_member_key_pair(bytes(32)).public_key
    # libsodium's seeded X25519 key of the raw seed is the Montgomery form of the Ed25519 key
    # of that seed (one secret scalar for both); the derivation label keeps them apart.
    montgomery_of_ed25519 = crypto_sign_ed25519_pk_to_curve25519(Ed25519Signer(seed).public_key)
    assert bytes(PrivateKey.from_seed(seed).public_key) == montgomery_of_ed25519
    assert derive_member_key_pair(seed).public_key != montgomery_of_ed25519
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        derive_member_key_pair(seed[:16])


def test_generated_key_pairs_and_record_ids_are_fresh() -> None:
    first, second = generate_member_key_pair(), generate_member_key_pair()
    assert first.public_key != second.public_key and len(first.private_key) == 32
    assert "private_key" not in repr(first)
    identifiers = {new_record_id() for _ in range(100)}
    assert len(identifiers) == 100 and all(len(identifier) == 32 for identifier in identifiers)
