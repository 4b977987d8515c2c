"""`docs/spec/encoding.md` says what the code does: its limit tables (§8), the envelope's sizes
(§4), the payload table (§4.2), the verdict table (§5), the domain table and the key-rotation
message (§2, §2.2) and the sizes of §6/§7 are parsed from the text and compared with the code.

Each check takes the spec text as an argument, so `test_a_wrong_number_in_the_spec_is_caught`
can run it on a copy with one number changed and see it fail.

The key-rotation vector (`tests/vectors/key_rotation.json`) is rebuilt here from fixed seeds;
`python -m tests.types.test_encoding_spec --write` rewrites it (only if the message deliberately
changes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emrchain import _core, schema
from emrchain._core.reference import merkle
from emrchain.client.identity import MemberIdentity
from emrchain.client.transactions import rotate_key, rotation_proof
from emrchain.crypto.keys import Ed25519Signer, verify_signature
from emrchain.schema.verdicts import Verdict
from emrchain.state.emr import rotation_message
from emrchain.types import (
    DEFAULT_LIMITS,
    Block,
    Domain,
    Limits,
    Transaction,
    TxKind,
    Vote,
    VoteType,
)
from emrchain.types import limits as type_limits
from tests.vectors import generate_types

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "spec" / "encoding.md"
VECTOR = ROOT / "tests" / "vectors" / "key_rotation.json"
TEXT = SPEC.read_text(encoding="utf-8")


# --- reading the spec ----------------------------------------------------------------------


def section(text: str, title: str) -> str:
    """From the heading that starts with `title` (e.g. "## 8.", "### 8.1") to the next heading of
    the same or a higher level."""
    level = len(title.split(" ")[0])
    start = text.index("\n" + title) + 1
    body = text.index("\n", start)
    for match in re.finditer(r"^(#+) ", text[body:], re.MULTILINE):
        if len(match.group(1)) <= level:
            return text[start : body + match.start()]
    return text[start:]


def table(text: str) -> list[list[str]]:
    """The rows of the first table in `text`, header row excluded, cells stripped."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) >= 2 and set(rows[1][0]) <= set("-:"), "no table found"
    return rows[2:]


def code_block(text: str) -> str:
    """The first fenced code block in `text`."""
    return text.split("```\n", 2)[1]


def number(text: str) -> int:
    """The spec's way of writing a number: '65,694', '2^50', '2^63 − 1', '2^64−1'."""
    compact = text.strip("`").replace(",", "").replace("−", "-").replace(" ", "")
    match = re.fullmatch(r"(-?\d+)(?:\^(\d+))?(?:([+-])(\d+))?", compact)
    assert match is not None, f"not a number: {text!r}"
    base, exponent, sign, offset = match.groups()
    value = int(base) ** int(exponent) if exponent else int(base)
    if sign:
        value += int(offset) if sign == "+" else -int(offset)
    return value


def unquote(cell: str) -> str:
    return cell.strip("`")


# --- §8 limits -----------------------------------------------------------------------------


def _limits_with(**values: int) -> Limits:
    return dataclasses.replace(DEFAULT_LIMITS, **values)


def _refusal(call: Callable[[], object]) -> str | None:
    """The message of the ValueError (DecodeError included) `call` raises, None if it passes."""
    try:
        call()
    except ValueError as error:
        return str(error)
    return None


def _accepted(limits: Limits) -> bool:
    return _refusal(limits.validate_basic) is None


def check_consensus_parameters(text: str) -> None:
    rows = table(section(text, "### 8.1"))
    names = [unquote(row[0]) for row in rows]
    assert names == [item.name for item in dataclasses.fields(Limits)]
    for name, default, minimum, maximum, _caps in rows:
        name = unquote(name)
        assert getattr(DEFAULT_LIMITS, name) == number(default), name
        # A bound is either a number or another parameter (at its default).
        low = getattr(DEFAULT_LIMITS, unquote(minimum)) if "`" in minimum else number(minimum)
        high = number(maximum)
        assert _accepted(_limits_with(**{name: low})), f"{name} = {low} is refused"
        assert not _accepted(_limits_with(**{name: low - 1})), f"{name} = {low - 1} is accepted"
        assert _accepted(_limits_with(**{name: high})), f"{name} = {high} is refused"
        assert not _accepted(_limits_with(**{name: high + 1})), f"{name} = {high + 1} accepted"


