"""Node identity: a node id is the hex of the node's P2P Ed25519 public key.

The P2P node key is separate from the validator key, so a stolen or rotated transport key never
touches consensus signatures. Peer addresses are `"<node_id_hex>@<host>:<port>"`: the id is part
of the address so a dialer knows whom it must find at the other end.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_KEY_BYTES = 32
NODE_ID_HEX_CHARS = 2 * NODE_KEY_BYTES
# A DNS name is at most 253 characters; anything longer in a config file is a mistake.
MAX_HOST_CHARS = 253


def node_id(public_key: bytes) -> str:
    """The node id (lowercase hex) of a 32-byte node public key."""
    if not isinstance(public_key, bytes) or len(public_key) != NODE_KEY_BYTES:
        raise ValueError("a node public key is exactly 32 bytes")
    return public_key.hex()


def node_key_from_id(node_id_hex: str) -> bytes:
    """The public key a node id names; refuses anything but 64 lowercase hex characters."""
    if (
        not isinstance(node_id_hex, str)
        or len(node_id_hex) != NODE_ID_HEX_CHARS
        or node_id_hex != node_id_hex.lower()
    ):
        raise ValueError(f"a node id is {NODE_ID_HEX_CHARS} lowercase hex characters")
    try:
        return bytes.fromhex(node_id_hex)
    except ValueError:
        raise ValueError(f"a node id is {NODE_ID_HEX_CHARS} lowercase hex characters") from None


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """Where to dial a peer and which node key must answer there."""

    node_id: str
    host: str
    port: int

    @property
    def public_key(self) -> bytes:
        return node_key_from_id(self.node_id)

    @classmethod
    def parse(cls, text: str) -> NodeAddress:
        """Parse `"<node_id_hex>@<host>:<port>"`; raise ValueError saying what is wrong."""
        if not isinstance(text, str):
            raise ValueError("a peer address is a string")
        identity, separator, location = text.partition("@")
        if not separator:
            raise ValueError(f"peer address {text!r} lacks '<node_id>@'")
        node_key_from_id(identity)
        host, separator, port_text = location.rpartition(":")
        if not separator or not host:
            raise ValueError(f"peer address {text!r} lacks 'host:port'")
        if len(host) > MAX_HOST_CHARS:
            raise ValueError(f"peer address host is longer than {MAX_HOST_CHARS} characters")
        # isascii: str.isdigit also accepts digits like '²' that int() refuses.
        if (
            not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5)
            or not 1 <= int(port_text) <= 65_535
        ):
            raise ValueError(f"peer address {text!r} has no valid port (1..65535)")
        return cls(node_id=identity, host=host, port=int(port_text))

    def __str__(self) -> str:
        return f"{self.node_id}@{self.host}:{self.port}"
