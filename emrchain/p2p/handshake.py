"""The authenticated key exchange every connection starts with (docs/spec/p2p.md §2).

Message by message (D = dialer = libsodium kx client, R = responder = kx server):

1. D → R and R → D, at once: `hello` = `u8 length | "EMRP" | u16 version | u8 len | chain id |
   ephemeral X25519 public key (32)`.
2. Both derive directional session keys with `crypto_kx_client/server_session_keys`.
3. D → R: `secretstream header (24) | frame(auth_D)`; R verifies it before revealing anything.
4. R → D: `secretstream header (24) | frame(auth_R)`; D verifies it.
5. D → R: `frame(channel 0, empty)` — "ready": D accepted R; only now does R register D.

`auth` = `node public key (32) | Ed25519 signature (64)` over
`signed_message(P2P_HANDSHAKE, chain_id, role u8 | transcript hash)` where the transcript hash
is `SHA-256(label | hello_D | hello_R)`: it binds both ephemeral keys, both hellos, and (via the
role byte) which side signed. Frames are those of `framing.py`, on the streams the session keys
open, so the transport simply continues where the handshake stops.

The caller bounds the whole exchange with `handshake_timeout_ms`, and the part before the peer
has authenticated with `hello_timeout_ms` (it learns when through `on_peer_authenticated`).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import IntEnum

from nacl import bindings as sodium
from nacl.exceptions import CryptoError

from emrchain.crypto.keys import Signer, verify_signature
from emrchain.p2p.errors import CloseReason, FrameError, HandshakeError, HandshakeFailure
from emrchain.p2p.framing import (
    KEEPALIVE_CHANNEL,
    STREAM_HEADER_BYTES,
    STREAM_MAC_BYTES,
    FrameOpener,
    FrameSealer,
    frame_prefix,
    read_frame,
)
from emrchain.p2p.identity import NODE_KEY_BYTES
from emrchain.types.signing import Domain, signed_message

PROTOCOL_MAGIC = b"EMRP"
PROTOCOL_VERSION = 1
MAX_CHAIN_ID_BYTES = 50
EPHEMERAL_KEY_BYTES = sodium.crypto_kx_PUBLIC_KEY_BYTES
TRANSCRIPT_LABEL = b"emrchain-p2p-handshake-v1"
SIGNATURE_BYTES = 64

PeerAuthenticated = Callable[[bytes], None]

_HELLO_FIXED = struct.Struct(">4sHB")  # magic, version, chain id length
# Hello body sizes the protocol can produce; the length byte is checked against them unread.
HELLO_MIN_BYTES = _HELLO_FIXED.size + 1 + EPHEMERAL_KEY_BYTES
HELLO_MAX_BYTES = _HELLO_FIXED.size + MAX_CHAIN_ID_BYTES + EPHEMERAL_KEY_BYTES
AUTH_PLAINTEXT_BYTES = NODE_KEY_BYTES + SIGNATURE_BYTES
AUTH_CIPHERTEXT_BYTES = AUTH_PLAINTEXT_BYTES + STREAM_MAC_BYTES
READY_CIPHERTEXT_BYTES = 1 + STREAM_MAC_BYTES


class Role(IntEnum):
    """Which side of the TCP connection; signed so a signature cannot be reflected."""

    DIALER = 1
    RESPONDER = 2


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    chain_id: bytes
    ephemeral_key: bytes


@dataclass(slots=True)
class HandshakeResult:
    """An authenticated peer and the two stream halves the transport continues with."""

    peer_public_key: bytes
    role: Role
    sealer: FrameSealer
    opener: FrameOpener


def encode_hello(chain_id: bytes, ephemeral_key: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """The hello exactly as sent, length byte included (the transcript hashes these bytes)."""
    if not 1 <= len(chain_id) <= MAX_CHAIN_ID_BYTES:
        raise ValueError(f"chain id must be 1..{MAX_CHAIN_ID_BYTES} bytes")
    body = _HELLO_FIXED.pack(PROTOCOL_MAGIC, version, len(chain_id)) + chain_id + ephemeral_key
    return bytes((len(body),)) + body


def decode_hello(body: bytes) -> Hello:
    """Parse a hello body (without its length byte); refuse anything malformed."""
    if not HELLO_MIN_BYTES <= len(body) <= HELLO_MAX_BYTES:
        raise HandshakeError(HandshakeFailure.BAD_HELLO, f"hello of {len(body)} bytes")
    magic, version, chain_id_length = _HELLO_FIXED.unpack_from(body)
    if magic != PROTOCOL_MAGIC:
        raise HandshakeError(HandshakeFailure.BAD_HELLO, "not an emrchain p2p hello (bad magic)")
    expected = _HELLO_FIXED.size + chain_id_length + EPHEMERAL_KEY_BYTES
    if chain_id_length == 0 or len(body) != expected:
        raise HandshakeError(HandshakeFailure.BAD_HELLO, "hello length disagrees with chain id")
    chain_id = body[_HELLO_FIXED.size : _HELLO_FIXED.size + chain_id_length]
    return Hello(version, chain_id, body[-EPHEMERAL_KEY_BYTES:])


def transcript_hash(dialer_hello: bytes, responder_hello: bytes) -> bytes:
    """SHA-256 over both hellos in role order: binds both ephemeral keys to the signatures."""
    return hashlib.sha256(TRANSCRIPT_LABEL + dialer_hello + responder_hello).digest()


def auth_signed_message(chain_id: bytes, role: Role, transcript: bytes) -> bytes:
    """What `role`'s node key signs: domain P2P_HANDSHAKE, the chain id, role and transcript."""
    return signed_message(Domain.P2P_HANDSHAKE, chain_id, bytes((role,)) + transcript)