def _height_bound(value: int) -> None:
    header = generate_types.structures()["header"]
    for height in (value, value + 1):
        vote = Vote(VoteType.PREVOTE, height, 0, bytes(32), bytes(32))
        for item in (vote, dataclasses.replace(header, height=height)):
            refusal = _refusal(item.validate_basic)
            if height == value:
                assert refusal is None, f"{type(item).__name__} height {height}: {refusal}"
            else:
                assert refusal and "height" in refusal, f"{type(item).__name__} height {height}"


def _time_bound(value: int) -> None:
    header = generate_types.structures()["header"]
    assert _refusal(dataclasses.replace(header, time_ms=value).validate_basic) is None
    refusal = _refusal(dataclasses.replace(header, time_ms=value + 1).validate_basic)
    assert refusal and "time_ms" in refusal


def _block_overhead(value: int) -> None:
    limits = _limits_with(max_block_bytes=DEFAULT_LIMITS.max_tx_bytes)
    over = _refusal(lambda: Block.decode(bytes(limits.max_block_bytes + value + 1), limits))
    assert over and "overhead" in over
    # At the bound the bytes are read, and refused for what they hold (a zero version byte).
    at = _refusal(lambda: Block.decode(bytes(limits.max_block_bytes + value), limits))
    assert at and "overhead" not in at


FIXED_CONSTANTS: dict[str, int] = {
    "CHAIN_ID_MAX_BYTES": schema.CHAIN_ID_MAX_BYTES,
    "PAYLOAD_MAX_BYTES": schema.PAYLOAD_MAX_BYTES,
    "ENVELOPE_FIXED_BYTES": schema.ENVELOPE_FIXED_BYTES,
    "TX_MAX_BYTES_LIMIT": schema.TX_MAX_BYTES_LIMIT,
    "MAX_VALIDATORS_CEILING": type_limits.MAX_VALIDATORS_CEILING,
    "MAX_VALIDATOR_POWER": schema.MAX_VALIDATOR_POWER,
    "MAX_TOTAL_VOTING_POWER": type_limits.MAX_TOTAL_VOTING_POWER,
    "MAX_ROUND": type_limits.MAX_ROUND,
    "MAX_RECORD_BYTES": schema.MAX_RECORD_BYTES,
    "BREAK_GLASS_MAX_DURATION_MS": schema.BREAK_GLASS_MAX_DURATION_MS,
    "MAX_TREE_SIZE": merkle.MAX_TREE_SIZE,
    "MAX_PROOF_LENGTH": merkle.MAX_PROOF_LENGTH,
    "max_gossip_txs": type_limits.MAX_GOSSIP_TXS,
}
"""Rows of §8.2 that name a constant of the code."""

FIXED_BOUNDS: dict[str, Callable[[int], None]] = {
    "height": _height_bound,
    "time_ms": _time_bound,
    "block overhead": _block_overhead,
}
"""Rows of §8.2 written as a literal in the code: checked by behaviour (value in, value + 1 out)."""


def check_fixed_limits(text: str) -> None:
    rows = table(section(text, "### 8.2"))
    documented = {unquote(row[0]): number(row[1]) for row in rows}
    assert len(documented) == len(rows), "a row is listed twice"
    assert set(documented) == set(FIXED_CONSTANTS) | set(FIXED_BOUNDS)
    for name, value in documented.items():
        if name in FIXED_CONSTANTS:
            assert value == FIXED_CONSTANTS[name], name
        else:
            FIXED_BOUNDS[name](value)
    # The ceilings of §8.1 are these constants.
    parameters = {unquote(row[0]): row for row in table(section(text, "### 8.1"))}
    assert number(parameters["max_validators"][3]) == documented["MAX_VALIDATORS_CEILING"]
    assert number(parameters["max_tx_bytes"][2]) == documented["ENVELOPE_FIXED_BYTES"]
    assert number(parameters["max_tx_bytes"][3]) == documented["TX_MAX_BYTES_LIMIT"]


def test_consensus_parameters_table_matches_limits() -> None:
    check_consensus_parameters(TEXT)


def test_fixed_limits_table_matches_the_code() -> None:
    check_fixed_limits(TEXT)


# --- §4 envelope -----------------------------------------------------------------------------

