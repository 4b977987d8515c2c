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


def signed_message(domain: Domain, chain_id: bytes, body: bytes) -> bytes:
    """The exact bytes a signer signs for `body` in `domain` on chain `chain_id`."""
    if domain == Domain.TRANSACTION:
        raise ValueError("transactions sign their own envelope (raw[:-64])")
    if not 1 <= len(chain_id) <= 50:
        raise ValueError("chain id must be 1..50 bytes")
    return bytes((domain, len(chain_id))) + chain_id + body
