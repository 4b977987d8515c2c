"""Node keys in state (`docs/spec/state.md` §4.2, §4.5) and the P2P allowed set derived from
them (`emrchain/state/peers.py`): validators' node keys from VALIDATOR_UPDATE, the node registry
(REGISTER_NODE / REMOVE_NODE) and its access rules."""

from __future__ import annotations

from typing import Any

from emrchain.crypto.keys import Ed25519Signer
from emrchain.schema import TxKind
from emrchain.state.codes import ResultCode
from emrchain.state.peers import (
    MAX_NODES_PER_ORGANIZATION,
    RegisteredNode,
    decode_registry,
    encode_registry,
    peer_directory,
    read_registry,
    read_validator_nodes,
)
from tests.state.chain import signer
from tests.state.emr.world import (
    A_ADMIN,
    A_CLINICIAN,
    B_ADMIN,
    HOSPITAL_A,
    HOSPITAL_B,
    World,
    node_fields,
)

GENESIS_NODE_KEYS = {
    signer(index).public_key: signer(f"node/{index}").public_key for index in range(4)
}
NEWCOMER = signer(10).public_key
NEWCOMER_NODE = signer("node/newcomer").public_key


def update(
    validator_key: bytes = NEWCOMER,
    power: int = 5,
    epoch: int = 1,
    node_key: bytes = NEWCOMER_NODE,
    address: str = "10.0.0.10:26656",
) -> dict[str, Any]:
    return {
        "validator_key": validator_key,
        "power": power,
        "epoch": epoch,
        "node_key": node_key,
        "address": address,
    }


def approve(world: World, fields: dict[str, Any], approvers: range = range(3)) -> list[int]:
    txs = [world.tx(signer(index), TxKind.VALIDATOR_UPDATE, fields) for index in approvers]
    return [result.code for result in world.block(txs)]


def node_signer(label: str) -> Ed25519Signer:
    return signer(f"full-node/{label}")


def node(label: str) -> bytes:
    return node_signer(label).public_key


def test_an_approved_validator_is_allowed_at_once_and_dropped_once_it_left_both_sets() -> None:
    world = World(setup=False)
    before = peer_directory(world.state, GENESIS_NODE_KEYS)
    assert before.allowed_keys == frozenset(GENESIS_NODE_KEYS.values())
    assert approve(world, update()) == [ResultCode.OK] * 3
    # In the after-next set only: allowed now, so it can connect and sync before it votes.
    directory = peer_directory(world.state, GENESIS_NODE_KEYS)
    assert NEWCOMER_NODE in directory.allowed_keys
    assert directory.addresses == {NEWCOMER_NODE: "10.0.0.10:26656"}
    removal = update(power=0, epoch=2, node_key=bytes(32), address="")
    assert approve(world, removal) == [ResultCode.OK] * 3
    # Still in the next height's set (it signs that height): still allowed.
    assert NEWCOMER_NODE in peer_directory(world.state, GENESIS_NODE_KEYS).allowed_keys
    world.idle()
    assert NEWCOMER_NODE not in peer_directory(world.state, GENESIS_NODE_KEYS).allowed_keys
    assert [entry.validator_key for entry in read_validator_nodes(world.state)] == [NEWCOMER]
    # The next applied update sweeps the entry of a validator in neither set.
    other = signer(11).public_key
    assert approve(world, update(other, node_key=node("other"), address="")) == [0] * 3
    assert [entry.validator_key for entry in read_validator_nodes(world.state)] == [other]


def test_approvals_count_only_for_the_same_node_key_and_address() -> None:
    world = World(setup=False)
    assert approve(world, update(), range(2)) == [ResultCode.OK] * 2
    assert approve(world, update(node_key=node("elsewhere")), range(2, 3)) == [ResultCode.OK]
    assert NEWCOMER_NODE not in peer_directory(world.state, GENESIS_NODE_KEYS).allowed_keys
    assert approve(world, update(address="10.0.0.11:26656"), range(2, 3)) == [ResultCode.OK]
    assert read_validator_nodes(world.state) == []
    assert approve(world, update(), range(2, 3)) == [ResultCode.OK]
    assert NEWCOMER_NODE in peer_directory(world.state, GENESIS_NODE_KEYS).allowed_keys