_WIDTHS = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "key": 32, "hash": 32, "sig": 64}
_PREFIXES = {"bytes8": 1, "bytes16": 2, "bytes32": 4}


def check_envelope(text: str) -> None:
    envelope = section(text, "## 4.")
    lines = [line.split(None, 2) for line in code_block(envelope).splitlines() if line.strip()]
    names = [line[0] for line in lines]
    assert names == ["version", "chain_id", "kind", "sender", "nonce", "payload", "signature"]
    # The fixed part, summed from the layout with the widths of §1 (a prefix for variable fields).
    fixed = sum(_WIDTHS.get(kind, 0) + _PREFIXES.get(kind, 0) for _, kind, _ in lines)
    assert fixed == schema.ENVELOPE_FIXED_BYTES
    types = {line[0]: (line[1], line[2]) for line in lines}
    chain_low, chain_high = re.match(r"(\d+)\.\.(\d+)", types["chain_id"][1]).groups()
    assert (number(chain_low), number(chain_high)) == (1, schema.CHAIN_ID_MAX_BYTES)
    payload_high = re.match(r"0\.\.([\d,]+) bytes", types["payload"][1]).group(1)
    assert number(payload_high) == schema.PAYLOAD_MAX_BYTES == (1 << 16) - 1
    kinds = re.match(r"1\.\.(\d+)", types["kind"][1]).group(1)
    assert int(kinds) == max(TxKind) == schema.MAX_KIND

    size = re.search(r"exactly `(\d+) \+ len\(chain_id\) \+ len\(payload\)` bytes", envelope)
    assert size is not None and int(size.group(1)) == schema.ENVELOPE_FIXED_BYTES
    longest = re.search(r"longer than ([\d,]+) = (\d+) \+ (\d+) \+ ([\d,]+)", envelope)
    assert longest is not None
    total, *parts = (number(group) for group in longest.groups())
    assert total == sum(parts) == schema.TX_MAX_BYTES_LIMIT
    assert parts == [fixed, schema.CHAIN_ID_MAX_BYTES, schema.PAYLOAD_MAX_BYTES]
    cap = re.search(r"default ([\d,]+),\s+within (\d+)\.\.([\d,]+)\)", envelope)
    assert cap is not None
    default, low, high = (number(group) for group in cap.groups())
    assert default == DEFAULT_LIMITS.max_tx_bytes
    # Both twins' argument check takes max_tx_bytes within exactly these bounds (§4.1).
    for value, ok in ((low, True), (low - 1, False), (high, True), (high + 1, False)):
        refusal = _refusal(lambda value=value: _core.check_transactions([], b"c", value))
        assert (refusal is None) == ok, f"max_tx_bytes {value}: {refusal}"


def test_envelope_sizes_match_the_code() -> None:
    check_envelope(TEXT)
    for vector in generate_types.transactions().values():
        raw = vector.encode()
        fixed = len(raw) - len(vector.chain_id) - len(vector.payload)
        assert fixed == schema.ENVELOPE_FIXED_BYTES


def test_the_longest_transaction_is_the_limit() -> None:
    """A 50-byte chain id and a 65,535-byte payload make a 65,694-byte envelope; one more byte
    is TRAILING_BYTES under the largest max_tx_bytes, never a longer valid transaction."""
    chain = b"c" * schema.CHAIN_ID_MAX_BYTES
    head = bytes([schema.TX_VERSION, len(chain)]) + chain + bytes([TxKind.REVOKE_ACCESS])
    raw = head + b"\x01" * 40 + b"\xff\xff" + bytes(schema.PAYLOAD_MAX_BYTES) + bytes(64)
    assert len(raw) == schema.TX_MAX_BYTES_LIMIT
    verdicts, _ = _core.check_transactions([raw, raw + b"\x00"], chain, schema.TX_MAX_BYTES_LIMIT)
    # The envelope is complete (the payload is wrong for its kind); one byte more is too long.
    assert list(verdicts) == [Verdict.FIELD_ZERO, Verdict.TOO_LARGE]


# --- §4.2 payload table --------------------------------------------------------------------

