"""HsmSigner on a real SoftHSM2 token: Ed25519 made in the HSM, verified by the chain's rules."""

from __future__ import annotations

import os

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from emrchain.crypto.keys import Signer, verify_signature
from emrchain.hsm import (
    HsmContext,
    HsmKeyNotFoundError,
    HsmSigner,
    HsmUnavailableError,
    HsmWorker,
    UnsafeKeyError,
    decode_ec_point,
)


def unique_label(stem: str) -> str:
    return f"{stem}-{os.urandom(4).hex()}"


def test_signature_made_in_the_hsm_verifies_under_chain_rules(hsm_worker: HsmWorker) -> None:
    signer = HsmSigner.generate(hsm_worker, unique_label("validator"))
    assert isinstance(signer, Signer)
    assert len(signer.public_key) == 32
    message = b"vote for block 0123"
    signature = signer.sign(message)
    assert len(signature) == 64
    assert verify_signature(signer.public_key, message, signature)
    assert not verify_signature(signer.public_key, message + b"!", signature)


def test_signer_is_found_again_by_label(hsm_worker: HsmWorker) -> None:
    label = unique_label("validator")
    generated = HsmSigner.generate(hsm_worker, label)
    found = HsmSigner(hsm_worker, label)
    assert found.public_key == generated.public_key
    assert verify_signature(generated.public_key, b"m", found.sign(b"m"))
    assert HsmSigner.load_or_generate(hsm_worker, label).public_key == generated.public_key


def test_missing_label_and_duplicate_generation_are_refused(hsm_worker: HsmWorker) -> None:
    with pytest.raises(HsmKeyNotFoundError):
        HsmSigner(hsm_worker, unique_label("absent"))
    label = unique_label("validator")
    HsmSigner.generate(hsm_worker, label)
    with pytest.raises(ValueError, match="already exists"):
        HsmSigner.generate(hsm_worker, label)


def test_private_key_cannot_leave_the_token(hsm_worker: HsmWorker) -> None:
    label = unique_label("validator")
    HsmSigner.generate(hsm_worker, label)

    def inspect(context: HsmContext) -> dict[str, object]:
        key = context.find_key(ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS, label)
        facts: dict[str, object] = {
            "sensitive": key[Attribute.SENSITIVE],
            "extractable": key[Attribute.EXTRACTABLE],
            "always_sensitive": key[Attribute.ALWAYS_SENSITIVE],
            "never_extractable": key[Attribute.NEVER_EXTRACTABLE],
        }
        try:
            key[Attribute.VALUE]
            facts["value_readable"] = True
        except pkcs11.exceptions.AttributeSensitive:
            facts["value_readable"] = False
        # Wrapping it out under a key we control must fail too.
        wrapping_key = context.session.generate_key(KeyType.AES, 256, store=False)
        try:
            wrapping_key.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            facts["wrappable"] = True
        except pkcs11.exceptions.PKCS11Error:
            facts["wrappable"] = False
        finally:
            wrapping_key.destroy()
        return facts

    assert hsm_worker.call(inspect) == {
        "sensitive": True,
        "extractable": False,
        "always_sensitive": True,
        "never_extractable": True,
        "value_readable": False,
        "wrappable": False,
    }


def test_an_extractable_private_key_is_refused(hsm_worker: HsmWorker) -> None:
    label = unique_label("unsafe")

    def generate_extractable(context: HsmContext) -> None:
        parameters = context.session.create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: bytes.fromhex("06032b6570")}, local=True
        )
        parameters.generate_keypair(
            store=True, label=label,
            private_template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )

    hsm_worker.call(generate_extractable)
    with pytest.raises(UnsafeKeyError):
        HsmSigner(hsm_worker, label)


def test_sign_async_from_the_event_loop(hsm_worker: HsmWorker) -> None:
    import asyncio

    signer = HsmSigner.generate(hsm_worker, unique_label("validator"))

    async def sign_many() -> list[bytes]:
        return await asyncio.gather(*(signer.sign_async(bytes([i])) for i in range(20)))

    signatures = asyncio.run(sign_many())
    assert all(
        verify_signature(signer.public_key, bytes([i]), signature)
        for i, signature in enumerate(signatures)
    )


def test_ec_point_is_accepted_der_wrapped_or_bare() -> None:
    point = bytes(range(32))
    assert decode_ec_point(b"\x04\x20" + point) == point
    assert decode_ec_point(point) == point
    malformed_points = (
        b"\x04\x21" + point, b"\x03\x20" + point, point[:31], b"\x04\x20" + point[:31]
    )
    for malformed in malformed_points:
        with pytest.raises(HsmUnavailableError):
            decode_ec_point(malformed)
