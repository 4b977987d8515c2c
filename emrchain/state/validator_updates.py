"""The VALIDATOR_UPDATE rule: validators approve a change of the validator set, which applies
once the approvers hold more than 2/3 of the current voting power (`docs/spec/state.md` §4.2).

An update that adds a validator or changes its power names the validator's P2P node key and
advertised address; applying it records them in VALIDATOR_NODES (`peers.py`), which the P2P
allowed set follows. A removal names neither.

The EMR handler table (`emrchain/state/emr/handlers.py`) maps the kind to `validator_update`;
validators, not members, send it.
"""

from __future__ import annotations

from emrchain.crypto.keycheck import is_prime_order_key
from emrchain.schema.codec import DecodedTransaction
from emrchain.state import keys
from emrchain.state.application import BlockContext
from emrchain.state.codes import ResultCode
from emrchain.state.peers import (
    ValidatorNode,
    check_advertised_address,
    encode_validator_nodes,
    read_validator_nodes,
)
from emrchain.state.result import TxResult
from emrchain.state.validators import (
    ValidatorProposal,
    ValidatorUpdateError,
    apply_validator_updates,
    encode_proposals,
    read_proposals,
    read_validator_set,
)
from emrchain.state.view import OverlayStateView, StateView, read_u64
from emrchain.types.validator import Validator, ValidatorSet

_U64_BYTES = 8


def validator_update(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    """Record the sender's approval of (validator_key, power, epoch); apply the change once the
    approvers hold more than 2/3 of the current voting power (exactly 2/3 is not enough)."""
    current = context.validators
    if tx.sender not in current:
        return TxResult.make(
            ResultCode.NOT_A_VALIDATOR,
            f"sender {tx.sender.hex()[:16]} is not in the validator set of height "
            f"{context.height}; only validators approve validator updates",
        )
    validator_key = tx.fields["validator_key"]
    power = tx.fields["power"]
    epoch = tx.fields["epoch"]
    node_key = tx.fields["node_key"]
    address = tx.fields["address"]
    if power and not is_prime_order_key(validator_key):
        # A removal (power 0) names a key already in the set; only keys entering it are checked.
        return TxResult.make(
            ResultCode.INVALID_VALIDATOR_KEY,
            f"validator key {validator_key.hex()[:16]} is not an Ed25519 public key of the "
            "prime-order subgroup",
        )
    refusal = _check_node(power, node_key, address)
    if refusal is not None:
        return refusal
    last_epoch = read_u64(state, keys.validator_epoch_key(validator_key))
    if epoch <= last_epoch:
        return TxResult.make(
            ResultCode.STALE_EPOCH,
            f"epoch {epoch} is not above {last_epoch}, the epoch of the last update applied "
            "to this validator",
        )
    proposals = _live_proposals(state, context)
    identity = (validator_key, power, epoch, node_key, address)
    existing = next((p for p in proposals if p.identity == identity), None)
    if existing is not None and tx.sender in existing.approvers:
        return TxResult.make(
            ResultCode.DUPLICATE_APPROVAL, "this validator already approved this update"
        )
    if existing is None and len(proposals) >= context.rules.max_open_validator_proposals:
        return TxResult.make(
            ResultCode.TOO_MANY_PROPOSALS,
            f"{len(proposals)} validator updates are already open "
            f"(limit {context.rules.max_open_validator_proposals})",
        )
    working = read_validator_set(state, keys.VALIDATORS_AFTER_NEXT)
    try:
        updated = apply_validator_updates(
            working, [Validator(validator_key, power)], context.limits
        )
    except ValidatorUpdateError as error:
        return TxResult.make(ResultCode.INVALID_VALIDATOR_SET, str(error))
    if existing is None:
        existing_or_new = ValidatorProposal(
            validator_key, power, epoch, context.height, (), node_key, address
        )
    else:
        existing_or_new = existing
    proposal = existing_or_new.with_approver(tx.sender)
    others = [p for p in proposals if p is not existing]
    approved_power = sum(current.power_of(approver) for approver in proposal.approvers)
    if current.has_quorum(approved_power):
        if updated != working:
            state.put(keys.VALIDATORS_AFTER_NEXT, updated.encode())
        _write_validator_node(state, ValidatorNode(validator_key, node_key, address), updated)
        state.put(keys.validator_epoch_key(validator_key), epoch.to_bytes(_U64_BYTES, "big"))
        # Proposals for this key at or below the applied epoch can never apply any more.
        remaining = [p for p in others if p.validator_key != validator_key or p.epoch > epoch]
        _write_proposals(state, remaining)
        return TxResult.make(
            ResultCode.OK,
            f"approved by {approved_power} of {current.total_power} voting power; "
            f"takes effect at height {context.height + 2}",
        )
    _write_proposals(state, [*others, proposal])
    return TxResult.make(
        ResultCode.OK,
        f"approval recorded: {approved_power} of {current.total_power} voting power",
    )


def _live_proposals(state: StateView, context: BlockContext) -> list[ValidatorProposal]:
    """Open proposals minus the expired ones and those whose epoch was overtaken."""
    lifetime = context.rules.validator_proposal_lifetime_blocks
    epochs: dict[bytes, int] = {}
    live = []
    for proposal in read_proposals(state):
        if proposal.opened_height + lifetime <= context.height:
            continue
        key = proposal.validator_key
        if key not in epochs:
            epochs[key] = read_u64(state, keys.validator_epoch_key(key))
        if proposal.epoch > epochs[key]:
            live.append(proposal)
    return live


def _write_proposals(state: OverlayStateView, proposals: list[ValidatorProposal]) -> None:
    if proposals:
        state.put(keys.VALIDATOR_PROPOSALS, encode_proposals(proposals))
    elif state.get(keys.VALIDATOR_PROPOSALS) is not None:
        state.delete(keys.VALIDATOR_PROPOSALS)


def _check_node(power: int, node_key: bytes, address: str) -> TxResult | None:
    """An addition names a prime-order node key and a valid address (or none); a removal
    names neither, so each change has one encoding."""
    if not power:
        if node_key != bytes(32) or address:
            return TxResult.make(
                ResultCode.INVALID_NODE_KEY,
                "a removal (power 0) carries an all-zero node key and an empty address",
            )
        return None
    if not is_prime_order_key(node_key):
        return TxResult.make(
            ResultCode.INVALID_NODE_KEY,
            f"node key {node_key.hex()[:16]} is not an Ed25519 public key of the prime-order "
            "subgroup",
        )
    problem = check_advertised_address(address)
    if problem is not None:
        return TxResult.make(ResultCode.INVALID_NODE_ADDRESS, problem)
    return None


def _write_validator_node(
    state: OverlayStateView, applied: ValidatorNode, after_next: ValidatorSet
) -> None:
    """Record the node key of an applied addition, and sweep the entries of validators in
    neither of the next two sets: a removed validator keeps its entry (and its connections)
    while it still signs, and loses it at the first applied update after it left."""
    next_set = read_validator_set(state, keys.VALIDATORS_NEXT)
    entries = {
        entry.validator_key: entry
        for entry in read_validator_nodes(state)
        if entry.validator_key in next_set or entry.validator_key in after_next
    }
    if applied.node_key != bytes(32):
        entries[applied.validator_key] = applied
    encoded = encode_validator_nodes(entries.values())
    if entries:
        if state.get(keys.VALIDATOR_NODES) != encoded:
            state.put(keys.VALIDATOR_NODES, encoded)
    elif state.get(keys.VALIDATOR_NODES) is not None:
        state.delete(keys.VALIDATOR_NODES)
