"""The genesis document, `<home>/config/genesis.json`: chain id, start time, chain-wide limits,
the initial validators and the initial organisations.

Every node of a chain must load the same genesis; `Genesis.genesis_hash` identifies it. The
hash is SHA-256 of the canonical JSON form (keys sorted, no whitespace, UTF-8, validators sorted
by public key, organisations by id), so reformatting the file does not change it.
Parsing is strict: every key is required, unknown keys are refused, and each error names the
file and the key path (e.g. `validators[1].public_key`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from emrchain.config.errors import ConfigError
from emrchain.config.node import LIMITS_SETTINGS, NodeConfig, load_node_config
from emrchain.crypto.keycheck import is_prime_order_key
from emrchain.schema import MAX_CUSTODIANS, MAX_VALIDATOR_POWER
from emrchain.types.limits import MAX_TOTAL_VOTING_POWER, Limits
from emrchain.types.validator import Validator, ValidatorSet

CHAIN_ID_PATTERN = re.compile(r"[a-z0-9._-]{1,50}")
CHAIN_ID_EXPLANATION = "1..50 characters of a-z 0-9 . _ -"
VALIDATOR_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ORGANIZATION_ID_PATTERN = re.compile(r"[a-z0-9._-]{1,64}")
ORGANIZATION_NAME_MAX_BYTES = 128
"""Matches the register-organisation transaction (`docs/spec/encoding.md`)."""
U64_MAX = (1 << 64) - 1

_TOP_KEYS = ("chain_id", "genesis_time_ms", "consensus_params", "validators", "organizations")
_VALIDATOR_KEYS = ("name", "public_key", "power", "node_key")
_ORGANIZATION_KEYS = ("organization_id", "name", "encryption_key", "admins")
_ADMIN_KEYS = ("member_key", "encryption_key")
MAX_GENESIS_ADMINS = 16


@dataclass(frozen=True)
class GenesisValidator:
    name: str
    public_key: bytes
    """Ed25519 key that signs votes and proposals."""
    power: int
    node_key: bytes
    """Ed25519 public key of the validator's node (its P2P identity, the node id)."""


@dataclass(frozen=True)
class GenesisAdmin:
    member_key: bytes
    """Ed25519 public key of the organisation's first admin member."""
    encryption_key: bytes
    """That admin's X25519 public key."""


