"""Validation of a commit notice: which senders' committed nonces move, and to what."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from emrchain import schema
from emrchain.mempool.pending import PendingSet

TX_ID_BYTES = 32


def plan_commit(
    pending: PendingSet, committed_tx_ids: Iterable[bytes], stated: Mapping[bytes, int]
) -> tuple[list[bytes], dict[bytes, int]]:
    """Check a block's tx ids and the node's new committed nonces against the pending set.

    Returns (the ids as a list, the new committed nonce of each sender that has pending
    transactions and whose nonce moves). A sender absent from `stated` with a pending
    transaction among the ids moves to that transaction's nonce (its earlier nonces must have
    committed too). Raises ValueError, changing nothing, for a malformed id or key, a nonce that
    is not a u64, or one that moves back. A stated nonce below an included transaction's is
    not an error: execution did not apply that transaction (see below).
    """
    tx_ids = list(committed_tx_ids)
    for position, tx_id in enumerate(tx_ids):
        if not isinstance(tx_id, bytes) or len(tx_id) != TX_ID_BYTES:
            raise ValueError(f"committed tx id {position} is not 32 bytes")
    senders = pending.senders
    new_nonces: dict[bytes, int] = {}
    for sender, nonce in stated.items():
        if not isinstance(sender, bytes) or len(sender) != schema.PUBLIC_KEY_BYTES:
            raise ValueError("committed_nonce keys must be 32-byte sender keys")
        if not isinstance(nonce, int) or isinstance(nonce, bool):
            raise ValueError(f"committed nonce of sender {sender.hex()} is not an int")
        if not 0 <= nonce <= schema.U64_MAX:
            raise ValueError(f"committed nonce {nonce} of sender {sender.hex()} is not a u64")
        queue = senders.get(sender)
        if queue is None:
            continue  # nothing pending: the next admission asks the node's state afresh
        if nonce < queue.committed_nonce:
            raise ValueError(
                f"committed nonce of sender {sender.hex()} moves back from "
                f"{queue.committed_nonce} to {nonce}"
            )
        new_nonces[sender] = nonce
    for tx_id in tx_ids:
        entry = pending.by_id.get(tx_id)
        if entry is None:
            continue
        given = stated.get(entry.sender)
        if given is None:
            new_nonces[entry.sender] = max(new_nonces.get(entry.sender, 0), entry.nonce)
        # A given nonce below the included transaction's means execution did not apply it
        # (e.g. a proposer included a nonce gap). The sender's queue follows the state's nonce
        # and the transaction stays pending: its nonce may still be the sender's next one, and
        # a later block can apply it. Never raise over block contents.
    return tx_ids, new_nonces