_TYPE = re.compile(
    r"(?P<name>\w+) (?:(?P<key>key\??|hash)|fixed\((?P<fixed>\d+)\)"
    r"|(?P<var>ident|text8|text16|bytes8|bytes16|u8|u16|u32|u64)\[(?P<low>[^.\]]+)\.\.(?P<high>[^\]]+)\]"
    r"|enum\{(?P<enum>[^}]*)\})"
)
_VARIABLE = {
    "ident": (schema.FIELD_IDENT, 1),
    "text8": (schema.FIELD_TEXT, 1),
    "text16": (schema.FIELD_TEXT, 2),
    "bytes8": (schema.FIELD_BYTES, 1),
    "bytes16": (schema.FIELD_BYTES, 2),
    "u8": (schema.FIELD_UINT, 1),
    "u16": (schema.FIELD_UINT, 2),
    "u32": (schema.FIELD_UINT, 4),
    "u64": (schema.FIELD_UINT, 8),
}


def _field(cell: str) -> schema.FieldSpec:
    match = _TYPE.fullmatch(cell)
    assert match is not None, f"unreadable field {cell!r}"
    name = match["name"]
    if match["key"]:
        return schema.FieldSpec(name, schema.FIELD_FIXED, 32, 0 if match["key"] == "key?" else 1)
    if match["fixed"]:
        return schema.FieldSpec(name, schema.FIELD_FIXED, int(match["fixed"]), 1)
    if match["enum"]:
        values = [int(item.split()[0]) for item in match["enum"].split(",")]
        return schema.FieldSpec(name, schema.FIELD_ENUM, 1, allowed=sum(1 << v for v in values))
    field_type, arg = _VARIABLE[match["var"]]
    return schema.FieldSpec(name, field_type, arg, number(match["low"]), number(match["high"]))


def check_payload_table(text: str) -> None:
    rows = table(section(text, "### 4.2"))
    documented = {
        int(kind): tuple(_field(cell) for cell in re.findall(r"`([^`]+)`", fields))
        for kind, _name, fields in rows
    }
    assert documented == {int(kind): specs for kind, specs in schema.PAYLOAD_SCHEMAS.items()}


def test_payload_table_matches_the_schema() -> None:
    check_payload_table(TEXT)


# --- §5 verdicts, §2 domains, §6/§7 sizes ---------------------------------------------------


def check_verdict_table(text: str) -> None:
    pairs = re.findall(r"\| (\d+) \| `([A-Z_]+)`", section(text, "## 5."))
    assert {int(code): name for code, name in pairs} == {v.value: v.name for v in Verdict}


def check_domain_table(text: str) -> None:
    rows = table(section(text, "## 2."))
    assert [int(unquote(row[0]), 16) for row in rows] == [domain.value for domain in Domain]
    sizes = {int(unquote(row[0]), 16): re.search(r"\((\d+) bytes", row[2]) for row in rows}
    structures = generate_types.structures()
    assert int(sizes[Domain.VOTE].group(1)) == len(structures["prevote"].body())
    assert int(sizes[Domain.PROPOSAL].group(1)) == len(structures["proposal"].body())
    assert int(sizes[Domain.KEY_ROTATION].group(1)) == 3 * 32
    assert int(sizes[Domain.RPC_REQUEST].group(1)) == 32
    assert int(sizes[Domain.P2P_HANDSHAKE].group(1)) == 1 + 32
    # The shared prefix: domain | u8 len(chain_id) | chain_id | body; an envelope has it too.
    chain = generate_types.CHAIN_ID
    prefix = bytes([len(chain)]) + chain
    vote = structures["prevote"]
    assert vote.signed_message(chain) == bytes([Domain.VOTE]) + prefix + vote.body()
    envelope = next(iter(generate_types.transactions().values())).signed_bytes()
    assert envelope.startswith(bytes([Domain.TRANSACTION]) + prefix)


def check_sizes(text: str) -> None:
    sizes = re.search(
        r"a Validator is (\d+) bytes, a Vote (\d+), a Proposal (\d+), a CommitCertificate\s+"
        r"`(\d+) \+ (\d+) × entries`, a DuplicateVoteEvidence (\d+)",
        section(text, "## 6."),
    )
    assert sizes is not None
    validator, vote, proposal, commit_fixed, entry, evidence = map(int, sizes.groups())
    structures = generate_types.structures()
    commit = structures["commit"]
    assert len(structures["validator"].encode()) == validator
    assert len(structures["prevote"].encode()) == vote
    assert len(structures["proposal"].encode()) == proposal
    assert len(commit.encode()) == commit_fixed + entry * len(commit.signatures)
    assert len(structures["evidence"].encode()) == evidence
    header_size = re.search(r"A header is `(\d+) \+ len\(chain_id\)` bytes", text)
    assert header_size is not None
    header = structures["header"]
    assert len(header.encode()) == int(header_size.group(1)) + len(header.chain_id)


