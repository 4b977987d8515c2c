"""genesis.json: strict validation naming file and key path, canonical hash, config agreement."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from emrchain.config import (
    ConfigError,
    Genesis,
    NodeConfig,
    check_config_matches_genesis,
    load_genesis,
    parse_genesis,
    parse_genesis_text,
)
from emrchain.crypto.keycheck import FIELD_PRIME, _add, _decompress
from emrchain.crypto.keys import Ed25519Signer
from emrchain.types.limits import DEFAULT_LIMITS
from tests.crypto.test_keycheck import compress

REPO = Path(__file__).resolve().parents[2]
SOURCE = "/srv/emr/config/genesis.json"


def _key(label: str) -> str:
    return Ed25519Signer(label.encode().ljust(32, b".")).public_key.hex()


def document() -> dict[str, Any]:
    return {
        "chain_id": "emr-test-1",
        "genesis_time_ms": 1_767_225_600_000,
        "consensus_params": dataclasses.asdict(DEFAULT_LIMITS),
        "validators": [
            {
                "name": f"v{index}",
                "public_key": _key(f"validator {index}"),
                "power": 10,
                "node_key": _key(f"node {index}"),
            }
            for index in range(3)
        ],
        "organizations": [
            {
                "organization_id": "hospital-b",
                "name": "Hôpital B",
                "encryption_key": "22" * 32,
                "admins": [{"member_key": ADMIN_KEYS[0], "encryption_key": "33" * 32}],
            },
            {
                "organization_id": "hospital-a",
                "name": "Hospital A",
                "encryption_key": "11" * 32,
                "admins": [{"member_key": ADMIN_KEYS[1], "encryption_key": "44" * 32}],
            },
        ],
    }


def _mixed_order_key() -> str:
    """A validator key plus the point of order 2: on the curve, not in the prime-order group."""
    point = _decompress(bytes.fromhex(_key("validator 1")))
    assert point is not None
    return compress(_add(point, (0, FIELD_PRIME - 1, 1, 0))).hex()


ADMIN_KEYS = [
    Ed25519Signer(hashlib.sha256(b"genesis admin %d" % index).digest()).public_key.hex()
    for index in range(2)
]


def refused(doc: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_genesis(doc, SOURCE)
    message = str(caught.value)
    assert message.startswith(SOURCE + ": ") and "\n" not in message
    return message


DELETE = object()


def modified(path: str, value: object) -> dict[str, Any]:
    """A copy of the valid document with the value at `path` (a.b.0.c) replaced or deleted."""
    doc = document()
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is DELETE:
        del target[last]
    else:
        target[int(last) if isinstance(target, list) else last] = value
    return doc


def test_valid_document_parses_and_sorts() -> None:
    genesis = parse_genesis(document(), SOURCE)
    assert genesis.chain_id == "emr-test-1"
    assert genesis.consensus_params == DEFAULT_LIMITS
    keys = [v.public_key for v in genesis.validators]
    assert keys == sorted(keys)
    assert [o.organization_id for o in genesis.organizations] == ["hospital-a", "hospital-b"]
    assert genesis.validator_set().total_power == 30
    assert parse_genesis_text(genesis.to_json(), SOURCE) == genesis


def test_hash_ignores_formatting_and_order_but_not_content() -> None:
    doc = document()
    reordered = copy.deepcopy(doc)
    reordered["validators"].reverse()
    reordered["organizations"].reverse()
    reordered = dict(reversed(list(reordered.items())))
    original = parse_genesis(doc, SOURCE).genesis_hash
    assert len(original) == 32
    assert parse_genesis_text(json.dumps(reordered), SOURCE).genesis_hash == original
    assert parse_genesis_text(json.dumps(doc, indent=7), SOURCE).genesis_hash == original
    changed = [
        modified("chain_id", "emr-test-2"),
        modified("genesis_time_ms", 1),
        modified("validators.1.power", 11),
        modified("validators.1.name", "renamed"),
        modified("organizations.0.name", "Hopital B"),
        modified("consensus_params.max_evidence_per_block", 63),
    ]
    hashes = {parse_genesis(doc, SOURCE).genesis_hash for doc in changed}
    assert original not in hashes and len(hashes) == len(changed)


@pytest.mark.parametrize("chain_id", ["", "A", "emr test", "emr/1", "é", "x" * 51, "emr\n"])
def test_bad_chain_id_is_refused(chain_id: str) -> None:
    assert "chain_id: chain id must be 1..50 characters" in refused(modified("chain_id", chain_id))


@pytest.mark.parametrize("chain_id", ["a", "emr-test_1.x", "x" * 50])
def test_good_chain_id_is_accepted(chain_id: str) -> None:
    assert parse_genesis(modified("chain_id", chain_id), SOURCE).chain_id == chain_id


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "validators.1.public_key",
            "zz" * 32,
            "validators[1].public_key: must be 64 lowercase hex",
        ),
        (
            "validators.1.public_key",
            "AB" * 32,
            "validators[1].public_key: must be 64 lowercase hex",
        ),
        (
            "validators.1.public_key",
            "ab" * 31,
            "validators[1].public_key: must be 64 lowercase hex",
        ),
        ("validators.1.public_key", "00" * 32, "validators[1].public_key: must not be all zeros"),
        ("validators.1.public_key", 5, "validators[1].public_key: must be a string, got integer"),
        (
            "validators.1.public_key",
            "01" + "00" * 31,  # the identity: small order
            "validators[1].public_key: is not an Ed25519 public key in the prime-order subgroup",
        ),
        (
            "validators.1.public_key",
            _mixed_order_key(),
            "validators[1].public_key: is not an Ed25519 public key in the prime-order subgroup",
        ),
        ("validators.2.node_key", "0x" + "ab" * 31, "validators[2].node_key: must be 64 lowercase"),
        ("validators.0.power", 0, "validators[0].power: must be within 1..1125899906842624, got 0"),
        ("validators.0.power", -5, "validators[0].power: must be within"),
        ("validators.0.power", 2**50 + 1, "validators[0].power: must be within"),
        ("validators.0.power", 10.0, "validators[0].power: must be an integer"),
        ("validators.0.power", True, "validators[0].power: must be an integer"),
        ("validators.0.power", "10", "validators[0].power: must be an integer"),
        ("validators.0.name", "", "validators[0].name: must be 1..64 characters"),
        ("validators.0.name", "-x", "validators[0].name: must be 1..64 characters"),
        ("validators.0.extra", 1, "validators[0].extra: unknown key"),
        ("validators.0.node_key", DELETE, "validators[0].node_key: missing"),
        ("validators", [], "validators: must list 1..150 validators"),
        ("validators", {}, "validators: must be an array"),
        ("genesis_time_ms", -1, "genesis_time_ms: must be within 0..18446744073709551615"),
        ("genesis_time_ms", "now", "genesis_time_ms: must be an integer"),
        ("consensus_params.max_tx_bytes", 10, "consensus_params.max_tx_bytes: must be within"),
        ("consensus_params.max_validators", 0, "consensus_params.max_validators: must be within"),
        ("consensus_params.max_validators", 2, "validators: must list 1..2 validators"),
        (
            "consensus_params.max_block_bytes",
            4095,
            "consensus_params.max_block_bytes: must be at least consensus_params.max_tx_bytes",
        ),
        ("consensus_params.max_block_txs", DELETE, "consensus_params.max_block_txs: missing"),
        ("consensus_params.max_txs", 1, "consensus_params.max_txs: unknown key"),
        ("organizations", None, "organizations: must be an array (may be empty), got null"),
        ("organizations.0.organization_id", "Hospital", "organizations[0].organization_id: must"),
        (
            "organizations.0.organization_id",
            "hospital-a",
            "organizations[1].organization_id: duplicate of organizations[0]",
        ),
        ("organizations.0.name", "", "organizations[0].name: must be 1..128 bytes of UTF-8"),
        ("organizations.0.name", "é" * 65, "organizations[0].name: must be 1..128 bytes"),
        ("organizations.0.name", "\ud800", "organizations[0].name: is not valid Unicode"),
        (
            "organizations.1.encryption_key",
            "00" * 32,
            "organizations[1].encryption_key: must not be all zeros",
        ),
        ("organizations", DELETE, "organizations: missing"),
        ("organizations.0.admins", [], "organizations[0].admins: must be an array of 1..16"),
        (
            "organizations.0.admins.0.member_key",
            "00" * 32,
            "organizations[0].admins[0].member_key: must not be all zeros",
        ),
        (
            "organizations.0.admins.0.member_key",
            "01" + "00" * 31,
            "organizations[0].admins[0].member_key: is not an Ed25519 public key in the prime",
        ),
        ("chain_idd", "x", "chain_idd: unknown key; did you mean 'chain_id'?"),
    ],
)
def test_bad_values_are_refused_naming_the_key_path(
    path: str, value: object, expected: str
) -> None:
    assert expected in refused(modified(path, value))


@pytest.mark.parametrize("field", ["public_key", "node_key", "name"])
def test_duplicate_validators_are_refused(field: str) -> None:
    doc = document()
    doc["validators"][2][field] = doc["validators"][0][field]
    assert f"validators[2].{field}: duplicate of validators[0].{field}" in refused(doc)


def test_top_level_must_be_an_object() -> None:
    assert "top level: must be a JSON object, got array" in refused([])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"chain_id": "a", "chain_id": "b"}', "key 'chain_id' appears twice"),
        ('{"genesis_time_ms": NaN}', "NaN is not a number"),
        ("{", "invalid JSON"),
    ],
)
def test_malformed_json_is_refused(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="invalid JSON") as caught:
        parse_genesis_text(text, SOURCE)
    assert expected in str(caught.value)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    with pytest.raises(ConfigError, match=f"{path}: file not found"):
        load_genesis(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_genesis(path)
    path.write_text(json.dumps(modified("validators.0.power", 0)))
    with pytest.raises(ConfigError, match=f"{path}: validators\\[0\\].power"):
        load_genesis(path)


def test_example_genesis_loads() -> None:
    genesis = load_genesis(REPO / "configs" / "genesis.json")
    assert len(genesis.validators) == 4 and len(genesis.organizations) == 2
    assert genesis.consensus_params == DEFAULT_LIMITS


def test_node_limits_must_equal_genesis_consensus_params() -> None:
    genesis: Genesis = parse_genesis(document(), SOURCE)
    config = NodeConfig(home=Path("/srv/emr"))
    check_config_matches_genesis(config, genesis)  # defaults agree
    different = dataclasses.replace(
        config, limits=dataclasses.replace(config.limits, max_block_txs=100)
    )
    with pytest.raises(ConfigError) as caught:
        check_config_matches_genesis(different, genesis)
    assert str(caught.value).startswith("/srv/emr/config/node.toml: [limits] max_block_txs: is 100")
    assert "consensus_params.max_block_txs is 20000" in str(caught.value)
