"""Stateful admission under the EMR rules: block space only for those who may sign.

The mempool's stateful check (`emrchain.mempool.StatefulCheck`), the senders a committed block
makes it recheck, and the same sender rule for judging a proposed block. Pure: it reads a
StateView, a validator set and the pool's pending transactions, and writes nothing. The rules
and the reasoning behind them are in `docs/spec/state.md` §6:

- every kind but VALIDATOR_UPDATE: the sender is the current key of an active member of the
  committed state (`not_a_member`, `key_rotated`, `member_revoked`, the execution codes of
  `access-control.md` §2 in snake case), and no ROTATE_KEY of the sender is pending before it
  (`key_rotation_pending`: it would be refused at execution with KEY_ROTATED);
- VALIDATOR_UPDATE: the sender is in the validator set of the next height (`not_a_validator`).

Cost: one member lookup (two state reads through the store's state cache, a memoised decode)
per distinct sender of a batch, and a few slices and dict lookups per transaction.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from enum import StrEnum

from emrchain.schema import PUBLIC_KEY_BYTES, TxKind
from emrchain.state.codes import ResultCode
from emrchain.state.emr.access import member_status
from emrchain.state.emr.entities import Member
from emrchain.state.emr.tables import member_of_key
from emrchain.state.result import TxResult
from emrchain.state.view import StateView
from emrchain.types.block import Block
from emrchain.types.validator import ValidatorSet

Outcome = tuple[str, str]
"""(code, reason) as the mempool's stateful check returns it."""
LastPending = Callable[[bytes], tuple[int, bytes] | None]
"""Sender -> (nonce, raw) of its newest pending transaction, or None (`Mempool.last_pending`)."""

_ADMITTED: Outcome = ("ok", "")
_NONCE = struct.Struct(">Q").unpack_from
_VALIDATOR_UPDATE = int(TxKind.VALIDATOR_UPDATE)
_ROTATE_KEY = int(TxKind.ROTATE_KEY)
_REVOKE_MEMBER = int(TxKind.REVOKE_MEMBER)
_OK = int(ResultCode.OK)


class SenderCode(StrEnum):
    """Admission codes of the sender rule (`docs/spec/state.md` §6)."""

    NOT_A_MEMBER = "not_a_member"
    KEY_ROTATED = "key_rotated"
    MEMBER_REVOKED = "member_revoked"
    NOT_A_VALIDATOR = "not_a_validator"
    KEY_ROTATION_PENDING = "key_rotation_pending"


def envelope_kind_sender(raw: bytes) -> tuple[int, bytes]:
    """(kind, sender) of a transaction the core's batch check accepted."""
    kind_offset = 2 + raw[1]
    return raw[kind_offset], raw[kind_offset + 1 : kind_offset + 1 + PUBLIC_KEY_BYTES]


def _nonce(raw: bytes) -> int:
    return int(_NONCE(raw, 3 + raw[1] + PUBLIC_KEY_BYTES)[0])


def _payload_key(raw: bytes) -> bytes:
    """The payload's first field, a 32-byte key (REVOKE_MEMBER's `member_key`)."""
    start = 3 + raw[1] + PUBLIC_KEY_BYTES + 8 + 2
    return raw[start : start + PUBLIC_KEY_BYTES]


def member_verdict(view: StateView, sender: bytes) -> Outcome:
    """Is `sender` the current key of an active member of `view`? The codes and reasons of
    execution's sender check (`context.require_sender`), for a client."""
    status = member_status(view, sender)
    if isinstance(status, Member):
        return _ADMITTED
    short = sender.hex()[:16]
    if status == ResultCode.KEY_ROTATED:
        member = member_of_key(view, sender)
        current = member.current_key.hex()[:16] if member is not None else "?"
        return (
            SenderCode.KEY_ROTATED,
            f"sender key {short} was rotated away; the member now signs with {current}",
        )
    if status == ResultCode.MEMBER_REVOKED:
        return SenderCode.MEMBER_REVOKED, f"member {short} is revoked"
    return (
        SenderCode.NOT_A_MEMBER,
        f"sender {short} is not a registered member key (a key that a pending REGISTER_MEMBER "
        "or ROTATE_KEY introduces may sign once that transaction is committed)",
    )


