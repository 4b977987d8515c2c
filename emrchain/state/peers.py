"""Who may connect to the P2P network, read from committed state (`docs/spec/p2p.md` §4.1).

Two state entries name node keys (`docs/spec/state.md` §4.2, §4.5):

- VALIDATOR_NODES: the node key and advertised address of every validator added by a
  VALIDATOR_UPDATE (genesis validators' node keys are in the genesis file);
- NODE_REGISTRY: full nodes an organisation's admin registered (REGISTER_NODE).

`peer_directory` combines them with the validator sets of the next two heights into the allowed
node keys and the addresses to dial. It is pure: the node calls it after every commit and hands
the result to the P2P layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from emrchain.config.address import parse_address
from emrchain.schema import NODE_ADDRESS_MAX_BYTES
from emrchain.state import keys
from emrchain.state.validators import StateCorruptionError, read_validator_set
from emrchain.state.view import StateView
from emrchain.types.codec import DecodeError, Reader, Writer
from emrchain.types.limits import MAX_VALIDATORS_CEILING

MAX_REGISTERED_NODES = 1_024
"""Full nodes registered on the whole chain (a consensus rule, like every EMR bound)."""
MAX_NODES_PER_ORGANIZATION = 16
"""Full nodes one organisation may have registered at a time."""
MAX_VALIDATOR_NODES = 2 * MAX_VALIDATORS_CEILING
"""Entries of validators' node keys: those of the next two sets, plus removed ones until the
next applied update sweeps them (`validator_updates.py`)."""


def check_advertised_address(text: str) -> str | None:
    """Why `text` is not a valid advertised `host:port` (empty means "none"), or None."""
    if not text:
        return None
    if len(text.encode("utf-8")) > NODE_ADDRESS_MAX_BYTES:
        return f"address is longer than {NODE_ADDRESS_MAX_BYTES} bytes"
    try:
        parse_address(text)
    except ValueError as error:
        return str(error)
    return None


@dataclass(frozen=True, slots=True)
class ValidatorNode:
    """A validator's P2P node key and the address it advertises ("" for none)."""

    validator_key: bytes
    node_key: bytes
    address: str


@dataclass(frozen=True, slots=True)
class RegisteredNode:
    """A full node registered by an admin of `organization_id` at `height`."""

    node_key: bytes
    organization_id: str
    address: str
    height: int


def _write_text(writer: Writer, text: str) -> None:
    writer.var_bytes(text.encode("utf-8"), 1)


def _read_text(reader: Reader, maximum: int, field: str) -> str:
    try:
        return reader.var_bytes(1, maximum, field).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{field}: not UTF-8") from None


def encode_validator_nodes(entries: Iterable[ValidatorNode]) -> bytes:
    """list16 of `validator_key 32 | node_key 32 | address (u8 length + UTF-8)`, ascending by
    validator key."""
    ordered = sorted(entries, key=lambda entry: entry.validator_key)
    writer = Writer().u16(len(ordered))
    for entry in ordered:
        writer.fixed(entry.validator_key, 32).fixed(entry.node_key, 32)
        _write_text(writer, entry.address)
    return writer.bytes()


def decode_validator_nodes(data: bytes) -> list[ValidatorNode]:
    reader = Reader(data, "ValidatorNodes")
    count = reader.count(2, MAX_VALIDATOR_NODES, "count")
    entries = [
        ValidatorNode(
            reader.fixed(32, "validator_key"),
            reader.fixed(32, "node_key"),
            _read_text(reader, NODE_ADDRESS_MAX_BYTES, "address"),
        )
        for _ in range(count)
    ]
    reader.finish()
    if any(a.validator_key >= b.validator_key for a, b in itertools.pairwise(entries)):
        raise DecodeError("ValidatorNodes: not strictly ascending by validator key")
    return entries


def encode_registry(entries: Iterable[RegisteredNode]) -> bytes:
    """list16 of `node_key 32 | organization id (u8 length) | address (u8 length + UTF-8) |
    height u64`, ascending by node key."""
    ordered = sorted(entries, key=lambda entry: entry.node_key)
    writer = Writer().u16(len(ordered))
    for entry in ordered:
        writer.fixed(entry.node_key, 32)
        _write_text(writer, entry.organization_id)
        _write_text(writer, entry.address)
        writer.u64(entry.height)
    return writer.bytes()


def decode_registry(data: bytes) -> list[RegisteredNode]:
    reader = Reader(data, "NodeRegistry")
    count = reader.count(2, MAX_REGISTERED_NODES, "count")
    entries = [
        RegisteredNode(
            reader.fixed(32, "node_key"),
            _read_text(reader, keys.ORGANIZATION_ID_FIELD_BYTES, "organization_id"),
            _read_text(reader, NODE_ADDRESS_MAX_BYTES, "address"),
            reader.u64("height"),
        )
        for _ in range(count)
    ]
    reader.finish()
    if any(a.node_key >= b.node_key for a, b in itertools.pairwise(entries)):
        raise DecodeError("NodeRegistry: not strictly ascending by node key")
    return entries


def read_validator_nodes(view: StateView) -> list[ValidatorNode]:
    raw = view.get(keys.VALIDATOR_NODES)
    if raw is None:
        return []
    try:
        return decode_validator_nodes(raw)
    except DecodeError as error:
        raise StateCorruptionError(f"validator node keys are undecodable: {error}") from None


def read_registry(view: StateView) -> list[RegisteredNode]:
    raw = view.get(keys.NODE_REGISTRY)
    if raw is None:
        return []
    try:
        return decode_registry(raw)
    except DecodeError as error:
        raise StateCorruptionError(f"node registry is undecodable: {error}") from None


@dataclass(frozen=True, slots=True)
class PeerDirectory:
    """The node keys allowed past the P2P handshake, and where the validators that advertise
    an address listen (node key -> `host:port`): the addresses a node dials."""

    allowed_keys: frozenset[bytes]
    addresses: Mapping[bytes, str]


def peer_directory(view: StateView, genesis_node_keys: Mapping[bytes, bytes]) -> PeerDirectory:
    """Allowed = node keys of the validators of the next two heights (so a validator added at
    h + 2 connects before it votes) ∪ registered full nodes.

    A validator's node key is its VALIDATOR_NODES entry, else the one in genesis
    (`genesis_node_keys`: validator key -> node key); a validator with neither has no node."""
    next_set = read_validator_set(view, keys.VALIDATORS_NEXT)
    after_next = read_validator_set(view, keys.VALIDATORS_AFTER_NEXT)
    entries = {entry.validator_key: entry for entry in read_validator_nodes(view)}
    allowed: set[bytes] = set()
    addresses: dict[bytes, str] = {}
    for validator in (*next_set, *after_next):
        entry = entries.get(validator.public_key)
        if entry is not None:
            allowed.add(entry.node_key)
            if entry.address:
                addresses[entry.node_key] = entry.address
        elif validator.public_key in genesis_node_keys:
            allowed.add(genesis_node_keys[validator.public_key])
    # A registered node's address is never dialled: one organisation's admin alone registers
    # it, and dialling it would let that admin point every node of the network at any host and
    # port (an internal service of another hospital). A validator's address was approved by
    # more than 2/3 of the voting power. Full nodes dial in (their persistent peers).
    allowed.update(node.node_key for node in read_registry(view))
    return PeerDirectory(frozenset(allowed), addresses)