def session_keys(
    role: Role, ephemeral_public: bytes, ephemeral_secret: bytes, peer_ephemeral: bytes
) -> tuple[bytes, bytes]:
    """`(receive_key, send_key)` from libsodium kx; the dialer is the kx client."""
    try:
        if role is Role.DIALER:
            return sodium.crypto_kx_client_session_keys(
                ephemeral_public, ephemeral_secret, peer_ephemeral
            )
        return sodium.crypto_kx_server_session_keys(
            ephemeral_public, ephemeral_secret, peer_ephemeral
        )
    except CryptoError as error:
        # libsodium refuses a peer key that yields an all-zero shared secret (small order).
        raise HandshakeError(HandshakeFailure.KEY_EXCHANGE_FAILED, str(error)) from None


async def perform_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    role: Role,
    node_key: Signer,
    chain_id: bytes,
    allowed_peer_keys: Collection[bytes],
    expected_peer_key: bytes | None = None,
    on_peer_authenticated: PeerAuthenticated | None = None,
) -> HandshakeResult:
    """Run the handshake as `role`; return the authenticated peer or raise HandshakeError.

    `expected_peer_key` is the key the dialer dialed (its address names it); a responder passes
    None and accepts any key in `allowed_peer_keys`. `on_peer_authenticated(peer_key)` runs once
    the peer's signature verified and its key is allowed, before we go on (a responder before it
    reveals its own key); it may refuse the peer by raising HandshakeError. Network errors and
    EOF surface as HandshakeError(CONNECTION_CLOSED); the caller applies the timeout.
    """
    try:
        return await _handshake(
            reader,
            writer,
            role,
            node_key,
            chain_id,
            allowed_peer_keys,
            expected_peer_key,
            on_peer_authenticated or _accept_any,
        )
    except asyncio.IncompleteReadError:
        raise HandshakeError(
            HandshakeFailure.CONNECTION_CLOSED, "peer closed the connection during the handshake"
        ) from None
    except ConnectionError as error:
        raise HandshakeError(HandshakeFailure.CONNECTION_CLOSED, repr(error)) from None
    except FrameError as error:
        if error.reason in (CloseReason.CLOSED_BY_PEER, CloseReason.TRUNCATED_FRAME):
            raise HandshakeError(HandshakeFailure.CONNECTION_CLOSED, error.detail) from None
        raise HandshakeError(HandshakeFailure.BAD_AUTH_MESSAGE, str(error)) from None


def _accept_any(peer_key: bytes) -> None:
    """The default `on_peer_authenticated`: every allowed key is welcome."""