def validator_verdict(validators: ValidatorSet, height: int, sender: bytes) -> Outcome:
    if sender in validators:
        return _ADMITTED
    return (
        SenderCode.NOT_A_VALIDATOR,
        f"sender {sender.hex()[:16]} is not in the validator set of height {height}; only "
        "validators send VALIDATOR_UPDATE",
    )


class SenderJudge:
    """The committed-state sender rule for the transactions of one batch or block, each
    sender judged once (`judge`)."""

    __slots__ = ("_height", "_validator_set", "_validators", "_verdicts", "_view")

    def __init__(
        self, view: StateView, height: int, validator_set: Callable[[int], ValidatorSet]
    ) -> None:
        """`height` is the one the transactions would execute at: last committed + 1."""
        self._view = view
        self._height = height
        self._validator_set = validator_set
        self._validators: ValidatorSet | None = None
        self._verdicts: dict[bytes, Outcome] = {}

    def judge(self, kind: int, sender: bytes) -> Outcome:
        if kind == _VALIDATOR_UPDATE:
            # Validators are not members; read the set only for the rare batch that needs it.
            if self._validators is None:
                self._validators = self._validator_set(self._height)
            return validator_verdict(self._validators, self._height, sender)
        verdict = self._verdicts.get(sender)
        if verdict is None:
            verdict = self._verdicts[sender] = member_verdict(self._view, sender)
        return verdict

    def refusals(
        self, txs: Sequence[bytes], *, first_only: bool = False
    ) -> list[tuple[int, bytes, Outcome]]:
        """(index, sender, outcome) of each transaction of `txs` the rule refuses (only the
        first with `first_only`), for a proposed block: per transaction a slice and a dict
        lookup once its sender is judged."""
        verdicts = self._verdicts
        found: list[tuple[int, bytes, Outcome]] = []
        for index, raw in enumerate(txs):
            offset = 2 + raw[1]
            kind = raw[offset]
            sender = raw[offset + 1 : offset + 1 + PUBLIC_KEY_BYTES]
            outcome = verdicts.get(sender) if kind != _VALIDATOR_UPDATE else None
            if outcome is None:
                outcome = self.judge(kind, sender)
            if outcome is not _ADMITTED:
                found.append((index, sender, outcome))
                if first_only:
                    break
        return found


def _after_rotation(rotation: int, nonce: int) -> Outcome:
    """The verdict on a transaction of a sender whose ROTATE_KEY has nonce `rotation`. A
    pending ROTATE_KEY is always its sender's newest pending transaction (nothing of the sender
    is admitted after it), so at admission `nonce` is above it; at a recheck the rotation
    itself and what precedes it are judged too, and pass."""
    if rotation < nonce:
        return (
            SenderCode.KEY_ROTATION_PENDING,
            f"the sender's ROTATE_KEY (nonce {rotation}) is pending: after it this key is "
            "refused (KEY_ROTATED); sign with the new key once the rotation is committed",
        )
    return _ADMITTED


class _Batch:
    """What judging one batch remembers."""

    __slots__ = ("judge", "rotations", "settled")

    def __init__(self, judge: SenderJudge) -> None:
        self.judge = judge
        self.settled: dict[bytes, Outcome] = {}
        """Per sender: the outcome of each of its further transactions in the batch (not
        VALIDATOR_UPDATE or ROTATE_KEY): a refusal, or admitted when no rotation is pending."""
        self.rotations: dict[bytes, int | None] = {}
        """Per sender: the nonce of its ROTATE_KEY pending or earlier in the batch, or None."""