def test_bad_node_keys_and_addresses_are_refused() -> None:
    world = World(setup=False)
    cases = [
        (update(node_key=bytes(32)), ResultCode.INVALID_NODE_KEY),
        (update(node_key=b"\x01" + bytes(31)), ResultCode.INVALID_NODE_KEY),
        (update(address="no-port"), ResultCode.INVALID_NODE_ADDRESS),
        (update(address="host:99999"), ResultCode.INVALID_NODE_ADDRESS),
        (update(address="bad host:1"), ResultCode.INVALID_NODE_ADDRESS),
        (update(signer(0).public_key, power=0, epoch=1), ResultCode.INVALID_NODE_KEY),
    ]
    for fields, code in cases:
        result = world.send(signer(0), TxKind.VALIDATOR_UPDATE, fields)
        assert result.code == code, (fields, result)
    assert world.state.get(b"\x04") is None  # no proposal opened


def register(
    world: World, sender: Any, label: str, address: str = "", organization: str = HOSPITAL_A
) -> int:
    """Register node `label` as `sender`, an admin of `organization`, with a valid proof."""
    fields = node_fields(node_signer(label), organization, address)
    return world.send(sender, TxKind.REGISTER_NODE, fields).code


def remove(world: World, sender: Any, key: bytes) -> int:
    return world.send(sender, TxKind.REMOVE_NODE, {"node_key": key}).code


def test_an_admin_registers_and_removes_its_organisations_nodes() -> None:
    world = World()
    assert register(world, A_ADMIN, "a1", "replica.hospital-a.example:26656") == 0
    assert read_registry(world.state) == [
        RegisteredNode(node("a1"), HOSPITAL_A, "replica.hospital-a.example:26656", 2 + 1)
    ]
    directory = peer_directory(world.state, GENESIS_NODE_KEYS)
    assert node("a1") in directory.allowed_keys
    # Admitted, never dialled: one admin's word must not point every node at a host of its
    # choosing (an internal service of another hospital).
    assert node("a1") not in directory.addresses
    assert register(world, A_ADMIN, "a1") == ResultCode.NODE_ALREADY_REGISTERED
    assert remove(world, A_ADMIN, node("a1")) == 0
    assert node("a1") not in peer_directory(world.state, GENESIS_NODE_KEYS).allowed_keys
    assert world.state.get(b"\x70") is None
    assert remove(world, A_ADMIN, node("a1")) == ResultCode.NODE_NOT_FOUND


def test_only_admins_register_and_only_the_owning_organisation_removes() -> None:
    world = World()
    assert register(world, A_CLINICIAN, "c") == ResultCode.ROLE_NOT_PERMITTED
    assert register(world, signer("stranger"), "s") == ResultCode.NOT_A_MEMBER
    assert register(world, A_ADMIN, "a") == 0
    assert remove(world, B_ADMIN, node("a")) == ResultCode.NOT_AUTHORIZED
    assert remove(world, A_CLINICIAN, node("a")) == ResultCode.ROLE_NOT_PERMITTED
    bad_key = {"node_key": b"\x01" + bytes(31), "address": "", "proof": b"\x01" * 64}
    assert world.send(A_ADMIN, TxKind.REGISTER_NODE, bad_key).code == ResultCode.INVALID_NODE_KEY
    assert register(world, A_ADMIN, "x", "nohost") == ResultCode.INVALID_NODE_ADDRESS
    assert [entry.node_key for entry in read_registry(world.state)] == [node("a")]


