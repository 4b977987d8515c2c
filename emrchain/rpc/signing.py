"""Signed RPC requests (`docs/spec/rpc.md` §Signed requests): one digest for client and server.

Both sides call `request_digest`, so what a client signs is by construction what the node
checks.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from emrchain.crypto.keys import Signer, verify_signature
from emrchain.rpc.parse import decimal, lower_hex
from emrchain.types.signing import Domain, signed_message

HEADER_KEY = "X-Emrchain-Key"
HEADER_TIMESTAMP = "X-Emrchain-Timestamp"
HEADER_NONCE = "X-Emrchain-Nonce"
HEADER_SIGNATURE = "X-Emrchain-Signature"
HEADER_ACCESS_EVENT = "X-Emrchain-Access-Event"
NONCE_BYTES = 16
MAX_TIMESTAMP_MS = (1 << 63) - 1  # the digest packs it as a u64; past 2^63 is never a real time
MAX_PATH_BYTES = 2048


class RequestSignatureError(ValueError):
    """The signature headers are missing or malformed (not: the signature is wrong)."""


@dataclass(frozen=True, slots=True)
class SignatureHeaders:
    key: bytes
    timestamp_ms: int
    nonce: bytes
    signature: bytes

    def as_dict(self) -> dict[str, str]:
        return {
            HEADER_KEY: self.key.hex(),
            HEADER_TIMESTAMP: str(self.timestamp_ms),
            HEADER_NONCE: self.nonce.hex(),
            HEADER_SIGNATURE: self.signature.hex(),
        }


def request_digest(method: str, path: str, body: bytes, timestamp_ms: int, nonce: bytes) -> bytes:
    """SHA-256 over method, path-with-query, body hash, timestamp and nonce."""
    if not method.isascii() or not path.isascii() or len(path) > MAX_PATH_BYTES:
        raise RequestSignatureError("method and path must be ASCII, path at most 2048 bytes")
    if len(nonce) != NONCE_BYTES or not 0 <= timestamp_ms < 1 << 63:
        raise RequestSignatureError("nonce must be 16 bytes and timestamp within 0..2^63-1")
    return hashlib.sha256(
        method.upper().encode()
        + b"\x00"
        + path.encode()
        + b"\x00"
        + hashlib.sha256(body).digest()
        + struct.pack(">Q", timestamp_ms)
        + nonce
    ).digest()


def sign_request(
    signer: Signer,
    chain_id: bytes,
    method: str,
    path: str,
    body: bytes,
    timestamp_ms: int,
    nonce: bytes | None = None,
) -> SignatureHeaders:
    """The headers that authenticate this request as `signer`."""
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    digest = request_digest(method, path, body, timestamp_ms, nonce)
    signature = signer.sign(signed_message(Domain.RPC_REQUEST, chain_id, digest))
    return SignatureHeaders(signer.public_key, timestamp_ms, nonce, signature)


def parse_headers(headers: dict[str, str] | object) -> SignatureHeaders:
    """Read the four headers; RequestSignatureError naming the first missing/malformed one."""
    values = {}
    for name, length in ((HEADER_KEY, 32), (HEADER_NONCE, NONCE_BYTES), (HEADER_SIGNATURE, 64)):
        text = headers.get(name)  # type: ignore[attr-defined]
        if text is None:
            raise RequestSignatureError(f"missing header {name}")
        try:
            value = lower_hex(text)
        except ValueError:
            raise RequestSignatureError(f"header {name} is not lowercase hex") from None
        if len(value) != length:
            raise RequestSignatureError(f"header {name} must be {length} bytes of hex")
        values[name] = value
    timestamp_text = headers.get(HEADER_TIMESTAMP)  # type: ignore[attr-defined]
    timestamp_ms = decimal(timestamp_text, MAX_TIMESTAMP_MS) if timestamp_text else None
    if timestamp_ms is None:
        raise RequestSignatureError(f"header {HEADER_TIMESTAMP} must be Unix milliseconds")
    return SignatureHeaders(
        values[HEADER_KEY], timestamp_ms, values[HEADER_NONCE], values[HEADER_SIGNATURE]
    )


def verify_request(
    headers: SignatureHeaders, chain_id: bytes, method: str, path: str, body: bytes
) -> bool:
    digest = request_digest(method, path, body, headers.timestamp_ms, headers.nonce)
    return verify_signature(
        headers.key, signed_message(Domain.RPC_REQUEST, chain_id, digest), headers.signature
    )
