"""Network addresses in config: `host:port` listen addresses and `<node_id>@host:port` peers.

A node id is the lowercase hex of the node key's 32-byte Ed25519 public key; the P2P handshake
proves possession of that key, so a peer entry pins whom we expect to reach at that address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

NODE_ID_HEX_CHARS = 64
_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_NODE_ID = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Address:
    """A TCP endpoint; `host` is an IP literal (IPv6 without brackets) or a DNS name."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class PeerAddress:
    """A peer we dial: its node id (node public key) and where it listens."""

    node_id: bytes
    address: Address

    def __str__(self) -> str:
        return f"{self.node_id.hex()}@{self.address}"


def validate_host(host: str) -> str:
    """Return `host` if it is an IP literal or a valid DNS name (RFC 1123); raise ValueError."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.split(".")
    if len(host) > 253 or not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{host!r} is neither an IP address nor a valid host name")
    return host


def validate_port(text: str) -> int:
    """Parse a decimal TCP port within 1..65535; raise ValueError."""
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {text!r} is not a number within 1..65535")
    return int(text)


def parse_address(text: str) -> Address:
    """Parse `host:port` or `[ipv6]:port`; raise ValueError naming what is wrong."""
    if text.startswith("["):
        host, separator, port = text[1:].partition("]:")
        if not separator:
            raise ValueError(f"{text!r} is not of the form [ipv6]:port")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        return Address(host, validate_port(port))
    host, separator, port = text.rpartition(":")
    if not separator or not host:
        raise ValueError(f"{text!r} is not of the form host:port")
    if ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, e.g. [::1]:26656")
    return Address(validate_host(host), validate_port(port))


def parse_node_id(text: str) -> bytes:
    """Parse a node id: 64 hex characters (a 32-byte Ed25519 public key), not all zeros."""
    if not _NODE_ID.fullmatch(text):
        raise ValueError(f"node id {text!r} is not {NODE_ID_HEX_CHARS} hex characters")
    node_id = bytes.fromhex(text)
    if node_id == bytes(32):
        raise ValueError("node id must not be all zeros")
    return node_id


def parse_peer_address(text: str) -> PeerAddress:
    """Parse `<node_id_hex>@host:port`; raise ValueError naming what is wrong."""
    node_id, separator, address = text.partition("@")
    if not separator:
        raise ValueError(f"{text!r} is not of the form <node_id_hex>@host:port")
    return PeerAddress(parse_node_id(node_id), parse_address(address))