@dataclass(frozen=True)
class GenesisOrganization:
    organization_id: str
    name: str
    encryption_key: bytes
    """X25519 public key records are wrapped to."""
    admins: tuple[GenesisAdmin, ...] = ()
    """At least one: who registers the organisation's members from height 1."""


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    consensus_params: Limits
    validators: tuple[GenesisValidator, ...]
    """Sorted by public key, like `ValidatorSet`."""
    organizations: tuple[GenesisOrganization, ...]
    """Sorted by organization id."""
    custody_set_size: int | None = None
    """`emr_params.custody_set_size`, the k of the custody policy (`records.md` §9); the one
    optional genesis key: absent means the chain's default."""

    @property
    def chain_id_bytes(self) -> bytes:
        return self.chain_id.encode("ascii")

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet(Validator(v.public_key, v.power) for v in self.validators)

    def to_document(self) -> dict[str, Any]:
        """The JSON document (keys in file order)."""
        document: dict[str, Any] = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "consensus_params": {
                item.name: getattr(self.consensus_params, item.name) for item in fields(Limits)
            },
            "validators": [
                {
                    "name": v.name,
                    "public_key": v.public_key.hex(),
                    "power": v.power,
                    "node_key": v.node_key.hex(),
                }
                for v in self.validators
            ],
            "organizations": [
                {
                    "organization_id": o.organization_id,
                    "name": o.name,
                    "encryption_key": o.encryption_key.hex(),
                    "admins": [
                        {
                            "member_key": admin.member_key.hex(),
                            "encryption_key": admin.encryption_key.hex(),
                        }
                        for admin in o.admins
                    ],
                }
                for o in self.organizations
            ],
        }
        if self.custody_set_size is not None:  # optional, so older genesis hashes stay
            document["emr_params"] = {"custody_set_size": self.custody_set_size}
        return document

    def to_json(self) -> str:
        """Human-readable file content; parses back to an equal Genesis."""
        return json.dumps(self.to_document(), indent=2, ensure_ascii=False) + "\n"

    def canonical_bytes(self) -> bytes:
        return json.dumps(
            self.to_document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    @property
    def genesis_hash(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes()).digest()


def validate_chain_id(chain_id: str) -> str:
    """Return `chain_id` if well-formed; raise ValueError explaining the rule otherwise."""
    if not CHAIN_ID_PATTERN.fullmatch(chain_id):
        raise ValueError(f"chain id must be {CHAIN_ID_EXPLANATION}, got {chain_id!r}")
    return chain_id


def load_genesis(path: Path) -> Genesis:
    """Read and validate a genesis file; raise ConfigError naming the file and key path."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, None, "file not found") from None
    except UnicodeDecodeError as error:
        raise ConfigError(source, None, f"not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise ConfigError(source, None, f"cannot read: {error.strerror}") from None
    return parse_genesis_text(text, source)


def parse_genesis_text(text: str, source: str) -> Genesis:
    try:
        document = json.loads(
            text, object_pairs_hook=_refuse_duplicate_keys, parse_constant=_refuse_constant
        )
    except json.JSONDecodeError as error:
        raise ConfigError(source, None, f"invalid JSON: {error}") from None
    except ValueError as error:  # duplicate key, NaN, or an absurdly long number
        raise ConfigError(source, None, f"invalid JSON: {error}") from None
    return parse_genesis(document, source)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # json would silently keep the last one; two nodes could read different intents.
            raise ValueError(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_genesis(document: object, source: str) -> Genesis:
    """Validate a parsed JSON document and build the Genesis."""
    custody_set_size = None
    if isinstance(document, dict) and "emr_params" in document:
        params = _object(document["emr_params"], "emr_params", ("custody_set_size",), source)
        custody_set_size = _integer(
            params["custody_set_size"], "emr_params.custody_set_size", 1, MAX_CUSTODIANS, source
        )
        document = {key: value for key, value in document.items() if key != "emr_params"}
    top = _object(document, "", _TOP_KEYS, source)
    chain_id = _string(top["chain_id"], "chain_id", source)
    try:
        validate_chain_id(chain_id)
    except ValueError as error:
        raise ConfigError(source, "chain_id", str(error)) from None
    genesis_time_ms = _integer(top["genesis_time_ms"], "genesis_time_ms", 0, U64_MAX, source)
    limits = _limits(top["consensus_params"], source)
    validators = _validators(top["validators"], limits, source)
    organizations = _organizations(top["organizations"], source)
    return Genesis(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        consensus_params=limits,
        validators=tuple(sorted(validators, key=lambda v: v.public_key)),
        organizations=tuple(sorted(organizations, key=lambda o: o.organization_id)),
        custody_set_size=custody_set_size,
    )


def _object(value: object, where: str, keys: tuple[str, ...], source: str) -> Mapping[str, Any]:
    label = where or "top level"
    if not isinstance(value, dict):
        raise ConfigError(source, label, f"must be a JSON object, got {_json_type(value)}")
    for key in value:
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(source, _join(where, key), f"unknown key{hint}")
    for key in keys:
        if key not in value:
            raise ConfigError(source, _join(where, key), "missing (every genesis key is required)")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _json_type(value: object) -> str:
    names = {
        bool: "boolean",
        int: "integer",
        float: "number with a fraction",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _string(value: object, where: str, source: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(source, where, f"must be a string, got {_json_type(value)}")
    return value


def _integer(value: object, where: str, minimum: int, maximum: int, source: str) -> int:
    if type(value) is not int:  # not bool, not 10.0
        raise ConfigError(
            source,
            where,
            f"must be an integer within {minimum}..{maximum}, got {_json_type(value)} {value!r}",
        )
    if not minimum <= value <= maximum:
        raise ConfigError(source, where, f"must be within {minimum}..{maximum}, got {value}")
    return value


def _key32(value: object, where: str, source: str) -> bytes:
    text = _string(value, where, source)
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ConfigError(
            source, where, f"must be 64 lowercase hex characters (32 bytes), got {text!r}"
        )
    key = bytes.fromhex(text)
    if key == bytes(32):
        raise ConfigError(source, where, "must not be all zeros")
    return key


def _prime_order_key(value: object, where: str, source: str) -> bytes:
    """A `_key32` that is also an Ed25519 key of the prime-order subgroup: execution refuses
    other keys (docs/spec/encoding.md §2.1), so say so here, not when the chain starts."""
    key = _key32(value, where, source)
    if not is_prime_order_key(key):
        raise ConfigError(source, where, "is not an Ed25519 public key in the prime-order subgroup")
    return key


def _limits(value: object, source: str) -> Limits:
    params = _object(value, "consensus_params", tuple(LIMITS_SETTINGS), source)
    values = {}
    for key, spec in LIMITS_SETTINGS.items():
        try:
            values[key] = spec.kind.parse(params[key])
        except ValueError as error:
            raise ConfigError(source, f"consensus_params.{key}", str(error)) from None
    limits = Limits(**values)
    if limits.max_block_bytes < limits.max_tx_bytes:
        raise ConfigError(
            source,
            "consensus_params.max_block_bytes",
            f"must be at least consensus_params.max_tx_bytes "
            f"({limits.max_tx_bytes}), got {limits.max_block_bytes}",
        )
    return limits


def _validators(value: object, limits: Limits, source: str) -> list[GenesisValidator]:
    if not isinstance(value, list):
        raise ConfigError(source, "validators", f"must be an array, got {_json_type(value)}")
    if not 1 <= len(value) <= limits.max_validators:
        raise ConfigError(
            source,
            "validators",
            f"must list 1..{limits.max_validators} "
            f"validators (consensus_params.max_validators), got {len(value)}",
        )
    validators: list[GenesisValidator] = []
    first_seen: dict[tuple[str, object], int] = {}
    for index, entry in enumerate(value):
        where = f"validators[{index}]"
        item = _object(entry, where, _VALIDATOR_KEYS, source)
        name = _string(item["name"], f"{where}.name", source)
        if not VALIDATOR_NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                source,
                f"{where}.name",
                "must be 1..64 characters of "
                f"A-Z a-z 0-9 . _ -, starting with a letter or digit, got {name!r}",
            )
        validator = GenesisValidator(
            name=name,
            # Execution refuses such a key in VALIDATOR_UPDATE too (docs/spec/state.md §4.2).
            public_key=_prime_order_key(item["public_key"], f"{where}.public_key", source),
            power=_integer(item["power"], f"{where}.power", 1, MAX_VALIDATOR_POWER, source),
            node_key=_key32(item["node_key"], f"{where}.node_key", source),
        )
        for key in ("name", "public_key", "node_key"):
            marker = (key, getattr(validator, key))
            if marker in first_seen:
                raise ConfigError(
                    source, f"{where}.{key}", f"duplicate of validators[{first_seen[marker]}].{key}"
                )
            first_seen[marker] = index
        validators.append(validator)
    total = sum(v.power for v in validators)
    if total > MAX_TOTAL_VOTING_POWER:
        raise ConfigError(
            source, "validators", f"total power {total} exceeds {MAX_TOTAL_VOTING_POWER}"
        )
    return validators


def _organizations(value: object, source: str) -> list[GenesisOrganization]:
    if not isinstance(value, list):
        raise ConfigError(
            source, "organizations", f"must be an array (may be empty), got {_json_type(value)}"
        )
    organizations: list[GenesisOrganization] = []
    first_seen: dict[str, int] = {}
    for index, entry in enumerate(value):
        where = f"organizations[{index}]"
        item = _object(entry, where, _ORGANIZATION_KEYS, source)
        organization_id = _string(item["organization_id"], f"{where}.organization_id", source)
        if not ORGANIZATION_ID_PATTERN.fullmatch(organization_id):
            raise ConfigError(
                source,
                f"{where}.organization_id",
                f"must be 1..64 characters of a-z 0-9 . _ -, got {organization_id!r}",
            )
        if organization_id in first_seen:
            raise ConfigError(
                source,
                f"{where}.organization_id",
                f"duplicate of organizations[{first_seen[organization_id]}]",
            )
        first_seen[organization_id] = index
        name = _string(item["name"], f"{where}.name", source)
        try:
            name_bytes = len(name.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
            raise ConfigError(source, f"{where}.name", "is not valid Unicode text") from None
        if not 1 <= name_bytes <= ORGANIZATION_NAME_MAX_BYTES:
            raise ConfigError(
                source,
                f"{where}.name",
                f"must be 1..{ORGANIZATION_NAME_MAX_BYTES} bytes of UTF-8, got {name_bytes}",
            )
        organizations.append(
            GenesisOrganization(
                organization_id=organization_id,
                name=name,
                encryption_key=_key32(item["encryption_key"], f"{where}.encryption_key", source),
                admins=_admins(item["admins"], f"{where}.admins", source),
            )
        )
    return organizations


def _admins(value: object, where: str, source: str) -> tuple[GenesisAdmin, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_GENESIS_ADMINS:
        raise ConfigError(source, where, f"must be an array of 1..{MAX_GENESIS_ADMINS} admins")
    admins = []
    for index, entry in enumerate(value):
        item = _object(entry, f"{where}[{index}]", _ADMIN_KEYS, source)
        member_key = _prime_order_key(item["member_key"], f"{where}[{index}].member_key", source)
        admins.append(
            GenesisAdmin(
                member_key=member_key,
                encryption_key=_key32(
                    item["encryption_key"], f"{where}[{index}].encryption_key", source
                ),
            )
        )
    return tuple(admins)


def check_config_matches_genesis(config: NodeConfig, genesis: Genesis) -> None:
    """Refuse a node whose `[limits]` differ from the chain's consensus_params.

    Nodes with different decoding limits would disagree on which blocks are valid, so the
    limits a node enforces must be exactly the chain's.
    """
    for key in LIMITS_SETTINGS:
        ours, chain = getattr(config.limits, key), getattr(genesis.consensus_params, key)
        if ours != chain:
            raise ConfigError(
                str(config.config_path),
                f"[limits] {key}",
                f"is {ours} but {config.genesis_path} consensus_params.{key} is {chain}; "
                "they must be equal",
            )


def load_config_and_genesis(home: Path) -> tuple[NodeConfig, Genesis]:
    """Everything `start` needs from the home's config directory, cross-checked."""
    config = load_node_config(home)
    genesis = load_genesis(config.genesis_path)
    check_config_matches_genesis(config, genesis)
    return config, genesis
