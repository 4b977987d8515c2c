"""Validator-set changes: applying updates, diffing sets, and the open update proposals.

A validator update is proposed and approved by current validators through VALIDATOR_UPDATE
transactions; it is applied once the approvers hold more than 2/3 of the current voting power
and takes effect at height + 2 (`docs/spec/state.md` §4). The helpers here are pure so the
application computes the sets the store then records.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from emrchain.state import keys
from emrchain.state.view import StateView
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.execution import StateCorruptionError as StateCorruptionError
from emrchain.types.limits import DEFAULT_LIMITS, MAX_VALIDATORS_CEILING, Limits
from emrchain.types.validator import Validator, ValidatorSet

MAX_OPEN_PROPOSALS_CEILING = 1_024
"""Hard cap on open proposals any configuration may allow (bounds the decoder)."""


# StateCorruptionError is defined in `types/execution.py`, below the store that reports it at
# startup (`store/reconcile.py`), and re-exported here.


class ValidatorUpdateError(ValueError):
    """The updates cannot be applied: the resulting set would be invalid."""


def apply_validator_updates(
    validator_set: ValidatorSet, updates: Iterable[Validator], limits: Limits = DEFAULT_LIMITS
) -> ValidatorSet:
    """The set after `updates` in order (power 0 removes, otherwise add or change the power).

    Raises ValidatorUpdateError if an update removes a key that is not in the set, or if the
    result is not a valid set (empty, too many validators, power out of range).
    """
    powers = {validator.public_key: validator.power for validator in validator_set}
    for update in updates:
        if update.power == 0:
            if update.public_key not in powers:
                raise ValidatorUpdateError(
                    f"cannot remove {update.public_key.hex()[:16]}: not a validator"
                )
            del powers[update.public_key]
        else:
            try:
                update.validate_basic()
            except ValueError as error:
                raise ValidatorUpdateError(str(error)) from None
            powers[update.public_key] = update.power
    result = ValidatorSet(Validator(key, power) for key, power in powers.items())
    try:
        result.validate_basic(limits)
    except ValueError as error:
        raise ValidatorUpdateError(f"the resulting validator set is invalid: {error}") from None
    return result


def validator_set_changes(before: ValidatorSet, after: ValidatorSet) -> list[Validator]:
    """The updates that turn `before` into `after`, sorted by key (power 0 = removed)."""
    changes = [
        Validator(validator.public_key, validator.power)
        for validator in after
        if before.power_of(validator.public_key) != validator.power
    ]
    changes += [
        Validator(validator.public_key, 0)
        for validator in before
        if validator.public_key not in after
    ]
    return sorted(changes, key=lambda validator: validator.public_key)


def read_validator_sets(view: StateView) -> tuple[ValidatorSet, ValidatorSet]:
    """(set for the next block, set for the block after it), as recorded in application state.

    Between blocks these are the sets of heights last + 1 and last + 2; while a block executes
    the second is the working copy that approved updates change."""
    return (
        read_validator_set(view, keys.VALIDATORS_NEXT),
        read_validator_set(view, keys.VALIDATORS_AFTER_NEXT),
    )


def read_validator_set(view: StateView, key: bytes) -> ValidatorSet:
    """Decode the validator set stored under `key`; StateCorruptionError if absent or invalid."""
    raw = view.get(key)
    if raw is None:
        raise StateCorruptionError(f"validator set {key.hex()} is missing (was genesis applied?)")
    try:
        return ValidatorSet.decode(raw, Limits(max_validators=MAX_VALIDATORS_CEILING))
    except DecodeError as error:
        raise StateCorruptionError(f"validator set {key.hex()} is undecodable: {error}") from None


@dataclass(frozen=True, slots=True)
class ValidatorProposal:
    """One proposed change (validator_key, power, epoch, node_key, address) and the validators
    approving it: approvals count only for exactly the same node key and address."""

    validator_key: bytes
    power: int
    epoch: int
    opened_height: int
    approvers: tuple[bytes, ...]
    node_key: bytes = bytes(32)
    address: str = ""

    @property
    def identity(self) -> tuple[bytes, int, int, bytes, str]:
        return (self.validator_key, self.power, self.epoch, self.node_key, self.address)

    def with_approver(self, approver: bytes) -> ValidatorProposal:
        approvers = tuple(sorted((*self.approvers, approver)))
        return ValidatorProposal(
            self.validator_key,
            self.power,
            self.epoch,
            self.opened_height,
            approvers,
            self.node_key,
            self.address,
        )


NODE_ADDRESS_LIMIT_BYTES = 255
"""What the proposal decoder accepts for an address (the u8 prefix); the schema bounds it lower."""


def encode_proposals(proposals: Iterable[ValidatorProposal]) -> bytes:
    """list16 of `validator_key key | power u64 | epoch u64 | node_key key | address (u8
    length + UTF-8) | opened_height u64 | list16(approver key)`, proposals sorted by identity
    (key, power, epoch, node key, address), approvers ascending."""
    ordered = sorted(proposals, key=lambda proposal: proposal.identity)
    writer = Writer().u16(len(ordered))
    for proposal in ordered:
        writer.fixed(proposal.validator_key, 32).u64(proposal.power).u64(proposal.epoch)
        writer.fixed(proposal.node_key, 32).var_bytes(proposal.address.encode("utf-8"), 1)
        writer.u64(proposal.opened_height).u16(len(proposal.approvers))
        for approver in sorted(proposal.approvers):
            writer.fixed(approver, 32)
    return writer.bytes()


def decode_proposals(data: bytes) -> list[ValidatorProposal]:
    reader = Reader(data, "ValidatorProposals")
    count = reader.count(2, MAX_OPEN_PROPOSALS_CEILING, "count")
    proposals = []
    for _ in range(count):
        validator_key = reader.fixed(32, "validator_key")
        power = reader.u64("power")
        epoch = reader.u64("epoch")
        node_key = reader.fixed(32, "node_key")
        try:
            address = reader.var_bytes(1, NODE_ADDRESS_LIMIT_BYTES, "address").decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("ValidatorProposals.address: not UTF-8") from None
        opened_height = reader.u64("opened_height")
        approver_count = reader.count(2, MAX_VALIDATORS_CEILING, "approver_count")
        approvers = tuple(reader.fixed(32, "approver") for _ in range(approver_count))
        if any(a >= b for a, b in itertools.pairwise(approvers)):
            raise DecodeError("ValidatorProposals.approvers: not strictly ascending")
        proposals.append(
            ValidatorProposal(
                validator_key, power, epoch, opened_height, approvers, node_key, address
            )
        )
    reader.finish()
    identities = [proposal.identity for proposal in proposals]
    if any(a >= b for a, b in itertools.pairwise(identities)):
        raise DecodeError("ValidatorProposals: not strictly ascending by identity")
    return proposals


def read_proposals(view: StateView) -> list[ValidatorProposal]:
    raw = view.get(keys.VALIDATOR_PROPOSALS)
    if raw is None:
        return []
    try:
        return decode_proposals(raw)
    except DecodeError as error:
        raise StateCorruptionError(f"validator proposals are undecodable: {error}") from None
