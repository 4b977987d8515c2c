"""Signed RPC requests (`docs/spec/rpc.md` §Signed requests): one digest for client and server.

Both sides call `request_digest`, so what a client signs is by construction what the node
checks. The digest names the node the request is for (its node id), so a request cannot be
replayed on another node, and carries the body's hash, which the client also sends as a
header: the node verifies the signature before it reads a byte of the body.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from emrchain.api.parse import decimal, lower_hex
from emrchain.crypto.keys import Signer, verify_signature
from emrchain.types.signing import Domain, signed_message

HEADER_KEY = "X-Emrchain-Key"
HEADER_TIMESTAMP = "X-Emrchain-Timestamp"
HEADER_NONCE = "X-Emrchain-Nonce"
HEADER_SIGNATURE = "X-Emrchain-Signature"
HEADER_CONTENT_SHA256 = "X-Emrchain-Content-Sha256"
HEADER_ACCESS_EVENT = "X-Emrchain-Access-Event"
HEADER_RECORD_STATUS = "X-Emrchain-Record-Status"
"""On a served read: current, superseded or entered-in-error (`records.md` §11)."""
HEADER_PREFIX = "x-emrchain-"
NONCE_BYTES = 16
NODE_ID_BYTES = 32
EMPTY_BODY_SHA256 = hashlib.sha256(b"").digest()
MAX_TIMESTAMP_MS = (1 << 63) - 1  # the digest packs it as a u64; past 2^63 is never a real time
MAX_PATH_BYTES = 2048


class RequestSignatureError(ValueError):
    """The signature headers are missing or malformed (not: the signature is wrong)."""


class DuplicateHeaderError(RequestSignatureError):
    """An `X-Emrchain-*` header appears more than once: which one counts would be a guess."""


@dataclass(frozen=True, slots=True)
class SignatureHeaders:
    key: bytes
    timestamp_ms: int
    nonce: bytes
    signature: bytes
    body_sha256: bytes = EMPTY_BODY_SHA256

    def as_dict(self) -> dict[str, str]:
        headers = {
            HEADER_KEY: self.key.hex(),
            HEADER_TIMESTAMP: str(self.timestamp_ms),
            HEADER_NONCE: self.nonce.hex(),
            HEADER_SIGNATURE: self.signature.hex(),
        }
        if self.body_sha256 != EMPTY_BODY_SHA256:
            headers[HEADER_CONTENT_SHA256] = self.body_sha256.hex()
        return headers


def request_digest(
    method: str,
    path: str,
    body_sha256: bytes,
    timestamp_ms: int,
    nonce: bytes,
    node_id: bytes,
) -> bytes:
    """SHA-256 over method, path-with-query, body hash, timestamp, nonce and node id."""
    if not method.isascii() or not path.isascii() or len(path) > MAX_PATH_BYTES:
        raise RequestSignatureError("method and path must be ASCII, path at most 2048 bytes")
    if len(nonce) != NONCE_BYTES or not 0 <= timestamp_ms < 1 << 63:
        raise RequestSignatureError("nonce must be 16 bytes and timestamp within 0..2^63-1")
    if len(body_sha256) != 32 or len(node_id) != NODE_ID_BYTES:
        raise RequestSignatureError("body hash and node id must be 32 bytes each")
    return hashlib.sha256(
        method.upper().encode()
        + b"\x00"
        + path.encode()
        + b"\x00"
        + body_sha256
        + struct.pack(">Q", timestamp_ms)
        + nonce
        + node_id
    ).digest()


def sign_request(
    signer: Signer,
    chain_id: bytes,
    node_id: bytes,
    method: str,
    path: str,
    body: bytes,
    timestamp_ms: int,
    nonce: bytes | None = None,
) -> SignatureHeaders:
    """The headers that authenticate this request as `signer`, for the node `node_id` only
    (its P2P public key, `node_id` in `GET /status`)."""
    nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
    body_sha256 = hashlib.sha256(body).digest()
    digest = request_digest(method, path, body_sha256, timestamp_ms, nonce, node_id)
    signature = signer.sign(signed_message(Domain.RPC_REQUEST, chain_id, digest))
    return SignatureHeaders(signer.public_key, timestamp_ms, nonce, signature, body_sha256)


def refuse_duplicates(headers: Mapping[str, str]) -> None:
    """DuplicateHeaderError if any `X-Emrchain-*` header appears twice (the signature headers,
    the body hash, the access event): the node and a proxy might each take another copy."""
    # items(), not the keys: a multidict's keys name a repeated header once.
    names = [name.lower() for name, _ in headers.items() if name.lower().startswith(HEADER_PREFIX)]
    if len(names) != len(set(names)):
        repeated = next(name for name in names if names.count(name) > 1)
        raise DuplicateHeaderError(f"header {repeated} appears more than once")


def _hex_header(headers: Mapping[str, str], name: str, length: int) -> bytes | None:
    text = headers.get(name)
    if text is None:
        return None
    try:
        value = lower_hex(text)
    except ValueError:
        raise RequestSignatureError(f"header {name} is not lowercase hex") from None
    if len(value) != length:
        raise RequestSignatureError(f"header {name} must be {length} bytes of hex")
    return value


def parse_headers(headers: Mapping[str, str]) -> SignatureHeaders:
    """Read the signature headers; RequestSignatureError naming the first missing, repeated or
    malformed one. Without `X-Emrchain-Content-Sha256` the body is taken to be empty."""
    refuse_duplicates(headers)
    values = {}
    for name, length in ((HEADER_KEY, 32), (HEADER_NONCE, NONCE_BYTES), (HEADER_SIGNATURE, 64)):
        value = _hex_header(headers, name, length)
        if value is None:
            raise RequestSignatureError(f"missing header {name}")
        values[name] = value
    timestamp_text = headers.get(HEADER_TIMESTAMP)
    timestamp_ms = decimal(timestamp_text, MAX_TIMESTAMP_MS) if timestamp_text else None
    if timestamp_ms is None:
        raise RequestSignatureError(f"header {HEADER_TIMESTAMP} must be Unix milliseconds")
    body_sha256 = _hex_header(headers, HEADER_CONTENT_SHA256, 32) or EMPTY_BODY_SHA256
    return SignatureHeaders(
        values[HEADER_KEY],
        timestamp_ms,
        values[HEADER_NONCE],
        values[HEADER_SIGNATURE],
        body_sha256,
    )


def verify_request(
    headers: SignatureHeaders, chain_id: bytes, node_id: bytes, method: str, path: str
) -> bool:
    """Whether the signature covers this request for this chain and node. The body is
    checked separately, against `headers.body_sha256`, once it has been read."""
    digest = request_digest(
        method, path, headers.body_sha256, headers.timestamp_ms, headers.nonce, node_id
    )
    return verify_signature(
        headers.key, signed_message(Domain.RPC_REQUEST, chain_id, digest), headers.signature
    )
