"""Encrypted frames: libsodium secretstream (XChaCha20-Poly1305), one stream per direction.

Wire format of a frame: `u32 big-endian length | ciphertext`, where the ciphertext is one
`crypto_secretstream_xchacha20poly1305_push` of the plaintext `channel u8 | payload`. The length is
checked against the configured maximum **before** the body is read, so a peer can never make us
buffer more than one maximum frame. Secretstream numbers its messages internally: a dropped,
reordered, replayed or altered frame fails to decrypt, and the connection closes.
"""

from __future__ import annotations

import asyncio
import struct

from nacl import bindings as sodium
from nacl.exceptions import CryptoError

from emrchain.p2p.config import FRAME_OVERHEAD_BYTES
from emrchain.p2p.errors import CloseReason, FrameError

LENGTH_PREFIX = struct.Struct(">I")
STREAM_HEADER_BYTES = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
STREAM_MAC_BYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
# Channel 0 belongs to the p2p layer itself (keepalive, handshake confirmation); the node's
# channels are 1..255.
KEEPALIVE_CHANNEL = 0
MIN_APPLICATION_CHANNEL = 1
MAX_CHANNEL = 255


class FrameSealer:
    """The sending half of a connection: encrypts frames in the order they go on the wire."""

    __slots__ = ("_state", "header")

    def __init__(self, key: bytes) -> None:
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        # The header is a random nonce the receiver needs to start its pull state; it is public.
        self.header: bytes = sodium.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, key
        )

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt one message; the result must be sent before the next `seal`."""
        return sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, plaintext, None, _TAG_MESSAGE
        )

    def seal_message(self, channel: int, payload: bytes) -> bytes:
        return self.seal(bytes((channel,)) + payload)


class FrameOpener:
    """The receiving half: decrypts frames in wire order and refuses any altered frame."""

    __slots__ = ("_state",)

    def __init__(self, key: bytes, header: bytes) -> None:
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)

    def open(self, ciphertext: bytes) -> bytes:
        """Decrypt one frame body; raise FrameError if it was not sealed by our peer in order."""
        try:
            plaintext, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
                self._state, ciphertext, None
            )
        except (CryptoError, ValueError) as error:
            # PyNaCl raises its RuntimeError (a CryptoError) when the MAC does not verify.
            raise FrameError(
                CloseReason.DECRYPTION_FAILED, f"frame failed to decrypt: {error}"
            ) from None
        # We only ever push TAG_MESSAGE; FINAL/REKEY/PUSH from a peer is a protocol violation.
        if tag != _TAG_MESSAGE:
            raise FrameError(CloseReason.BAD_STREAM_TAG, f"unexpected secretstream tag {tag}")
        return plaintext

    def open_message(self, ciphertext: bytes) -> tuple[int, bytes]:
        """Decrypt a frame into `(channel, payload)`."""
        plaintext = self.open(ciphertext)
        if not plaintext:
            # Impossible for a frame that passed the length check and decrypted, kept for safety.
            raise FrameError(CloseReason.FRAME_TOO_SMALL, "decrypted frame has no channel byte")
        return plaintext[0], plaintext[1:]


def frame_prefix(ciphertext: bytes) -> bytes:
    return LENGTH_PREFIX.pack(len(ciphertext))


async def read_frame(reader: asyncio.StreamReader, max_frame_bytes: int) -> bytes:
    """Read one frame body (ciphertext), refusing a length above `max_frame_bytes` unread.

    EOF exactly between frames is a clean close by the peer; EOF inside a frame is a truncation.
    """
    try:
        prefix = await reader.readexactly(LENGTH_PREFIX.size)
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise FrameError(
                CloseReason.TRUNCATED_FRAME, "connection ended inside a length prefix"
            ) from None
        raise FrameError(CloseReason.CLOSED_BY_PEER, "peer closed the connection") from None
    (length,) = LENGTH_PREFIX.unpack(prefix)
    if length > max_frame_bytes:
        raise FrameError(
            CloseReason.FRAME_TOO_LARGE,
            f"frame length {length} > max_frame_bytes {max_frame_bytes}",
        )
    if length < FRAME_OVERHEAD_BYTES:
        raise FrameError(
            CloseReason.FRAME_TOO_SMALL, f"frame length {length} < {FRAME_OVERHEAD_BYTES}"
        )
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as error:
        raise FrameError(
            CloseReason.TRUNCATED_FRAME,
            f"connection ended after {len(error.partial)} of {length} frame bytes",
        ) from None
