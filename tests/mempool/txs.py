"""Signed test transactions, a counting verifier and a scriptable stateful check."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache

from emrchain import _core, schema
from emrchain.crypto.keys import Ed25519Signer
from emrchain.mempool import Mempool, MempoolConfig
from emrchain.types import Transaction, TxKind
from tests.vectors.generate_types import sample_fields

CHAIN_ID = b"emrchain-mempool-test"
OTHER_CHAIN_ID = b"emrchain-other-chain"


@cache
def signer(sender: int) -> Ed25519Signer:
    return Ed25519Signer(hashlib.sha256(b"mempool-test-sender-%d" % sender).digest())


def sender_key(sender: int) -> bytes:
    return signer(sender).public_key


@cache
def anchor(
    sender: int,
    nonce: int,
    variant: int = 0,
    *,
    cid_bytes: int = 36,
    chain_id: bytes = CHAIN_ID,
) -> bytes:
    """A valid signed ANCHOR_RECORD; `variant` changes the payload (a conflicting tx for the
    same nonce), `cid_bytes` (2..64) its length."""
    label = b"%d/%d/%d" % (sender, nonce, variant)
    fields = dict(sample_fields()[TxKind.ANCHOR_RECORD])
    fields["record_id"] = hashlib.sha256(b"record/" + label).digest()
    fields["cid"] = (hashlib.sha256(label).digest() * 2)[:cid_bytes]
    return Transaction.create(
        signer(sender), chain_id, TxKind.ANCHOR_RECORD, nonce, fields
    ).encode()


def tx_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def bad_signature(raw: bytes) -> bytes:
    """The same envelope with one signature bit flipped (structurally valid, unverifiable)."""
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


def envelope(
    kind: int,
    payload: bytes,
    *,
    sender: bytes | None = None,
    nonce: int = 1,
    chain_id: bytes = CHAIN_ID,
) -> bytes:
    """An envelope around arbitrary payload bytes with a dummy signature (for structure tests)."""
    return (
        bytes([schema.TX_VERSION, len(chain_id)])
        + chain_id
        + bytes([kind])
        + (sender if sender is not None else sender_key(0))
        + nonce.to_bytes(8, "big")
        + len(payload).to_bytes(2, "big")
        + payload
        + b"\x07" * schema.SIGNATURE_BYTES
    )


class CountingVerifier:
    """Wraps `_core.verify_transactions`, recording every transaction it is asked to verify."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.verified: list[bytes] = []

    def __call__(self, txs: Sequence[bytes], threads: int) -> bytes:
        self.calls.append(len(txs))
        self.verified.extend(txs)
        return _core.verify_transactions(txs, threads)


class ScriptedCheck:
    """A stateful check refusing every transaction of a banned sender; records its calls."""

    CODE = "sender_banned"

    def __init__(self) -> None:
        self.banned: set[bytes] = set()
        self.calls: list[int] = []

    def __call__(self, txs: Sequence[bytes]) -> list[tuple[str, str]]:
        self.calls.append(len(txs))
        outcomes = []
        for raw in txs:
            start = 3 + raw[1]
            if raw[start : start + 32] in self.banned:
                outcomes.append((self.CODE, "sender is banned"))
            else:
                outcomes.append(("ok", ""))
        return outcomes


class Chain:
    """The committed nonce of each sender, as the node's state would report it."""

    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}

    def __call__(self, sender: bytes) -> int:
        return self.nonces.get(sender, 0)


def make_pool(
    config: MempoolConfig | None = None,
    *,
    chain: Chain | None = None,
    check: ScriptedCheck | None = None,
    verifier: CountingVerifier | None = None,
) -> Mempool:
    return Mempool(
        config or MempoolConfig(),
        CHAIN_ID,
        chain or Chain(),
        check,
        verify_transactions=verifier,
    )