def test_an_organisation_registers_a_bounded_number_of_nodes() -> None:
    world = World()
    txs = [
        world.tx(A_ADMIN, TxKind.REGISTER_NODE, node_fields(node_signer(f"n{i}"), HOSPITAL_A))
        for i in range(MAX_NODES_PER_ORGANIZATION + 1)
    ]
    codes = [result.code for result in world.block(txs)]
    assert codes == [0] * MAX_NODES_PER_ORGANIZATION + [ResultCode.NODE_LIMIT_REACHED]
    # Another organisation's count is its own.
    assert register(world, B_ADMIN, "b", organization=HOSPITAL_B) == 0


def test_registry_encoding_is_canonical() -> None:
    entries = [
        RegisteredNode(node("b"), "org-b", "", 7),
        RegisteredNode(node("a"), "org-a", "h:1", 3),
    ]
    encoded = encode_registry(entries)
    assert decode_registry(encoded) == sorted(entries, key=lambda entry: entry.node_key)
    assert encode_registry(reversed(entries)) == encoded


def test_a_validator_moves_to_a_new_node_key_by_an_update_of_the_same_power() -> None:
    world = World(setup=False)
    validator = signer(0).public_key
    old_node = GENESIS_NODE_KEYS[validator]
    assert old_node in peer_directory(world.state, GENESIS_NODE_KEYS).allowed_keys
    moved = update(validator, power=1, epoch=1, node_key=node("moved"), address="")
    assert approve(world, moved) == [ResultCode.OK] * 3
    allowed = peer_directory(world.state, GENESIS_NODE_KEYS).allowed_keys
    assert node("moved") in allowed and old_node not in allowed


def test_a_registration_needs_the_node_keys_own_proof() -> None:
    world = World()
    by_another_key = node_fields(node_signer("a"), HOSPITAL_A, proof_by=node_signer("other"))
    assert world.send(A_ADMIN, TxKind.REGISTER_NODE, by_another_key).code == (
        ResultCode.INVALID_NODE_PROOF
    )
    # The proof fixes organisation and address: one made for B or another address is refused.
    for_b = node_fields(node_signer("a"), HOSPITAL_B)
    assert world.send(A_ADMIN, TxKind.REGISTER_NODE, for_b).code == ResultCode.INVALID_NODE_PROOF
    moved = {**node_fields(node_signer("a"), HOSPITAL_A, "h.example:1"), "address": "h.example:2"}
    assert world.send(A_ADMIN, TxKind.REGISTER_NODE, moved).code == ResultCode.INVALID_NODE_PROOF
    assert read_registry(world.state) == []
    assert register(world, A_ADMIN, "a", "h.example:1") == 0


def test_an_admin_cannot_keep_a_removed_validators_node_connected() -> None:
    """The attack: hospital A's admin registers validator X's node key (it is public: X's
    node id) without X's private key, so that X's node stays allowed after the validators
    remove X. Without a proof by X's node key the registration is refused, and X's node leaves
    the allowed set with X."""
    world = World()
    assert approve(world, update(power=1)) == [ResultCode.OK] * 3
    assert NEWCOMER_NODE in peer_directory(world.state, GENESIS_NODE_KEYS).allowed_keys
    forged = node_fields(signer("node/newcomer"), HOSPITAL_A, proof_by=signer("a-admin-own"))
    assert world.send(A_ADMIN, TxKind.REGISTER_NODE, forged).code == ResultCode.INVALID_NODE_PROOF
    # With the node's own proof (X's operator consents) the key is still refused while it is a
    # validator's: the validator set admits it, the registry must not outlive that.
    consented = node_fields(signer("node/newcomer"), HOSPITAL_A)
    assert world.send(A_ADMIN, TxKind.REGISTER_NODE, consented).code == (
        ResultCode.NODE_KEY_OF_A_VALIDATOR
    )
    assert read_registry(world.state) == []
    removal = update(power=0, epoch=2, node_key=bytes(32), address="")
    # X (power 1 of 5) votes by now: the four genesis validators hold more than 2/3.
    assert approve(world, removal, range(4)) == [ResultCode.OK] * 4
    world.idle()
    assert NEWCOMER_NODE not in peer_directory(world.state, GENESIS_NODE_KEYS).allowed_keys