async def _handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    role: Role,
    node_key: Signer,
    chain_id: bytes,
    allowed_peer_keys: Collection[bytes],
    expected_peer_key: bytes | None,
    on_peer_authenticated: PeerAuthenticated,
) -> HandshakeResult:
    ephemeral_public, ephemeral_secret = sodium.crypto_kx_keypair()
    own_hello = encode_hello(chain_id, ephemeral_public)
    # Both hellos travel at once: neither side waits for the other to speak first.
    writer.write(own_hello)
    await writer.drain()
    peer_hello = await _read_hello(reader)
    hello = decode_hello(peer_hello[1:])
    if hello.version != PROTOCOL_VERSION:
        raise HandshakeError(
            HandshakeFailure.VERSION_MISMATCH,
            f"peer speaks version {hello.version}, we speak {PROTOCOL_VERSION}",
        )
    if hello.chain_id != chain_id:
        raise HandshakeError(
            HandshakeFailure.CHAIN_ID_MISMATCH,
            f"peer is on chain {hello.chain_id!r}, we are on {chain_id!r}",
        )
    if hello.ephemeral_key == ephemeral_public:
        raise HandshakeError(HandshakeFailure.REFLECTED_HELLO, "peer echoed our ephemeral key")

    receive_key, send_key = session_keys(
        role, ephemeral_public, ephemeral_secret, hello.ephemeral_key
    )
    # Drop our only reference: the ephemeral secret must not outlive the handshake (forward
    # secrecy). Python cannot wipe the bytes; libsodium-level wiping would need a C helper.
    del ephemeral_secret
    if role is Role.DIALER:
        transcript = transcript_hash(own_hello, peer_hello)
    else:
        transcript = transcript_hash(peer_hello, own_hello)
    sealer = FrameSealer(send_key)
    peer_role = Role.RESPONDER if role is Role.DIALER else Role.DIALER
    own_auth = node_key.public_key + node_key.sign(auth_signed_message(chain_id, role, transcript))

    if role is Role.DIALER:
        await _send_auth(writer, sealer, own_auth)
        opener, peer_key = await _receive_auth(reader, receive_key, chain_id, peer_role, transcript)
        _check_peer_key(peer_key, node_key.public_key, allowed_peer_keys, expected_peer_key)
        on_peer_authenticated(peer_key)
        # "ready": tells the responder we accepted it, so it never registers a peer we refused.
        ready = sealer.seal_message(KEEPALIVE_CHANNEL, b"")
        writer.write(frame_prefix(ready) + ready)
        await writer.drain()
    else:
        # The responder proves nothing about itself until the dialer proved it is allowed.
        opener, peer_key = await _receive_auth(reader, receive_key, chain_id, peer_role, transcript)
        _check_peer_key(peer_key, node_key.public_key, allowed_peer_keys, None)
        on_peer_authenticated(peer_key)
        await _send_auth(writer, sealer, own_auth)
        ciphertext = await read_frame(reader, READY_CIPHERTEXT_BYTES)
        try:
            channel, payload = opener.open_message(ciphertext)
        except FrameError as error:
            raise HandshakeError(HandshakeFailure.BAD_READY, str(error)) from None
        if channel != KEEPALIVE_CHANNEL or payload:
            raise HandshakeError(HandshakeFailure.BAD_READY, "ready message is not empty ch. 0")
    return HandshakeResult(peer_key, role, sealer, opener)


async def _read_hello(reader: asyncio.StreamReader) -> bytes:
    (length,) = await reader.readexactly(1)
    if not HELLO_MIN_BYTES <= length <= HELLO_MAX_BYTES:
        raise HandshakeError(HandshakeFailure.BAD_HELLO, f"hello length byte {length}")
    return bytes((length,)) + await reader.readexactly(length)


async def _send_auth(writer: asyncio.StreamWriter, sealer: FrameSealer, auth: bytes) -> None:
    ciphertext = sealer.seal(auth)
    writer.write(sealer.header + frame_prefix(ciphertext) + ciphertext)
    await writer.drain()


async def _receive_auth(
    reader: asyncio.StreamReader,
    receive_key: bytes,
    chain_id: bytes,
    peer_role: Role,
    transcript: bytes,
) -> tuple[FrameOpener, bytes]:
    header = await reader.readexactly(STREAM_HEADER_BYTES)
    opener = FrameOpener(receive_key, header)
    ciphertext = await read_frame(reader, AUTH_CIPHERTEXT_BYTES)
    try:
        auth = opener.open(ciphertext)
    except FrameError as error:
        # Whoever sent this does not hold the ephemeral secret of the hello we answered:
        # a man in the middle, or a replay of an old handshake.
        raise HandshakeError(HandshakeFailure.AUTH_DECRYPTION_FAILED, error.detail) from None
    if len(auth) != AUTH_PLAINTEXT_BYTES:
        raise HandshakeError(HandshakeFailure.BAD_AUTH_MESSAGE, f"auth of {len(auth)} bytes")
    peer_key, signature = auth[:NODE_KEY_BYTES], auth[NODE_KEY_BYTES:]
    signed = auth_signed_message(chain_id, peer_role, transcript)
    if not verify_signature(peer_key, signed, signature):
        raise HandshakeError(
            HandshakeFailure.BAD_SIGNATURE, f"handshake signature of {peer_key.hex()} is invalid"
        )
    return opener, peer_key


def _check_peer_key(
    peer_key: bytes,
    own_key: bytes,
    allowed_peer_keys: Collection[bytes],
    expected_peer_key: bytes | None,
) -> None:
    if peer_key == own_key:
        raise HandshakeError(HandshakeFailure.SELF_CONNECTION, "connected to ourselves")
    if peer_key not in allowed_peer_keys:
        raise HandshakeError(HandshakeFailure.UNKNOWN_PEER, f"node {peer_key.hex()} is not allowed")
    if expected_peer_key is not None and peer_key != expected_peer_key:
        raise HandshakeError(
            HandshakeFailure.UNEXPECTED_PEER_KEY,
            f"dialed {expected_peer_key.hex()} but {peer_key.hex()} answered",
        )