def test_verdict_table_matches_the_codes() -> None:
    check_verdict_table(TEXT)


def test_domain_table_matches_the_domains() -> None:
    check_domain_table(TEXT)


def test_stated_sizes_match_the_encodings() -> None:
    check_sizes(TEXT)


# --- §2.2 key-rotation message ---------------------------------------------------------------

OLD = MemberIdentity.from_seed(hashlib.sha256(b"encoding-spec/rotation/old").digest())
NEW = MemberIdentity.from_seed(hashlib.sha256(b"encoding-spec/rotation/new").digest())
ROTATION_CHAIN_ID = b"emrchain-vectors"
ROTATION_NONCE = 7


def message_from_spec(text: str, chain_id: bytes, keys: dict[str, bytes]) -> bytes:
    """Assemble the §2.2 message from the layout the spec states, token by token."""
    layout = code_block(section(text, "### 2.2"))
    match = re.fullmatch(r"rotation message = (.+)\n", layout)
    assert match is not None, layout
    message = b""
    for token in match.group(1).split(" | "):
        if re.fullmatch(r"0x[0-9a-f]{2}", token):
            message += bytes([int(token, 16)])
        elif token == "u8 len(chain_id)":
            message += bytes([len(chain_id)])
        elif token == "chain_id":
            message += chain_id
        else:
            name, kind = token.split(" ")
            assert kind == "key" and len(keys[name]) == 32, token
            message += keys[name]
    length = re.search(r"The message is `(\d+) \+ len\(chain_id\)` bytes", section(text, "### 2.2"))
    assert length is not None and len(message) == int(length.group(1)) + len(chain_id)
    return message


def rotation_vector() -> dict[str, Any]:
    """The pinned example: a member moves from OLD to NEW on ROTATION_CHAIN_ID."""
    tx = rotate_key(OLD, ROTATION_CHAIN_ID, ROTATION_NONCE, new_identity=NEW)
    message = rotation_message(
        ROTATION_CHAIN_ID, OLD.member_key, NEW.member_key, NEW.encryption_public_key
    )
    return {
        "description": (
            "Key-rotation proof of possession (docs/spec/encoding.md 2.2): message = 0x05 || "
            "u8 len(chain_id) || chain_id || old key || new member key || new encryption key; "
            "proof = Ed25519 signature of it by the new key; transaction = the ROTATE_KEY "
            "envelope carrying it, signed by the old key. Generated by "
            "tests/types/test_encoding_spec.py."
        ),
        "chain_id": ROTATION_CHAIN_ID.decode(),
        "old_seed_hex": OLD.signer.seed.hex(),
        "new_seed_hex": NEW.signer.seed.hex(),
        "old_key_hex": OLD.member_key.hex(),
        "new_member_key_hex": NEW.member_key.hex(),
        "new_encryption_key_hex": NEW.encryption_public_key.hex(),
        "message_hex": message.hex(),
        "proof_hex": tx.fields["proof"].hex(),
        "transaction_hex": tx.encode().hex(),
    }


def check_rotation_message(text: str) -> None:
    vector = json.loads(VECTOR.read_text())
    chain_id = vector["chain_id"].encode()
    keys = {
        "old_key": bytes.fromhex(vector["old_key_hex"]),
        "new_member_key": bytes.fromhex(vector["new_member_key_hex"]),
        "new_encryption_key": bytes.fromhex(vector["new_encryption_key_hex"]),
    }
    by_hand = (
        b"\x05"
        + bytes([len(chain_id)])
        + chain_id
        + keys["old_key"]
        + keys["new_member_key"]
        + keys["new_encryption_key"]
    )
    from_spec = message_from_spec(text, chain_id, keys)
    assert from_spec == by_hand
    assert from_spec.hex() == vector["message_hex"]
    assert from_spec == rotation_message(
        chain_id, keys["old_key"], keys["new_member_key"], keys["new_encryption_key"]
    )
    proof = bytes.fromhex(vector["proof_hex"])
    assert verify_signature(keys["new_member_key"], from_spec, proof)
    assert Ed25519Signer(bytes.fromhex(vector["new_seed_hex"])).sign(from_spec) == proof


