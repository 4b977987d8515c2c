"""The transaction envelope: a signed, kind-tagged payload from one member key.

Layout (`docs/spec/encoding.md` §4): version u8 | chain id (u8 length + bytes) | kind u8 |
sender 32 | nonce u64 | payload (u16 length + bytes) | signature 64. The signature covers
every byte before it; the transaction id is SHA-256 of all bytes.

The payload rules live in `emrchain.schema` and are applied by its codec (`schema/codec.py`),
so `Transaction.validate_basic()` and the compiled batch checker enforce exactly the same rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from emrchain import _core, schema
from emrchain.crypto.keys import Signer
from emrchain.schema import codec
from emrchain.schema.verdicts import TxDecodeError
from emrchain.types import envelope

TxKind = schema.TxKind


@dataclass(frozen=True, slots=True)
class Transaction:
    """A decoded transaction. Build with `Transaction.create`, parse with `Transaction.decode`."""

    chain_id: bytes
    kind: TxKind
    sender: bytes
    nonce: int
    fields: Mapping[str, Any]
    signature: bytes = bytes(schema.SIGNATURE_BYTES)
    version: int = schema.TX_VERSION
    _payload: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def create(
        cls,
        signer: Signer,
        chain_id: bytes,
        kind: TxKind,
        nonce: int,
        fields: Mapping[str, Any],
    ) -> Transaction:
        """Encode `fields` for `kind`, sign the envelope with `signer` and return it."""
        payload = codec.encode_payload(kind, fields)
        unsigned = envelope.encode_unsigned(chain_id, kind, signer.public_key, nonce, payload)
        return cls(
            chain_id=chain_id,
            kind=TxKind(kind),
            sender=signer.public_key,
            nonce=nonce,
            fields=MappingProxyType(dict(fields)),
            signature=signer.sign(unsigned),
            _payload=payload,
        )

    @classmethod
    def decode(
        cls, raw: bytes, chain_id: bytes, max_tx_bytes: int = schema.TX_MAX_BYTES_LIMIT
    ) -> Transaction:
        """Parse and statelessly validate `raw`; raise TxDecodeError (a ValueError) if invalid.

        The signature is not verified here; see `verify_signature`.
        """
        decoded = codec.decode_transaction(raw, chain_id, max_tx_bytes)
        return cls(
            chain_id=decoded.chain_id,
            kind=decoded.kind,
            sender=decoded.sender,
            nonce=decoded.nonce,
            fields=MappingProxyType(decoded.fields),
            signature=decoded.signature,
            version=decoded.version,
            _payload=decoded.payload,
        )

    @property
    def payload(self) -> bytes:
        return self._payload or codec.encode_payload(self.kind, self.fields)

    def signed_bytes(self) -> bytes:
        """The bytes the sender signs: the envelope without its signature."""
        return envelope.encode_unsigned(
            self.chain_id, self.kind, self.sender, self.nonce, self.payload
        )

    def encode(self) -> bytes:
        return self.signed_bytes() + self.signature

    @property
    def tx_id(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    def validate_basic(self, max_tx_bytes: int = schema.TX_MAX_BYTES_LIMIT) -> None:
        """Apply every stateless rule (size, chain id, kind, payload schema); raise on failure."""
        if self.version != schema.TX_VERSION:
            raise TxDecodeError(_core.Verdict.BAD_VERSION, f"version={self.version}")
        codec.check_arguments(self.chain_id, max_tx_bytes)
        codec.decode_transaction(self.encode(), self.chain_id, max_tx_bytes)

    def verify_signature(self) -> bool:
        verdicts: bytes = _core.verify_transactions([self.encode()], 1)
        return verdicts == b"\x01"
