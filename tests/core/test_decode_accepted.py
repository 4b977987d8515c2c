"""`decode_accepted`: the compiled twin returns the reference's `DecodedTransaction`, field by
field and type by type, for accepted transactions of every kind; outside that contract it stays
inside the bytes it is given.

Its contract covers only transactions `check_transactions` accepted (verdict OK), so every
agreement test first checks the verdict with both `check_transactions` twins.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emrchain._core as core
from emrchain import schema
from emrchain._core.reference import txcheck
from emrchain.schema import codec
from emrchain.schema.codec import DecodedTransaction
from tests.core import txgen
from tests.core.conftest import CheckFn, load_function
from tests.core.test_txcheck import mutated_transactions
from tests.core.txgen import CHAIN_ID, build_tx

K = schema.TxKind
MAX = schema.TX_MAX_BYTES_LIMIT
DecodeFn = Callable[[bytes], DecodedTransaction]
AGREE_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# The Python type of each field type's decoded value.
VALUE_TYPES = {
    schema.FIELD_FIXED: bytes,
    schema.FIELD_UINT: int,
    schema.FIELD_BYTES: bytes,
    schema.FIELD_TEXT: str,
    schema.FIELD_IDENT: str,
    schema.FIELD_ENUM: int,
}
ENVELOPE_TYPES = {
    "version": int,
    "chain_id": bytes,
    "kind": K,
    "sender": bytes,
    "nonce": int,
    "payload": bytes,
    "signature": bytes,
    "fields": dict,
}


@pytest.fixture(scope="session")
def decode_twins() -> tuple[DecodeFn, DecodeFn]:
    """(compiled, reference) `decode_accepted`."""
    return load_function(core.CYTHON, "decode_accepted"), load_function(
        core.PYTHON, "decode_accepted"
    )


def assert_agree(
    decode_twins: tuple[DecodeFn, DecodeFn],
    twins: tuple[CheckFn, CheckFn],
    txs: list[bytes],
    chain_id: bytes = CHAIN_ID,
) -> None:
    """Both check twins accept `txs`; both decode twins return the same values and types,
    which are also those of the normative `decode_transaction`."""
    for check in twins:
        assert check(txs, chain_id, MAX)[0] == bytes(len(txs))
    compiled, reference = decode_twins
    for raw in txs:
        got, want = compiled(raw), reference(raw)
        assert type(got) is DecodedTransaction and type(want) is DecodedTransaction
        assert want == codec.decode_transaction(raw, chain_id, MAX)
        for name in DecodedTransaction._fields:
            value, expected = getattr(got, name), getattr(want, name)
            assert type(value) is type(expected) is ENVELOPE_TYPES[name], name
            assert value == expected, name
        assert got.kind is want.kind
        specs = schema.PAYLOAD_SCHEMAS[want.kind]
        assert list(got.fields) == list(want.fields) == [spec.name for spec in specs]
        for spec in specs:
            value, expected = got.fields[spec.name], want.fields[spec.name]
            assert type(value) is type(expected) is VALUE_TYPES[spec.type], spec.name
            assert value == expected, spec.name
        assert got == want


@pytest.mark.parametrize("kind", txgen.ALL_KINDS, ids=lambda k: K(k).name)
@AGREE_SETTINGS
@given(data=st.data())
def test_valid_transactions_of_each_kind(decode_twins, twins, kind: int, data: st.DataObject):
    txs = data.draw(st.lists(txgen.valid_transactions(kinds=(kind,)), min_size=1, max_size=4))
    assert_agree(decode_twins, twins, txs)


CHAIN_IDS = [CHAIN_ID, b"a", b"z" * schema.CHAIN_ID_MAX_BYTES, b"emrchain-test2", b"az09._-"]


@AGREE_SETTINGS
@given(data=st.data())
def test_mixed_kinds_and_chain_ids(decode_twins, twins, data: st.DataObject) -> None:
    """Consecutive transactions of other chains and kinds (the compiled twin reuses the
    chain-id object of the previous call when the bytes are equal)."""
    for chain_id in data.draw(st.lists(st.sampled_from(CHAIN_IDS), min_size=1, max_size=4)):
        txs = data.draw(
            st.lists(txgen.valid_transactions(chain_id=chain_id), min_size=1, max_size=3)
        )
        assert_agree(decode_twins, twins, txs, chain_id)


def test_pinned_vectors(decode_twins, twins) -> None:
    vectors = json.loads((Path(__file__).parents[1] / "vectors" / "transactions.json").read_text())
    txs = [bytes.fromhex(v["hex"]) for v in vectors["transactions"].values()]
    assert sorted(tx[2 + tx[1]] for tx in txs) == sorted(txgen.ALL_KINDS)
    assert_agree(decode_twins, twins, txs, vectors["chain_id"].encode())


class RawBytes(bytes):
    pass


EDGES = [
    ("u64-max-epoch", build_tx(K.VALIDATOR_UPDATE, {"epoch": schema.U64_MAX})),
    ("u64-max-expiry", build_tx(K.GRANT_ACCESS, {"expires_at_ms": schema.U64_MAX})),
    ("max-power", build_tx(K.VALIDATOR_UPDATE, {"power": schema.MAX_VALIDATOR_POWER})),
    ("zero-power", build_tx(K.VALIDATOR_UPDATE, {"power": 0})),
    ("max-record", build_tx(K.ANCHOR_RECORD, {"size_bytes": schema.MAX_RECORD_BYTES})),
    ("max-duration", build_tx(K.BREAK_GLASS, {"duration_ms": 86_400_000})),
    ("optional-zero-key", build_tx(K.ACCESS_EVENT, {"grant_id": bytes(32)})),
    ("empty-ident", build_tx(K.GRANT_ACCESS, {"grantee_organization": ""})),
    ("optional-zero-digest", build_tx(K.GRANT_ACCESS, {"wrapped_key_sha256": bytes(32)})),
    ("empty-bytes", build_tx(K.ANCHOR_RECORD, {"cid": b"\x01\x55"})),
    ("max-bytes", build_tx(K.ANCHOR_RECORD, {"custody": b"\x01" * schema.CUSTODY_MAX_BYTES})),
    ("max-cid", build_tx(K.ANCHOR_RECORD, {"cid": bytes(64)})),
    ("empty-text", build_tx(K.REVOKE_MEMBER, {"reason": ""})),
    ("text-nul-astral", build_tx(K.REVOKE_MEMBER, {"reason": "\x00\U0010ffff"})),
    ("max-text", build_tx(K.BREAK_GLASS, {"reason": "é" * 256})),
    ("max-ident", build_tx(K.REGISTER_ORGANIZATION, {"organization_id": "a.b_c-0" * 9 + "z"})),
    ("nonce-0", build_tx(K.REVOKE_ACCESS, nonce=0)),
    ("nonce-u64-max", build_tx(K.REVOKE_ACCESS, nonce=schema.U64_MAX)),
    ("bytes-subclass", RawBytes(build_tx(K.ERASE_RECORD))),
]


@pytest.mark.parametrize("tx", [e[1] for e in EDGES], ids=[e[0] for e in EDGES])
def test_edge_values(decode_twins, twins, tx: bytes) -> None:
    assert_agree(decode_twins, twins, [tx])


def test_selector_exports_the_active_twin() -> None:
    module = {core.CYTHON: "emrchain._core._txcheck", core.PYTHON: txcheck.__name__}
    assert core.decode_accepted.__module__ == module[core.IMPLEMENTATION]


def test_no_reference_leaks(decode_twins) -> None:
    compiled, _ = decode_twins
    tx = txgen.make_anchor_tx(7)
    compiled(tx)  # the chain-id object is now cached
    kept = [K.ANCHOR_RECORD, sys.intern("record_id"), sys.intern("cid"), tx]
    before = [sys.getrefcount(obj) for obj in kept]
    for _ in range(1000):
        compiled(tx)
    assert [sys.getrefcount(obj) for obj in kept] == before


# --- Outside the contract: the compiled twin never reads past the bytes ----------------------


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as error:  # comparing exception types is the point
        return type(error)


def assert_safe(decode_twins: tuple[DecodeFn, DecodeFn], raw: bytes) -> None:
    """The compiled twin returns what the reference returns or raises the same exception type,
    except that it raises IndexError where the reference would read past a field's end (and
    then decode clamped slices into garbage, or fail later)."""
    compiled, reference = decode_twins
    got = outcome(compiled, raw)
    if got is not IndexError:
        assert got == outcome(reference, raw)
        if isinstance(got, DecodedTransaction):
            assert [type(v) for v in got] == [type(v) for v in reference(raw)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_transactions())
def test_mutated_bytes(decode_twins, raw: bytes) -> None:
    assert_safe(decode_twins, raw)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes(decode_twins, raw: bytes) -> None:
    assert_safe(decode_twins, raw)


@pytest.mark.parametrize("kind", txgen.ALL_KINDS, ids=lambda k: K(k).name)
def test_every_prefix(decode_twins, kind: int) -> None:
    tx = build_tx(kind)
    for length in range(len(tx)):
        assert_safe(decode_twins, tx[:length])


@pytest.mark.parametrize("item", [None, 5, "01"], ids=lambda i: type(i).__name__)
def test_non_bytes(decode_twins, item: Any) -> None:
    compiled, reference = decode_twins
    with pytest.raises(TypeError):
        compiled(item)
    with pytest.raises(TypeError):
        reference(item)