def test_rotation_message_is_the_spec_layout() -> None:
    check_rotation_message(TEXT)


def test_rotation_vector_is_current_and_its_transaction_carries_the_proof() -> None:
    vector = json.loads(VECTOR.read_text())
    assert vector == rotation_vector()
    tx = Transaction.decode(bytes.fromhex(vector["transaction_hex"]), ROTATION_CHAIN_ID)
    assert tx.kind == TxKind.ROTATE_KEY and tx.verify_signature()
    assert tx.sender.hex() == vector["old_key_hex"]
    assert tx.fields["proof"].hex() == vector["proof_hex"]
    assert rotation_proof(ROTATION_CHAIN_ID, OLD, NEW).hex() == vector["proof_hex"]
    # Bound to the key it replaces and to the chain: elsewhere it does not verify.
    for chain_id, old_key in ((b"other-chain", OLD.member_key), (ROTATION_CHAIN_ID, bytes(32))):
        other = rotation_message(chain_id, old_key, NEW.member_key, NEW.encryption_public_key)
        assert not verify_signature(NEW.member_key, other, tx.fields["proof"])


# --- the checks do fail ------------------------------------------------------------------------

MUTATIONS = [
    # The error this file was written for: §4 said 65,744.
    ("longer than 65,694 = 109", "longer than 65,744 = 109", check_envelope),
    ("default 4,096,", "default 4,097,", check_envelope),
    ("within 109..65,694)", "within 110..65,694)", check_envelope),
    ("chain_id     bytes8  1..50 bytes", "chain_id     bytes8  1..64 bytes", check_envelope),
    ("| `max_validators` | 150 |", "| `max_validators` | 151 |", check_consensus_parameters),
    ("| 1 | 1,000 | entries", "| 1 | 1,001 | entries", check_consensus_parameters),
    ("| 16,777,216 | `max_tx_bytes` |", "| 16,777,216 | 1 |", check_consensus_parameters),
    ("| `MAX_ROUND` | 2^31 − 1 |", "| `MAX_ROUND` | 2^31 |", check_fixed_limits),
    ("| height | 2^63 − 1 |", "| height | 2^63 |", check_fixed_limits),
    ("| block overhead | 1,048,576 |", "| block overhead | 1,000,000 |", check_fixed_limits),
    ("| `max_gossip_txs` | 5,000 |", "| `max_gossip_txs` | 500 |", check_fixed_limits),
    (  # kind 5's row (kind 16's repeats the field without the comment after the next one)
        "`size_bytes u64[1..2^40]`, `patient_wrap_sha256 hash` (",
        "`size_bytes u64[1..2^41]`, `patient_wrap_sha256 hash` (",
        check_payload_table,
    ),
    ("`reason text16[8..512]`", "`reason text8[8..512]`", check_payload_table),
    ("`patient_id key?` |", "`patient_id key` |", check_payload_table),
    ("3 patient, 4 auditor}", "3 patient}", check_payload_table),
    ("| 7 | `ZERO_SENDER` |", "| 7 | `ZERO_KEY` |", check_verdict_table),
    ("(45 bytes)", "(46 bytes)", check_domain_table),
    ("a Vote 141,", "a Vote 142,", check_sizes),
    ("A header is `278 +", "A header is `276 +", check_sizes),
    (
        "old_key key | new_member_key key",
        "new_member_key key | old_key key",
        check_rotation_message,
    ),
    ("0x05 | u8 len(chain_id) | chain_id", "0x05 | chain_id", check_rotation_message),
    ("The message is `98 +", "The message is `96 +", check_rotation_message),
]


@pytest.mark.parametrize(
    ("original", "changed", "check"), MUTATIONS, ids=[m[1][:40] for m in MUTATIONS]
)
def test_a_wrong_number_in_the_spec_is_caught(
    original: str, changed: str, check: Callable[[str], None]
) -> None:
    assert TEXT.count(original) == 1, f"{original!r} is not in the spec exactly once"
    with pytest.raises(AssertionError):
        check(TEXT.replace(original, changed))


if __name__ == "__main__":
    if "--write" not in sys.argv:
        print(json.dumps(rotation_vector(), indent=2))
    else:
        VECTOR.write_text(json.dumps(rotation_vector(), indent=2) + "\n")
