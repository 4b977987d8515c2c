"""Authenticated, encrypted validator connections (docs/spec/p2p.md).

The node uses `PeerManager` (connections), `P2PConfig` (limits) and `MsgpackPayloads` (bounded
payload decoding for its reactors); the other modules are the pieces they are built from.
"""

from emrchain.p2p.config import P2PConfig
from emrchain.p2p.connection import ReceivedMessage
from emrchain.p2p.errors import (
    CloseReason,
    HandshakeError,
    HandshakeFailure,
    MessageTooLargeError,
    P2PError,
    PayloadError,
    PayloadLimitError,
)
from emrchain.p2p.identity import NodeAddress, node_id
from emrchain.p2p.manager import PeerManager
from emrchain.p2p.payload import MsgpackPayloads
from emrchain.p2p.stats import P2PStats, PeerStats

__all__ = [
    "CloseReason",
    "HandshakeError",
    "HandshakeFailure",
    "MessageTooLargeError",
    "MsgpackPayloads",
    "NodeAddress",
    "P2PConfig",
    "P2PError",
    "P2PStats",
    "PayloadError",
    "PayloadLimitError",
    "PeerManager",
    "PeerStats",
    "ReceivedMessage",
    "node_id",
]
