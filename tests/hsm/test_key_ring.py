"""HsmKeyRing on a real SoftHSM2 token: RFC 5649 wraps inside the HSM, versions, destruction."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.keywrap import (
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)
from pkcs11 import Attribute, KeyType, ObjectClass

from emrchain.hsm import (
    HsmContext,
    HsmKeyEncryptionKey,
    HsmKeyNotFoundError,
    HsmKeyRing,
    HsmWorker,
    InvalidWrappedKeyError,
)
from emrchain.hsm.key_ring import WRAP_MECHANISM
from emrchain.storage.interfaces import KeyEncryptionKey, KeyUnavailableError


def fresh_ring(worker: HsmWorker) -> HsmKeyRing:
    return HsmKeyRing(worker, f"kek{os.urandom(3).hex()}")


def test_wrap_unwrap_round_trip(hsm_worker: HsmWorker) -> None:
    kek = fresh_ring(hsm_worker).generate_version()
    assert isinstance(kek, KeyEncryptionKey)
    assert kek.version == 1
    data_key = os.urandom(32)
    wrapped = kek.wrap(data_key)
    assert len(wrapped) == 40  # RFC 5649: 32 bytes + one 8-byte integrity block
    assert data_key not in wrapped
    assert kek.unwrap(wrapped) == data_key
    # Wrapping is deterministic (key wrap has no nonce): same key, same bytes.
    assert kek.wrap(data_key) == wrapped


def test_tampered_or_foreign_wraps_are_rejected(hsm_worker: HsmWorker) -> None:
    ring = fresh_ring(hsm_worker)
    first = ring.generate_version()
    second = ring.generate_version()
    wrapped = first.wrap(os.urandom(32))
    tampered = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    with pytest.raises(InvalidWrappedKeyError):
        first.unwrap(tampered)
    with pytest.raises(InvalidWrappedKeyError):
        second.unwrap(wrapped)
    with pytest.raises(InvalidWrappedKeyError):
        first.unwrap(wrapped[:-8])
    with pytest.raises(ValueError):
        first.wrap(os.urandom(16))


def test_hsm_wrap_is_rfc5649_byte_for_byte(hsm_worker: HsmWorker) -> None:
    """The token's AES_KEY_WRAP_PAD output equals `cryptography`'s RFC 5649 implementation, so
    wraps made by the file KEK and by the HSM share one format."""
    known_kek = os.urandom(32)
    data_key = os.urandom(32)

    def wrap_with_known_kek(context: HsmContext) -> bytes:
        # A session-only copy of a known KEK, for this comparison only; real KEKs are made
        # inside the token and cannot be read.
        kek = context.session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: known_kek, Attribute.TOKEN: False, Attribute.WRAP: True,
        })
        data = context.session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: data_key, Attribute.TOKEN: False, Attribute.EXTRACTABLE: True,
            Attribute.SENSITIVE: False,
        })
        try:
            return bytes(kek.wrap_key(data, mechanism=WRAP_MECHANISM))
        finally:
            data.destroy()
            kek.destroy()

    wrapped = hsm_worker.call(wrap_with_known_kek)
    assert wrapped == aes_key_wrap_with_padding(known_kek, data_key)
    assert aes_key_unwrap_with_padding(known_kek, wrapped) == data_key


def test_new_version_then_old_destroyed_and_gone(hsm_worker: HsmWorker) -> None:
    ring = fresh_ring(hsm_worker)
    with pytest.raises(HsmKeyNotFoundError):
        ring.current()
    old = ring.generate_version()
    data_key = os.urandom(32)
    wrapped_old = old.wrap(data_key)

    new = ring.generate_version()
    assert (new.version, ring.current().version, ring.versions()) == (2, 2, [1, 2])
    # Rotation: re-wrap under the new version, then destroy the old one.
    wrapped_new = new.wrap(old.unwrap(wrapped_old))
    ring.destroy_version(old.version)
    ring.destroy_version(old.version)  # idempotent

    assert ring.versions() == [2]
    with pytest.raises(HsmKeyNotFoundError):
        ring.key(1)
    with pytest.raises(KeyUnavailableError):
        old.unwrap(wrapped_old)
    assert ring.key(2).unwrap(wrapped_new) == data_key

    def count_objects_labelled(context: HsmContext) -> int:
        label = f"{ring_prefix(ring)}-v1"
        return len(list(context.session.get_objects({Attribute.LABEL: label})))

    assert hsm_worker.call(count_objects_labelled) == 0
    assert ring.generate_version().version == 3  # versions are never reused after the newest


def ring_prefix(ring: HsmKeyRing) -> str:
    return ring._prefix


def test_kek_is_non_extractable_and_wrap_only(hsm_worker: HsmWorker) -> None:
    ring = fresh_ring(hsm_worker)
    ring.generate_version()

    def attributes(context: HsmContext) -> tuple[object, ...]:
        key = context.find_key(ObjectClass.SECRET_KEY, KeyType.AES, f"{ring_prefix(ring)}-v1")
        return tuple(
            key[attribute]
            for attribute in (
                Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.NEVER_EXTRACTABLE,
                Attribute.TOKEN, Attribute.WRAP, Attribute.UNWRAP, Attribute.ENCRYPT,
                Attribute.DECRYPT, Attribute.VALUE_LEN,
            )
        )

    assert hsm_worker.call(attributes) == (True, False, True, True, True, True, False, False, 32)


def test_unwrap_leaves_no_session_objects_behind(hsm_worker: HsmWorker) -> None:
    kek: HsmKeyEncryptionKey = fresh_ring(hsm_worker).generate_version()

    def count_session_secret_keys(context: HsmContext) -> int:
        return len(list(context.session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: False}
        )))

    before = hsm_worker.call(count_session_secret_keys)
    for _ in range(50):
        kek.unwrap(kek.wrap(os.urandom(32)))
    assert hsm_worker.call(count_session_secret_keys) == before
