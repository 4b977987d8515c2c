"""An Ed25519 validator key inside the HSM, behind the `Signer` protocol.

The key pair is generated in the token (never imported), its private half sensitive and
non-extractable, and both halves are found by label. Signing is `CKM_EDDSA` (pure Ed25519),
whose signatures are ordinary RFC 8032 signatures the chain verifies like any other.
"""

from __future__ import annotations

from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass

from emrchain.hsm.worker import HsmContext, HsmKeyNotFoundError, HsmUnavailableError, HsmWorker

ED25519_CURVE_OID_DER = bytes.fromhex("06032b6570")
"""EC_PARAMS of Ed25519: the DER-encoded object identifier 1.3.101.112."""
PUBLIC_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
_DER_OCTET_STRING_TAG = 0x04


class UnsafeKeyError(HsmUnavailableError):
    """A key under this label can leave the HSM (extractable or not sensitive): refused."""


def decode_ec_point(ec_point: bytes) -> bytes:
    """The 32-byte Ed25519 public key from a PKCS#11 `CKA_EC_POINT`.

    PKCS#11 says EC_POINT is a DER OCTET STRING (`04 20` + 32 bytes, what SoftHSM returns),
    but some HSMs return the bare 32 bytes; both are accepted, anything else refused.
    """
    if len(ec_point) == PUBLIC_KEY_LENGTH:
        return bytes(ec_point)
    if (
        len(ec_point) == PUBLIC_KEY_LENGTH + 2
        and ec_point[0] == _DER_OCTET_STRING_TAG
        and ec_point[1] == PUBLIC_KEY_LENGTH
    ):
        return bytes(ec_point[2:])
    raise HsmUnavailableError(
        f"unexpected Ed25519 EC_POINT encoding ({len(ec_point)} bytes: {ec_point[:4].hex()}...)"
    )


class HsmSigner:
    """Signs with the token's Ed25519 private key labelled `key_label`."""

    __slots__ = ("_key_label", "_public_key", "_timeout_ms", "_worker")

    def __init__(self, worker: HsmWorker, key_label: str, *, timeout_ms: int = 5_000) -> None:
        """Use an existing key pair; HsmKeyNotFoundError if the token has none by this label."""
        self._worker = worker
        self._key_label = key_label
        self._timeout_ms = timeout_ms
        self._public_key = worker.call(
            self._load, timeout_ms, name="load_signing_key", key_label=key_label
        )

    @classmethod
    def generate(cls, worker: HsmWorker, key_label: str, *, timeout_ms: int = 5_000) -> HsmSigner:
        """Generate a new key pair in the token; refuses a label that is already used."""

        def generate_in_token(context: HsmContext) -> None:
            if context.has_key(ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS, key_label):
                raise ValueError(f"an Ed25519 key labelled {key_label!r} already exists")
            parameters = context.session.create_domain_parameters(
                KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: ED25519_CURVE_OID_DER}, local=True
            )
            parameters.generate_keypair(
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                store=True,
                label=key_label,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                # Explicit rather than trusting the token's defaults: the private key can
                # never be read out, wrapped or exported, and is usable only after login.
                private_template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                    Attribute.TOKEN: True,
                },
                public_template={Attribute.TOKEN: True, Attribute.PRIVATE: False},
            )

        worker.call(generate_in_token, timeout_ms, name="generate_signing_key", key_label=key_label)
        return cls(worker, key_label, timeout_ms=timeout_ms)

    @classmethod
    def load_or_generate(
        cls, worker: HsmWorker, key_label: str, *, timeout_ms: int = 5_000
    ) -> HsmSigner:
        try:
            return cls(worker, key_label, timeout_ms=timeout_ms)
        except HsmKeyNotFoundError:
            return cls.generate(worker, key_label, timeout_ms=timeout_ms)

    @property
    def key_label(self) -> str:
        return self._key_label

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key (read once, when the signer was created)."""
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`, made inside the HSM."""
        if not isinstance(message, bytes):
            raise TypeError("message must be bytes")
        return self._worker.call(
            lambda context: self._sign(context, message),
            self._timeout_ms,
            name="sign",
            key_label=self._key_label,
        )

    async def sign_async(self, message: bytes) -> bytes:
        """`sign` for the event loop."""
        if not isinstance(message, bytes):
            raise TypeError("message must be bytes")
        return await self._worker.call_async(
            lambda context: self._sign(context, message),
            self._timeout_ms,
            name="sign",
            key_label=self._key_label,
        )

    # -- run on the worker thread ----------------------------------------------------------

    def _load(self, context: HsmContext) -> bytes:
        private_key = context.find_key(ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS, self._key_label)
        _require_non_extractable(private_key, self._key_label)
        public_key = context.find_key(ObjectClass.PUBLIC_KEY, KeyType.EC_EDWARDS, self._key_label)
        return decode_ec_point(public_key[Attribute.EC_POINT])

    def _sign(self, context: HsmContext, message: bytes) -> bytes:
        private_key = context.find_key(ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS, self._key_label)
        signature = private_key.sign(message, mechanism=Mechanism.EDDSA)
        if len(signature) != SIGNATURE_LENGTH:
            raise HsmUnavailableError(f"HSM returned a {len(signature)}-byte Ed25519 signature")
        return bytes(signature)


def _require_non_extractable(key: Any, label: str) -> None:
    if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE]:
        raise UnsafeKeyError(
            f"the private key labelled {label!r} is extractable or not sensitive; a validator "
            "key must never be able to leave the HSM"
        )
