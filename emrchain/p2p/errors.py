"""Why a handshake failed or a connection closed: one stable code per cause.

The codes are counted in `P2PStats` and written in every log line, so an operator can tell an
unknown peer from a corrupted link from a peer that simply went away.
"""

from __future__ import annotations

from enum import StrEnum


class HandshakeFailure(StrEnum):
    TIMEOUT = "timeout"
    CONNECTION_CLOSED = "connection_closed"
    BAD_HELLO = "bad_hello"
    VERSION_MISMATCH = "version_mismatch"
    CHAIN_ID_MISMATCH = "chain_id_mismatch"
    # The peer sent back our own ephemeral key: a reflection of our hello.
    REFLECTED_HELLO = "reflected_hello"
    KEY_EXCHANGE_FAILED = "key_exchange_failed"
    BAD_AUTH_MESSAGE = "bad_auth_message"
    AUTH_DECRYPTION_FAILED = "auth_decryption_failed"
    UNKNOWN_PEER = "unknown_peer"
    UNEXPECTED_PEER_KEY = "unexpected_peer_key"
    SELF_CONNECTION = "self_connection"
    BAD_SIGNATURE = "bad_signature"
    BAD_READY = "bad_ready"
    TOO_MANY_PENDING = "too_many_pending"
    # max_pending_handshakes_per_address connections from that address are already pending.
    TOO_MANY_PENDING_FROM_ADDRESS = "too_many_pending_from_address"
    # The peer authenticated with a key we banned for misbehaviour (`PeerManager.banned_peers`).
    BANNED = "banned"


class CloseReason(StrEnum):
    CLOSED_BY_PEER = "closed_by_peer"
    CONNECTION_ERROR = "connection_error"
    FRAME_TOO_LARGE = "frame_too_large"
    FRAME_TOO_SMALL = "frame_too_small"
    TRUNCATED_FRAME = "truncated_frame"
    DECRYPTION_FAILED = "decryption_failed"
    BAD_STREAM_TAG = "bad_stream_tag"
    BAD_KEEPALIVE = "bad_keepalive"
    IDLE_TIMEOUT = "idle_timeout"
    DUPLICATE_CONNECTION = "duplicate_connection"
    REPLACED_BY_DUPLICATE = "replaced_by_duplicate"
    PEER_NO_LONGER_ALLOWED = "peer_no_longer_allowed"
    # The node reported enough misbehaviour for a ban (`PeerManager.report_misbehaviour`).
    BANNED = "banned"
    SHUTDOWN = "shutdown"


class P2PError(Exception):
    """Base of the p2p layer's own errors."""


class HandshakeError(P2PError):
    """The handshake was refused; `reason` is the counted code, `detail` the log text."""

    def __init__(self, reason: HandshakeFailure, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FrameError(P2PError):
    """A received frame broke the transport rules; the connection it came on must close."""

    def __init__(self, reason: CloseReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MessageTooLargeError(P2PError, ValueError):
    """`send`/`broadcast` got a payload that cannot fit in one frame (a caller bug)."""

