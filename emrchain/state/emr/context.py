"""What every EMR handler shares: refusals as exceptions, the transaction id, the sender.

Handlers raise `TransactionRefusedError(code, message)` from anywhere in their checks;
`emr_handler` turns it into the transaction's result, and the pipeline then drops everything
the handler wrote. So a refused transaction changes nothing, however deep the check that
refused it.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Callable, Collection

from emrchain.schema import Role
from emrchain.schema.codec import DecodedTransaction
from emrchain.state.application import BlockContext, Handler
from emrchain.state.codes import ResultCode
from emrchain.state.emr.access import member_status
from emrchain.state.emr.entities import Member
from emrchain.state.emr.tables import TransactionRefusedError, member_of_key
from emrchain.state.result import TxResult
from emrchain.state.view import OverlayStateView, StateView

_NONCE_AND_LENGTH = struct.Struct(">QH")

EmrHandlerFunction = Callable[[DecodedTransaction, OverlayStateView, BlockContext], TxResult]


def emr_handler(function: EmrHandlerFunction) -> Handler:
    """Adapt a handler that may raise TransactionRefusedError to the pipeline's Handler contract."""

    @functools.wraps(function)
    def handler(tx: DecodedTransaction, state: OverlayStateView, context: BlockContext) -> TxResult:
        try:
            return function(tx, state, context)
        except TransactionRefusedError as refusal:
            return TxResult.make(refusal.code, refusal.message)

    return handler


def transaction_id(tx: DecodedTransaction) -> bytes:
    """SHA-256 of the transaction's bytes, rebuilt from the decoded envelope.

    The envelope has exactly one encoding (`docs/spec/encoding.md` §4), so the rebuilt bytes are
    the bytes that were decoded, and this is the id the tx index and clients use."""
    return hashlib.sha256(
        bytes((tx.version, len(tx.chain_id)))
        + tx.chain_id
        + bytes((tx.kind,))
        + tx.sender
        + _NONCE_AND_LENGTH.pack(tx.nonce, len(tx.payload))
        + tx.payload
        + tx.signature
    ).digest()


def require_sender(view: StateView, tx: DecodedTransaction) -> Member:
    """The active member whose current key signed `tx`; else NOT_A_MEMBER, KEY_ROTATED or
    MEMBER_REVOKED."""
    status = member_status(view, tx.sender)
    if isinstance(status, Member):
        return status
    if status == ResultCode.KEY_ROTATED:
        member = member_of_key(view, tx.sender)
        current = member.current_key.hex()[:16] if member is not None else "?"
        raise TransactionRefusedError(
            status,
            f"sender key {tx.sender.hex()[:16]} was rotated away; the member now signs with "
            f"{current}",
        )
    if status == ResultCode.MEMBER_REVOKED:
        raise TransactionRefusedError(status, f"member {tx.sender.hex()[:16]} is revoked")
    raise TransactionRefusedError(
        status, f"sender {tx.sender.hex()[:16]} is not a registered member key"
    )


def require_role(member: Member, roles: Collection[Role], action: str) -> None:
    """ROLE_NOT_PERMITTED unless the member's role is one of `roles`."""
    if member.role not in roles:
        allowed = ", ".join(sorted(role.name.lower() for role in roles))
        raise TransactionRefusedError(
            ResultCode.ROLE_NOT_PERMITTED,
            f"a {member.role.name.lower()} may not {action} (only: {allowed})",
        )


def short(identifier: bytes) -> str:
    """First 16 hex digits: enough to identify an id or key in a result message."""
    return identifier[:8].hex()  # = hex()[:16], without hexing all 32 bytes
