"""Committed misbehaviour evidence and its consequence: the offender is jailed.

Which evidence a block may carry is `evidence_error` (the node's validation and its evidence
pool both apply it; `docs/spec/consensus.md` §1.4); what committing it does is `commit_evidence`,
run by the block pipeline after the transactions (`docs/spec/state.md` §1, §4.4): each item is
recorded under `0x05 | hash` (so it can never be committed twice) and its offender is removed
from the working copy of the validator set of height + 2. It stays out ("jailed") until a
VALIDATOR_UPDATE approved by the remaining validators adds it back. A removal that would leave
the set empty is not made: the chain cannot run without validators, and with a single
validator left nobody else could restore anyone (the evidence is still recorded).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from emrchain.state import keys
from emrchain.state.validators import (
    ValidatorUpdateError,
    apply_validator_updates,
    read_validator_set,
)
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.codec import DecodeError
from emrchain.types.evidence import Evidence, EvidenceError, decode_evidence
from emrchain.types.limits import Limits
from emrchain.types.validator import Validator, ValidatorSet

MAX_EVIDENCE_AGE_BLOCKS = 10_000
"""A block at height H may carry evidence of heights H - 10,000 .. H - 1. A chain rule (every
node must agree on which blocks are valid), so it is a protocol constant, not a node setting;
genesis `consensus_params` could carry it in a later format."""

_COMMIT_HEIGHT = struct.Struct(">Q")


def evidence_error(
    item: Evidence,
    block_height: int,
    chain_id: bytes,
    validator_set_at: Callable[[int], ValidatorSet | None],
    view: StateView,
) -> str | None:
    """Why a block at `block_height` may not carry `item` (None: it may). `validator_set_at`:
    the set that signed a given height; `view`: committed state before that block."""
    if not item.height < block_height:
        return f"evidence of height {item.height} is not below the block's {block_height}"
    if block_height - item.height > MAX_EVIDENCE_AGE_BLOCKS:
        return f"evidence of height {item.height} is older than {MAX_EVIDENCE_AGE_BLOCKS} blocks"
    validator_set = validator_set_at(item.height)
    if validator_set is None:
        return f"no validator set is known for height {item.height}"
    try:
        item.verify(chain_id, validator_set)
    except EvidenceError as error:
        return str(error)
    if view.get(keys.committed_evidence_key(item.hash)) is not None:
        return "this evidence was committed already"
    return None


def block_evidence_error(
    evidence: tuple[Evidence, ...],
    block_height: int,
    chain_id: bytes,
    validator_set_at: Callable[[int], ValidatorSet | None],
    view: StateView,
) -> str | None:
    """`evidence_error` of each item, and no item twice in one block."""
    hashes = [item.hash for item in evidence]
    if len(set(hashes)) != len(hashes):
        return "the same evidence appears twice in the block"
    for index, item in enumerate(evidence):
        reason = evidence_error(item, block_height, chain_id, validator_set_at, view)
        if reason is not None:
            return f"evidence {index}: {reason}"
    return None


def commit_evidence(
    evidence: tuple[Evidence, ...],
    state: OverlayStateView,
    height: int,
    limits: Limits,
) -> None:
    """Record each item and jail its offender from height + 2 (module docstring)."""
    if not evidence:
        return
    working = read_validator_set(state, keys.VALIDATORS_AFTER_NEXT)
    jailed = working
    for item in evidence:
        state.put(
            keys.committed_evidence_key(item.hash), _COMMIT_HEIGHT.pack(height) + item.encode()
        )
        if item.validator not in jailed:
            continue  # already out (jailed earlier, or removed by an update)
        try:
            jailed = apply_validator_updates(jailed, [Validator(item.validator, 0)], limits)
        except ValidatorUpdateError:
            continue  # it was the last validator: the set must not become empty
    if jailed != working:
        state.put(keys.VALIDATORS_AFTER_NEXT, jailed.encode())


def decode_committed(value: bytes) -> tuple[int, Evidence]:
    """(commit height, evidence) of a `0x05` entry; DecodeError if it is not one."""
    if len(value) < _COMMIT_HEIGHT.size:
        raise DecodeError("CommittedEvidence: shorter than its commit height")
    (height,) = _COMMIT_HEIGHT.unpack_from(value)
    return height, decode_evidence(value[_COMMIT_HEIGHT.size :])
