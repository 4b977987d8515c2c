"""Authenticated, encrypted validator connections (docs/spec/p2p.md).

The node uses `PeerManager` (connections) and `P2PConfig` (limits); the other modules are the
pieces they are built from. Payloads are opaque bytes here: the node encodes and decodes its
messages with the bounded codec of `emrchain/types` (`emrchain/node/messages.py`).
"""

from emrchain.p2p.config import P2PConfig
from emrchain.p2p.connection import ReceivedMessage
from emrchain.p2p.errors import (
    CloseReason,
    HandshakeError,
    HandshakeFailure,
    MessageTooLargeError,
    P2PError,
)
from emrchain.p2p.identity import NodeAddress, node_id
from emrchain.p2p.manager import PeerManager
from emrchain.p2p.stats import P2PStats, PeerStats

__all__ = [
    "CloseReason",
    "HandshakeError",
    "HandshakeFailure",
    "MessageTooLargeError",
    "NodeAddress",
    "P2PConfig",
    "P2PError",
    "P2PStats",
    "PeerManager",
    "PeerStats",
    "ReceivedMessage",
    "node_id",
]