class SenderAdmission:
    """The node's stateful admission check (call it with a batch) and its recheck senders.

    `state_view()` gives the committed state, `committed_height()` its height,
    `validator_set(height)` the validator set of a height up to committed + 2, and
    `last_pending` the pool's newest pending transaction of a sender.
    """

    def __init__(
        self,
        state_view: Callable[[], StateView],
        committed_height: Callable[[], int],
        validator_set: Callable[[int], ValidatorSet],
        last_pending: LastPending,
    ) -> None:
        self._state_view = state_view
        self._committed_height = committed_height
        self._validator_set = validator_set
        self._last_pending = last_pending

    def judge(self) -> SenderJudge:
        """A judge of the committed-state rule for the next height (proposal validation)."""
        return SenderJudge(self._state_view(), self._committed_height() + 1, self._validator_set)

    def __call__(self, txs: Sequence[bytes]) -> list[Outcome]:
        """One (code, reason) per transaction: the committed-state rule, then the pending
        ROTATE_KEY rule (see the module docstring)."""
        batch = _Batch(self.judge())
        # The hot path (admission of anchors from a few hundred members): a sender whose
        # outcome is settled for the batch costs a slice and a dict lookup per transaction.
        settled = batch.settled
        outcomes: list[Outcome] = []
        append = outcomes.append
        for raw in txs:
            offset = 2 + raw[1]
            kind = raw[offset]
            sender = raw[offset + 1 : offset + 1 + PUBLIC_KEY_BYTES]
            if kind != _VALIDATOR_UPDATE and kind != _ROTATE_KEY:
                outcome = settled.get(sender)
                if outcome is not None:
                    append(outcome)
                    continue
            append(self._judge(batch, raw, kind, sender))
        return outcomes

    def _judge(self, batch: _Batch, raw: bytes, kind: int, sender: bytes) -> Outcome:
        """The first transaction of a sender in the batch, and every VALIDATOR_UPDATE and
        ROTATE_KEY, or any transaction of a sender with a rotation pending."""
        outcome = batch.judge.judge(kind, sender)
        if kind == _VALIDATOR_UPDATE:
            return outcome
        if outcome is not _ADMITTED:
            batch.settled[sender] = outcome  # refused by the committed state: all its batch
            return outcome
        rotations = batch.rotations
        if sender in rotations:
            rotation = rotations[sender]
        else:
            rotation = rotations[sender] = self._pending_rotation(sender)
        if rotation is None:
            if kind == _ROTATE_KEY:
                rotations[sender] = _nonce(raw)  # what follows it in this batch is refused
                batch.settled.pop(sender, None)
            else:
                batch.settled[sender] = _ADMITTED
            return _ADMITTED
        return _after_rotation(rotation, _nonce(raw))

    def _pending_rotation(self, sender: bytes) -> int | None:
        newest = self._last_pending(sender)
        if newest is None:
            return None
        nonce, raw = newest
        return nonce if envelope_kind_sender(raw)[0] == _ROTATE_KEY else None

    def recheck_senders(self, block: Block, results: Sequence[TxResult]) -> set[bytes]:
        """Senders whose verdict the committed `block` may have changed; call after it is
        committed (the state view and validator sets are those after it).

        Exact because only three changes turn an admitted sender into a refused one: an
        applied ROTATE_KEY (its sender's key is rotated away), an applied REVOKE_MEMBER (the
        member's current key, found through the key it names), and a validator leaving the
        set of the next height. REGISTER_MEMBER and a rotation's new key only make keys
        admissible, and the pool holds no transaction of a key it refused. The pending
        ROTATE_KEY rule looks only at a sender's own pending transactions, which a commit only
        removes from the front of its queue."""
        view = self._state_view()
        senders: set[bytes] = set()
        for raw, result in zip(block.txs, results, strict=True):
            kind = raw[2 + raw[1]]  # most blocks hold neither kind: one byte per transaction
            if (kind != _ROTATE_KEY and kind != _REVOKE_MEMBER) or result.code != _OK:
                continue  # a refused one changed nothing but its nonce
            if kind == _ROTATE_KEY:
                senders.add(envelope_kind_sender(raw)[1])
            else:
                named = _payload_key(raw)
                senders.add(named)
                member = member_of_key(view, named)
                if member is not None:
                    senders.add(member.current_key)
        header = block.header
        if header.validators_hash != header.next_validators_hash:
            before = self._validator_set(header.height)
            after = self._validator_set(header.height + 1)
            senders.update(
                validator.public_key for validator in before if validator.public_key not in after
            )
        return senders
