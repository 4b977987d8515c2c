"""The node registry: REGISTER_NODE and REMOVE_NODE (`docs/spec/state.md` §4.5).

An organisation's admin registers the P2P node key (and advertised address) of a full node the
organisation runs; nodes in the registry are allowed past the P2P handshake of every node
(`emrchain/state/peers.py`). Only an admin of the same organisation removes it. The registry is
bounded per organisation and in all.

A registration carries the node key's own signature (`proof`) over chain, organisation, key and
address: without it any admin could register another organisation's validator's node key and keep
that node connected after the validators removed it (the allowed set is a union).
"""

from __future__ import annotations

from emrchain.crypto.keycheck import is_prime_order_key
from emrchain.crypto.keys import verify_signature
from emrchain.schema import Role
from emrchain.schema.codec import DecodedTransaction
from emrchain.state import keys
from emrchain.state.application import BlockContext
from emrchain.state.codes import ResultCode
from emrchain.state.emr.context import emr_handler, require_role, require_sender, short
from emrchain.state.emr.tables import TransactionRefusedError
from emrchain.state.peers import (
    MAX_NODES_PER_ORGANIZATION,
    MAX_REGISTERED_NODES,
    RegisteredNode,
    check_advertised_address,
    encode_registry,
    read_registry,
    read_validator_nodes,
)
from emrchain.state.result import TxResult
from emrchain.state.view import OverlayStateView
from emrchain.types.signing import node_registration_message


@emr_handler
def register_node(
    tx: DecodedTransaction, state: OverlayStateView, context: BlockContext
) -> TxResult:
    sender = require_sender(state, tx)
    require_role(sender, {Role.ADMIN}, "register nodes")
    node_key = tx.fields["node_key"]
    address = tx.fields["address"]
    if not is_prime_order_key(node_key):
        raise TransactionRefusedError(
            ResultCode.INVALID_NODE_KEY,
            f"node key {short(node_key)} is not an Ed25519 key of the prime-order subgroup",
        )
    organization_id = sender.organization_id
    message = node_registration_message(context.chain_id, node_key, organization_id, address)
    if not verify_signature(node_key, message, tx.fields["proof"]):
        raise TransactionRefusedError(
            ResultCode.INVALID_NODE_PROOF,
            f"proof is not node {short(node_key)}'s signature over chain, {organization_id}, "
            "node key and address",
        )
    if any(entry.node_key == node_key for entry in read_validator_nodes(state)):
        raise TransactionRefusedError(
            ResultCode.NODE_KEY_OF_A_VALIDATOR,
            f"node key {short(node_key)} is a validator's; the validator set admits it",
        )
    problem = check_advertised_address(address)
    if problem is not None:
        raise TransactionRefusedError(ResultCode.INVALID_NODE_ADDRESS, problem)
    registry = read_registry(state)
    existing = next((node for node in registry if node.node_key == node_key), None)
    if existing is not None:
        raise TransactionRefusedError(
            ResultCode.NODE_ALREADY_REGISTERED,
            f"node {short(node_key)} is registered by {existing.organization_id}",
        )
    owned = sum(node.organization_id == organization_id for node in registry)
    if owned >= MAX_NODES_PER_ORGANIZATION:
        raise TransactionRefusedError(
            ResultCode.NODE_LIMIT_REACHED,
            f"{organization_id} has {owned} nodes registered (limit {MAX_NODES_PER_ORGANIZATION})",
        )
    if len(registry) >= MAX_REGISTERED_NODES:
        raise TransactionRefusedError(
            ResultCode.NODE_REGISTRY_FULL,
            f"{len(registry)} nodes are registered (limit {MAX_REGISTERED_NODES})",
        )
    registry.append(RegisteredNode(node_key, organization_id, address, context.height))
    state.put(keys.NODE_REGISTRY, encode_registry(registry))
    return TxResult.make(ResultCode.OK, f"node {short(node_key)} registered for {organization_id}")


@emr_handler
def remove_node(tx: DecodedTransaction, state: OverlayStateView, context: BlockContext) -> TxResult:
    sender = require_sender(state, tx)
    require_role(sender, {Role.ADMIN}, "remove nodes")
    node_key = tx.fields["node_key"]
    registry = read_registry(state)
    target = next((node for node in registry if node.node_key == node_key), None)
    if target is None:
        raise TransactionRefusedError(
            ResultCode.NODE_NOT_FOUND, f"node {short(node_key)} is not registered"
        )
    if target.organization_id != sender.organization_id:
        raise TransactionRefusedError(
            ResultCode.NOT_AUTHORIZED,
            f"node {short(node_key)} belongs to {target.organization_id}; an admin of "
            f"{sender.organization_id} cannot remove it",
        )
    remaining = [node for node in registry if node is not target]
    if remaining:
        state.put(keys.NODE_REGISTRY, encode_registry(remaining))
    else:
        state.delete(keys.NODE_REGISTRY)
    return TxResult.make(
        ResultCode.OK, f"node {short(node_key)} of {target.organization_id} removed"
    )
