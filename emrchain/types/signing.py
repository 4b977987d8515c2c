"""Domain separation: the first byte of every signed message names what is being signed.

A signature made for one purpose can never verify as another, because the domain byte differs.
Transactions use their version byte (1) as their domain; every other signed message is
`domain byte | chain id length u8 | chain id | body`.
"""

from __future__ import annotations

from enum import IntEnum


class Domain(IntEnum):
    TRANSACTION = 1
    VOTE = 2
    PROPOSAL = 3
    RPC_REQUEST = 4
    KEY_ROTATION = 5
    P2P_HANDSHAKE = 6
    NODE_REGISTRATION = 7
    SNAPSHOT_VOUCH = 8


def signed_message(domain: Domain, chain_id: bytes, body: bytes) -> bytes:
    """The exact bytes a signer signs for `body` in `domain` on chain `chain_id`."""
    if domain == Domain.TRANSACTION:
        raise ValueError("transactions sign their own envelope (raw[:-64])")
    if not 1 <= len(chain_id) <= 50:
        raise ValueError("chain id must be 1..50 bytes")
    return bytes((domain, len(chain_id))) + chain_id + body


def node_registration_message(
    chain_id: bytes, node_key: bytes, organization_id: str, address: str
) -> bytes:
    """What a node's P2P key signs so that an admin can register it (REGISTER_NODE's `proof`).

    It binds the key to this chain, to the organisation that registers it and to its address:
    without the node's private key nobody can enter the key into another organisation's
    registry (`docs/spec/encoding.md` §2.3)."""
    organization = organization_id.encode("ascii")
    address_bytes = address.encode("utf-8")
    if len(organization) > 255 or len(address_bytes) > 255:
        raise ValueError("organisation id and address are at most 255 bytes each")
    body = (
        node_key
        + bytes((len(organization),))
        + organization
        + bytes((len(address_bytes),))
        + address_bytes
    )
    return signed_message(Domain.NODE_REGISTRATION, chain_id, body)
