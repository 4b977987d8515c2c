"""`check_transactions`: explicit verdict examples for both twins, limits, strict UTF-8, and
hypothesis differential tests (compiled vs reference: same verdicts, ids and exception types).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emrchain import schema
from emrchain.schema.verdicts import LimitError, Verdict
from tests.core import txgen
from tests.core.txgen import CHAIN_ID, build_tx, envelope

K = schema.TxKind
V = Verdict
MAX = 4096
U64_MAX = schema.U64_MAX
KEYS = b"\x11" * 64  # two non-zero 32-byte keys
ZERO_ID = bytes(32)
DIFF_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """The result, or the exception type (twins must raise the same types)."""
    try:
        return fn(*args)
    except Exception as error:  # comparing exception types is the point
        return type(error)


def expected_ids(txs: list[bytes], verdicts: bytes) -> list[bytes]:
    return [
        ZERO_ID if v == Verdict.TOO_LARGE else hashlib.sha256(tx).digest()
        for tx, v in zip(txs, verdicts, strict=True)
    ]


def assert_same(twins, txs: list[bytes], chain_id: bytes = CHAIN_ID, max_tx: int = MAX) -> bytes:
    compiled, reference = twins
    got = outcome(compiled, txs, chain_id, max_tx)
    assert got == outcome(reference, txs, chain_id, max_tx)
    if isinstance(got, tuple):
        verdicts, ids = got
        assert type(verdicts) is bytes and len(verdicts) == len(txs)
        assert ids == expected_ids(txs, verdicts)
        assert all(type(i) is bytes for i in ids)
        return verdicts
    return b""


def with_payload(kind: int, values: dict[str, Any], **envelope_args: Any) -> bytes:
    """A tx whose fields are the defaults overridden by `values`, encoded without rule checks."""
    payload = txgen.encode_payload(kind, {**txgen.default_values(kind), **values})
    return envelope(kind, payload, **envelope_args)


def anchor_payload(**values: Any) -> bytes:
    return txgen.encode_payload(
        K.ANCHOR_RECORD, {**txgen.default_values(K.ANCHOR_RECORD), **values}
    )


VALID = build_tx(K.ANCHOR_RECORD)
HEADER = 2 + len(CHAIN_ID)  # offset of the kind byte
PAYLOAD_AT = txgen.payload_offset(VALID)

# The last field (REVOKE_MEMBER reason) declares one byte more than the payload holds; the byte
# after the payload (the signature's first) would make the text invalid if it were read.
_REVOKE = envelope(K.REVOKE_MEMBER, KEYS[:32] + b"\x03ab")
OVERRUN_BY_ONE = _REVOKE[:-64] + b"\xff" * 64

# (test id, transaction, max_tx_bytes, expected verdict): every verdict except BAD_SIGNATURE.
EXAMPLES = [
    *[(f"ok-{kind.name}", build_tx(kind), MAX, V.OK) for kind in txgen.ALL_KINDS],
    ("ok-exactly-max", VALID, len(VALID), V.OK),
    ("ok-u64-max-epoch", build_tx(K.VALIDATOR_UPDATE, {"epoch": schema.U64_MAX}), MAX, V.OK),
    ("ok-u64-max-expiry", build_tx(K.GRANT_ACCESS, {"expires_at_ms": schema.U64_MAX}), MAX, V.OK),
    ("ok-max-power", build_tx(K.VALIDATOR_UPDATE, {"power": 1 << 50}), MAX, V.OK),
    ("ok-zero-power", build_tx(K.VALIDATOR_UPDATE, {"power": 0}), MAX, V.OK),
    ("ok-max-record", build_tx(K.ANCHOR_RECORD, {"size_bytes": 1 << 40}), MAX, V.OK),
    ("ok-max-duration", build_tx(K.BREAK_GLASS, {"duration_ms": 86_400_000}), MAX, V.OK),
    ("ok-optional-zero-key", build_tx(K.ACCESS_EVENT, {"grant_id": ZERO_ID}), MAX, V.OK),
    ("ok-empty-ident", build_tx(K.GRANT_ACCESS, {"grantee_organization": ""}), MAX, V.OK),
    ("ok-text-nul-astral", build_tx(K.REVOKE_MEMBER, {"reason": "\x00\U0010ffff"}), MAX, V.OK),
    ("ok-max-text", build_tx(K.BREAK_GLASS, {"reason": "é" * 256}), MAX, V.OK),
    ("too-large", VALID, len(VALID) - 1, V.TOO_LARGE),
    ("too-large-beats-bad-version", b"\x07" * 200, 150, V.TOO_LARGE),
    ("truncated-empty", b"", MAX, V.TRUNCATED),
    ("truncated-version-only", b"\x01", MAX, V.TRUNCATED),
    ("truncated-in-chain", VALID[:5], MAX, V.TRUNCATED),
    ("truncated-before-kind", VALID[:HEADER], MAX, V.TRUNCATED),
    ("truncated-in-sender", VALID[: HEADER + 10], MAX, V.TRUNCATED),
    ("truncated-in-signature", VALID[:-1], MAX, V.TRUNCATED),
    ("trailing", VALID + b"\x00", MAX, V.TRAILING_BYTES),
    ("bad-version-0", b"\x00", MAX, V.BAD_VERSION),
    ("bad-version-2", b"\x02" + VALID[1:], MAX, V.BAD_VERSION),
    ("bad-version-255", b"\xff" + VALID[1:], MAX, V.BAD_VERSION),
    ("wrong-chain", build_tx(K.ANCHOR_RECORD, chain_id=b"other-chain"), MAX, V.WRONG_CHAIN),
    ("wrong-chain-prefix", build_tx(K.ANCHOR_RECORD, chain_id=CHAIN_ID[:-1]), MAX, V.WRONG_CHAIN),
    ("wrong-chain-empty", build_tx(K.ANCHOR_RECORD, chain_id=b""), MAX, V.WRONG_CHAIN),
    ("wrong-chain-beats-truncated", b"\x01\x01x", MAX, V.WRONG_CHAIN),
    ("unknown-kind-0", envelope(0, b""), MAX, V.UNKNOWN_KIND),
    ("unknown-kind-next", envelope(schema.MAX_KIND + 1, b""), MAX, V.UNKNOWN_KIND),
    ("unknown-kind-255", envelope(255, b"x"), MAX, V.UNKNOWN_KIND),
    ("unknown-kind-beats-truncated", VALID[:HEADER] + b"\xfe", MAX, V.UNKNOWN_KIND),
    ("zero-sender", build_tx(K.ANCHOR_RECORD, sender=ZERO_ID), MAX, V.ZERO_SENDER),
    (
        "payload-extra-byte",
        envelope(K.ANCHOR_RECORD, anchor_payload() + b"\0"),
        MAX,
        V.PAYLOAD_LENGTH,
    ),
    ("payload-short", envelope(K.ANCHOR_RECORD, anchor_payload()[:-1]), MAX, V.PAYLOAD_LENGTH),
    ("payload-empty", envelope(K.REVOKE_ACCESS, b""), MAX, V.PAYLOAD_LENGTH),
    ("payload-in-prefix", envelope(K.BREAK_GLASS, KEYS + b"\x00"), MAX, V.PAYLOAD_LENGTH),
    (
        "payload-var-overrun",
        envelope(K.REVOKE_MEMBER, KEYS[:32] + b"\x05ab"),
        MAX,
        V.PAYLOAD_LENGTH,
    ),
    ("payload-text-overrun-by-one", OVERRUN_BY_ONE, MAX, V.PAYLOAD_LENGTH),
    ("field-zero", with_payload(K.ANCHOR_RECORD, {"record_id": ZERO_ID}), MAX, V.FIELD_ZERO),
    ("field-zero-proof", with_payload(K.ROTATE_KEY, {"proof": bytes(64)}), MAX, V.FIELD_ZERO),
    (
        "field-zero-beats-enum",
        with_payload(K.ANCHOR_RECORD, {"record_id": ZERO_ID, "record_type": 0}),
        MAX,
        V.FIELD_ZERO,
    ),
    ("range-size-0", with_payload(K.ANCHOR_RECORD, {"size_bytes": 0}), MAX, V.FIELD_RANGE),
    (
        "range-size",
        with_payload(K.ANCHOR_RECORD, {"size_bytes": (1 << 40) + 1}),
        MAX,
        V.FIELD_RANGE,
    ),
    ("range-size-u64", with_payload(K.ANCHOR_RECORD, {"size_bytes": U64_MAX}), MAX, V.FIELD_RANGE),
    ("range-epoch-0", with_payload(K.VALIDATOR_UPDATE, {"epoch": 0}), MAX, V.FIELD_RANGE),
    ("range-power", with_payload(K.VALIDATOR_UPDATE, {"power": (1 << 50) + 1}), MAX, V.FIELD_RANGE),
    (
        "range-duration",
        with_payload(K.BREAK_GLASS, {"duration_ms": 86_400_001}),
        MAX,
        V.FIELD_RANGE,
    ),
    (
        "range-duration-u32",
        with_payload(K.BREAK_GLASS, {"duration_ms": 2**32 - 1}),
        MAX,
        V.FIELD_RANGE,
    ),
    ("length-cid-short", with_payload(K.ANCHOR_RECORD, {"cid": b"x"}), MAX, V.FIELD_LENGTH),
    ("length-cid-long", with_payload(K.ANCHOR_RECORD, {"cid": b"x" * 65}), MAX, V.FIELD_LENGTH),
    ("length-text-short", with_payload(K.BREAK_GLASS, {"reason": b"1234567"}), MAX, V.FIELD_LENGTH),
    (
        "length-text-u16",
        envelope(K.BREAK_GLASS, KEYS + b"\xff\xff" + b"x" * 20),
        MAX,
        V.FIELD_LENGTH,
    ),
    (
        "length-ident-empty",
        with_payload(K.REGISTER_ORGANIZATION, {"organization_id": b""}),
        MAX,
        V.FIELD_LENGTH,
    ),
    (
        "length-beats-text",
        with_payload(K.REGISTER_ORGANIZATION, {"name": b"\xff" * 129}),
        MAX,
        V.FIELD_LENGTH,
    ),
    ("enum-0", with_payload(K.ANCHOR_RECORD, {"record_type": 0}), MAX, V.BAD_ENUM),
    ("enum-9", with_payload(K.ANCHOR_RECORD, {"record_type": 9}), MAX, V.BAD_ENUM),
    ("enum-64", with_payload(K.ANCHOR_RECORD, {"record_type": 64}), MAX, V.BAD_ENUM),
    ("enum-255", with_payload(K.ANCHOR_RECORD, {"record_type": 255}), MAX, V.BAD_ENUM),
    ("enum-role", with_payload(K.REGISTER_MEMBER, {"role": 5}), MAX, V.BAD_ENUM),
    ("text-ff", with_payload(K.REGISTER_ORGANIZATION, {"name": b"\xff"}), MAX, V.BAD_TEXT),
    ("text-surrogate", with_payload(K.REVOKE_MEMBER, {"reason": b"\xed\xa0\x80"}), MAX, V.BAD_TEXT),
    (
        "ident-upper",
        with_payload(K.REGISTER_ORGANIZATION, {"organization_id": b"Clinic"}),
        MAX,
        V.BAD_IDENT,
    ),
    (
        "ident-space",
        with_payload(K.GRANT_ACCESS, {"grantee_organization": b"a b"}),
        MAX,
        V.BAD_IDENT,
    ),
    (
        "ident-utf8",
        with_payload(K.REGISTER_ORGANIZATION, {"organization_id": "é"}),
        MAX,
        V.BAD_IDENT,
    ),
]


@pytest.mark.parametrize(
    ("tx", "max_tx", "expected"), [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES]
)
def test_explicit_verdicts(check, tx: bytes, max_tx: int, expected: int) -> None:
    verdicts, ids = check([tx], CHAIN_ID, max_tx)
    assert Verdict(verdicts[0]) == Verdict(expected)
    assert ids == expected_ids([tx], verdicts)


def test_examples_reach_every_verdict() -> None:
    reached = {Verdict(e[3]) for e in EXAMPLES}
    assert reached == set(Verdict) - {Verdict.BAD_SIGNATURE}


def test_batch_keeps_order(check) -> None:
    txs = [e[1] for e in EXAMPLES if e[2] == MAX]
    verdicts, ids = check(txs, CHAIN_ID, MAX)
    assert list(verdicts) == [e[3] for e in EXAMPLES if e[2] == MAX]
    assert ids == expected_ids(txs, verdicts)


def test_pinned_vectors(check) -> None:
    """The pinned encoding vectors (tests/vectors/transactions.json) are valid, ids as pinned."""
    vectors = json.loads((Path(__file__).parents[1] / "vectors" / "transactions.json").read_text())
    chain_id = vectors["chain_id"].encode()
    txs = [bytes.fromhex(v["hex"]) for v in vectors["transactions"].values()]
    verdicts, ids = check(txs, chain_id, MAX)
    assert verdicts == bytes(len(txs))
    assert [i.hex() for i in ids] == [v["tx_id"] for v in vectors["transactions"].values()]
    assert sorted(tx[2 + tx[1]] for tx in txs) == sorted(txgen.ALL_KINDS)


# --- Limits and arguments ------------------------------------------------------------------


def test_empty_batch(check) -> None:
    assert check([], CHAIN_ID, MAX) == (b"", [])
    assert check((), CHAIN_ID, MAX) == (b"", [])


def test_too_large_ids_are_zero_and_never_hashed(check) -> None:
    big = VALID + b"\x00" * 100
    verdicts, ids = check([big, VALID, b"", big], CHAIN_ID, len(VALID))
    assert list(verdicts) == [Verdict.TOO_LARGE, Verdict.OK, Verdict.TRUNCATED, Verdict.TOO_LARGE]
    assert ids == [ZERO_ID, hashlib.sha256(VALID).digest(), hashlib.sha256(b"").digest(), ZERO_ID]


@pytest.mark.parametrize("kind", txgen.ALL_KINDS, ids=lambda k: K(k).name)
def test_every_prefix_is_truncated(check, kind: int) -> None:
    tx = build_tx(kind)
    prefixes = [tx[:length] for length in range(len(tx))]
    verdicts, ids = check(prefixes, CHAIN_ID, MAX)
    assert set(verdicts) == {Verdict.TRUNCATED}
    assert ids == expected_ids(prefixes, verdicts)


@pytest.mark.parametrize("extra", [b"\x00", b"\xff" * 64, bytes(1000)])
def test_trailing_bytes(check, extra: bytes) -> None:
    assert check([VALID + extra], CHAIN_ID, MAX)[0] == bytes([Verdict.TRAILING_BYTES])


def test_declared_payload_length_ffff_with_short_data(check) -> None:
    tx = envelope(K.ANCHOR_RECORD, anchor_payload(), payload_len=0xFFFF)
    assert check([tx], CHAIN_ID, schema.TX_MAX_BYTES_LIMIT)[0] == bytes([Verdict.TRUNCATED])


def test_largest_possible_transaction(check) -> None:
    chain = b"c" * schema.CHAIN_ID_MAX_BYTES
    tx = envelope(K.REVOKE_ACCESS, b"\x11" * schema.PAYLOAD_MAX_BYTES, chain_id=chain)
    assert len(tx) == schema.TX_MAX_BYTES_LIMIT
    # A REVOKE_ACCESS payload is one 32-byte key: the rest is payload trailing its fields.
    assert check([tx], chain, schema.TX_MAX_BYTES_LIMIT)[0] == bytes([Verdict.PAYLOAD_LENGTH])
    assert check([tx], chain, len(tx) - 1)[0] == bytes([Verdict.TOO_LARGE])


def test_text_prefix_larger_than_payload(check) -> None:
    tx = envelope(K.BREAK_GLASS, KEYS + (512).to_bytes(2, "big") + b"reason..")
    assert check([tx], CHAIN_ID, MAX)[0] == bytes([Verdict.PAYLOAD_LENGTH])


@pytest.mark.parametrize(
    ("max_tx", "error"),
    [
        (schema.ENVELOPE_FIXED_BYTES - 1, LimitError),
        (0, LimitError),
        (-1, LimitError),
        (schema.TX_MAX_BYTES_LIMIT + 1, LimitError),
        (1 << 64, LimitError),
        (-(1 << 70), LimitError),
        (True, TypeError),
        (300.0, TypeError),
        ("300", TypeError),
        (None, TypeError),
    ],
)
def test_bad_max_tx_bytes(check, max_tx: Any, error: type) -> None:
    with pytest.raises(error):
        check([VALID], CHAIN_ID, max_tx)


@pytest.mark.parametrize("max_tx", [schema.ENVELOPE_FIXED_BYTES, schema.TX_MAX_BYTES_LIMIT])
def test_max_tx_bytes_bounds_accepted(twins, max_tx: int) -> None:
    assert_same(twins, [VALID, b""], CHAIN_ID, max_tx)


@pytest.mark.parametrize(
    ("chain_id", "error"),
    [
        (b"", LimitError),
        (b"a" * 51, LimitError),
        (b"Emrchain", LimitError),
        (b"emr chain", LimitError),
        (b"emr\x00", LimitError),
        (b"\xc3\xa9", LimitError),
        ("emrchain-test", TypeError),
        (bytearray(b"emrchain-test"), TypeError),
        (memoryview(b"emrchain-test"), TypeError),
        (None, TypeError),
    ],
)
def test_bad_chain_id(check, chain_id: Any, error: type) -> None:
    with pytest.raises(error):
        check([VALID], chain_id, MAX)


def test_chain_id_bounds_accepted(twins) -> None:
    for chain in (b"a", b"z" * 50, b"az09._-"):
        tx = build_tx(K.ANCHOR_RECORD, chain_id=chain)
        assert assert_same(twins, [tx, VALID], chain, MAX) == bytes([0, Verdict.WRONG_CHAIN])


@pytest.mark.parametrize(
    "item",
    [bytearray(VALID), memoryview(VALID), VALID.hex(), None, 5, [VALID]],
    ids=lambda item: type(item).__name__,
)
def test_non_bytes_item(check, item: Any) -> None:
    with pytest.raises(TypeError):
        check([VALID, item], CHAIN_ID, MAX)


def test_bytes_subclass_item_is_accepted(twins) -> None:
    class Raw(bytes):
        pass

    assert assert_same(twins, [Raw(VALID), Raw(b"")]) == bytes([0, Verdict.TRUNCATED])


@pytest.mark.parametrize(
    "txs",
    [None, 5, (tx for tx in [VALID]), VALID, "abc", {VALID: 1}],
    ids=["none", "int", "generator", "bytes", "str", "dict"],
)
def test_txs_argument_types(twins, txs: Any) -> None:
    compiled, reference = twins
    assert outcome(compiled, txs, CHAIN_ID, MAX) == outcome(reference, txs, CHAIN_ID, MAX)


def test_arguments_are_checked_before_items(check) -> None:
    with pytest.raises(LimitError):
        check([None], b"", MAX)


def test_concurrent_calls(cython_check) -> None:
    """The loop runs without the GIL: concurrent batches must not interfere."""
    txs = [txgen.make_anchor_tx(n) for n in range(200)] + [b"", VALID + b"x"]
    expected = cython_check(txs, CHAIN_ID, MAX)
    results: list[Any] = []

    def work() -> None:
        results.extend(cython_check(txs, CHAIN_ID, MAX) for _ in range(50))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 200 and all(r == expected for r in results)


# --- Strict UTF-8 --------------------------------------------------------------------------

TEXT_TEMPLATE = with_payload(K.REVOKE_MEMBER, {"reason": b""})  # reason: u8 prefix, 0..128


def text_tx(raw: bytes) -> bytes:
    """REVOKE_MEMBER with `raw` as its reason text (signature not recomputed: not checked)."""
    payload = b"\x11" * 32 + bytes([len(raw)]) + raw
    head = TEXT_TEMPLATE[: PAYLOAD_AT - 2] + len(payload).to_bytes(2, "big")
    return head + payload + TEXT_TEMPLATE[-schema.SIGNATURE_BYTES :]


def strict_ok(raw: bytes) -> bool:
    try:
        raw.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return False
    return True


UTF8_CASES = [
    ("ascii", b"plain ascii", True),
    ("empty", b"", True),
    ("nul", b"\x00", True),
    ("nul-inside", b"a\x00b\x00", True),
    ("two-byte-min", b"\xc2\x80", True),
    ("two-byte-max", b"\xdf\xbf", True),
    ("three-byte-min", b"\xe0\xa0\x80", True),
    ("before-surrogates", b"\xed\x9f\xbf", True),
    ("after-surrogates", b"\xee\x80\x80", True),
    ("bom", b"\xef\xbb\xbf", True),
    ("ffff", b"\xef\xbf\xbf", True),
    ("four-byte-min", b"\xf0\x90\x80\x80", True),
    ("emoji", "🩺".encode(), True),
    ("max-code-point", b"\xf4\x8f\xbf\xbf", True),
    ("mixed", "Zoë 診療 🩺".encode(), True),
    ("overlong-nul-c0", b"\xc0\x80", False),
    ("overlong-c1", b"\xc1\xbf", False),
    ("overlong-3", b"\xe0\x80\xaf", False),
    ("overlong-3-max", b"\xe0\x9f\xbf", False),
    ("overlong-4", b"\xf0\x80\x80\xaf", False),
    ("overlong-4-max", b"\xf0\x8f\xbf\xbf", False),
    ("surrogate-low-end", b"\xed\xa0\x80", False),
    ("surrogate-high-end", b"\xed\xbf\xbf", False),
    ("surrogate-pair-cesu", b"\xed\xa0\xbd\xed\xb8\x80", False),
    ("above-10ffff", b"\xf4\x90\x80\x80", False),
    ("f5", b"\xf5\x80\x80\x80", False),
    ("f7", b"\xf7\xbf\xbf\xbf", False),
    ("five-byte", b"\xf8\x88\x80\x80\x80", False),
    ("six-byte", b"\xfc\x84\x80\x80\x80\x80", False),
    ("fe", b"\xfe", False),
    ("ff", b"\xff", False),
    ("lone-continuation", b"\x80", False),
    ("lone-continuation-bf", b"a\xbfb", False),
    ("continuation-after-ascii-run", b"abcdefgh\x80", False),
    ("truncated-2", b"\xc3", False),
    ("truncated-3", b"\xe2\x82", False),
    ("truncated-4", b"\xf0\x9f\xa9", False),
    ("truncated-then-ascii", b"\xe2\x82a", False),
    ("bad-third-byte", b"\xe2\x82\xc0", False),
    ("bad-fourth-byte", b"\xf0\x9f\xa9\x7f", False),
    ("long-ascii-then-bad", b"x" * 100 + b"\xff", False),
]


@pytest.mark.parametrize(
    ("raw", "valid"), [c[1:] for c in UTF8_CASES], ids=[c[0] for c in UTF8_CASES]
)
def test_utf8_edge_cases(check, raw: bytes, valid: bool) -> None:
    assert strict_ok(raw) is valid  # the expectation itself matches Python's strict decoder
    verdicts, _ = check([text_tx(raw)], CHAIN_ID, MAX)
    assert verdicts[0] == (Verdict.OK if valid else Verdict.BAD_TEXT)


TAILS = [b"", b"\x80", b"\xbf", b"\x80\x80", b"\x8f\xbf", b"\x90\x80", b"\xbf\xbf\xbf", b"a"]


@pytest.mark.parametrize("tail", TAILS, ids=lambda t: t.hex() or "none")
def test_utf8_every_two_byte_start(cython_check, tail: bytes) -> None:
    """All 65536 two-byte starts followed by `tail`, against Python's own strict decoder."""
    raws = [bytes([a, b]) + tail for a in range(256) for b in range(256)]
    verdicts, _ = cython_check([text_tx(raw) for raw in raws], CHAIN_ID, MAX)
    expected = bytes(Verdict.OK if strict_ok(raw) else Verdict.BAD_TEXT for raw in raws)
    assert verdicts == expected


UTF8_BYTES = st.sampled_from(
    [
        0x00,
        0x41,
        0x7F,
        0x80,
        0x8F,
        0x90,
        0x9F,
        0xA0,
        0xBF,
        0xC0,
        0xC1,
        0xC2,
        0xDF,
        0xE0,
        0xE1,
        0xEC,
        0xED,
        0xEE,
        0xEF,
        0xF0,
        0xF1,
        0xF3,
        0xF4,
        0xF5,
        0xF7,
        0xF8,
        0xFC,
        0xFE,
        0xFF,
    ]
)
TEXT_BYTES = st.one_of(
    st.lists(UTF8_BYTES, max_size=24).map(bytes),
    st.binary(max_size=128),
    st.text(max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass")[:128]),
)


@DIFF_SETTINGS
@given(raws=st.lists(TEXT_BYTES, max_size=8))
def test_utf8_differential(twins, raws: list[bytes]) -> None:
    verdicts = assert_same(twins, [text_tx(raw) for raw in raws])
    assert verdicts == bytes(Verdict.OK if strict_ok(r) else Verdict.BAD_TEXT for r in raws)


# --- Differential: compiled vs reference ---------------------------------------------------


@DIFF_SETTINGS
@given(txs=st.lists(txgen.valid_transactions(), max_size=6))
def test_valid_transactions(twins, txs: list[bytes]) -> None:
    assert assert_same(twins, txs) == bytes(len(txs))


def loose_value(spec: schema.FieldSpec) -> st.SearchStrategy[Any]:
    """Any value the byte layout can carry, inside or outside the schema's bounds."""
    if spec.type == schema.FIELD_FIXED:
        return st.one_of(st.just(bytes(spec.arg)), st.binary(min_size=spec.arg, max_size=spec.arg))
    if spec.type in (schema.FIELD_UINT, schema.FIELD_ENUM):
        top = (1 << (8 * spec.arg)) - 1
        edges = {0, 1, top, min(spec.minimum, top), min(spec.maximum, top)}
        edges |= {max(spec.minimum - 1, 0), min(spec.maximum + 1, top)}
        return st.one_of(st.sampled_from(sorted(edges)), st.integers(0, top), st.integers(0, 70))
    limit = min((1 << (8 * spec.arg)) - 1, spec.maximum + 2)
    return st.one_of(txgen.field_value(spec), st.binary(max_size=limit), TEXT_BYTES)


@st.composite
def loose_transactions(draw: st.DrawFn) -> bytes:
    """A well-formed envelope whose payload has one to three fields outside the rules' reach."""
    kind = draw(st.sampled_from(txgen.ALL_KINDS))
    fields = schema.PAYLOAD_SCHEMAS[K(kind)]
    loose = draw(st.sets(st.sampled_from(range(len(fields))), min_size=1, max_size=3))
    values = {
        spec.name: draw(loose_value(spec) if index in loose else txgen.field_value(spec))
        for index, spec in enumerate(fields)
    }
    return envelope(kind, txgen.encode_payload(kind, values))


@DIFF_SETTINGS
@given(txs=st.lists(loose_transactions(), min_size=1, max_size=6))
def test_loose_field_values(twins, txs: list[bytes]) -> None:
    assert_same(twins, txs)


@st.composite
def mutated_transactions(draw: st.DrawFn) -> bytes:
    """A valid tx with a few edits: bit flips, cuts, appends, header and length-prefix edits."""
    tx = bytearray(draw(txgen.valid_transactions()))
    kind = tx[HEADER]
    payload_at = txgen.payload_offset(bytes(tx))
    offsets = txgen.field_offsets(kind, bytes(tx[payload_at:-64]))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(
                [
                    "flip",
                    "cut",
                    "append",
                    "version",
                    "chain_len",
                    "chain",
                    "kind",
                    "payload_len",
                    "prefix",
                    "byte",
                    "zero_sender",
                    "resize_payload",
                ]
            )
        )
        if not tx and op != "append":
            continue
        if op == "flip":
            position = draw(st.integers(0, len(tx) - 1))
            tx[position] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del tx[draw(st.integers(0, len(tx) - 1)) :]
        elif op == "append":
            tx += draw(st.binary(min_size=1, max_size=80))
        elif op == "version":
            tx[0] = draw(st.integers(0, 255))
        elif op == "chain_len" and len(tx) > 1:
            tx[1] = draw(st.integers(0, 255))
        elif op == "chain" and len(tx) > HEADER:
            tx[2:HEADER] = draw(st.binary(max_size=60))
        elif op == "kind" and len(tx) > HEADER:
            tx[HEADER] = draw(st.one_of(st.sampled_from(txgen.ALL_KINDS), st.integers(0, 255)))
        elif op == "payload_len" and len(tx) >= payload_at:
            current = int.from_bytes(tx[payload_at - 2 : payload_at], "big")
            near = st.integers(max(current - 3, 0), min(current + 3, 0xFFFF))
            length = draw(st.one_of(near, st.integers(0, 0xFFFF), st.just(0xFFFF)))
            tx[payload_at - 2 : payload_at] = length.to_bytes(2, "big")
        elif op == "prefix":
            varying = [(s, at) for s, at in offsets if s.type in txgen.VAR_TYPES]
            if varying:
                spec, at = draw(st.sampled_from(varying))
                at += payload_at
                top = (1 << (8 * spec.arg)) - 1
                current = int.from_bytes(tx[at : at + spec.arg], "big")
                near = st.integers(max(current - 2, 0), min(current + 2, top))
                value = draw(st.one_of(near, st.integers(0, top)))
                if at + spec.arg <= len(tx):
                    tx[at : at + spec.arg] = value.to_bytes(spec.arg, "big")
        elif op == "zero_sender" and len(tx) >= payload_at:
            tx[HEADER + 1 : HEADER + 33] = ZERO_ID
        elif op == "resize_payload" and len(tx) >= payload_at + 64:
            # Insert or delete payload bytes and keep the envelope consistent.
            end = len(tx) - 64
            at = draw(st.integers(payload_at, end))
            if draw(st.booleans()):
                tx[at:at] = draw(st.binary(min_size=1, max_size=8))
            else:
                del tx[at : at + draw(st.integers(1, 8))]
            length = min(max(len(tx) - 64 - payload_at, 0), 0xFFFF)
            tx[payload_at - 2 : payload_at] = length.to_bytes(2, "big")
        elif op == "byte":
            tx[draw(st.integers(0, len(tx) - 1))] = draw(st.integers(0, 255))
    return bytes(tx)


@DIFF_SETTINGS
@given(txs=st.lists(mutated_transactions(), min_size=1, max_size=6))
def test_mutated_transactions(twins, txs: list[bytes]) -> None:
    assert_same(twins, txs)


@DIFF_SETTINGS
@given(
    txs=st.lists(
        st.one_of(
            st.binary(max_size=400),
            st.binary(max_size=300).map(lambda b: b"\x01" + bytes([len(CHAIN_ID)]) + CHAIN_ID + b),
        ),
        max_size=6,
    ),
    max_tx=st.integers(schema.ENVELOPE_FIXED_BYTES, schema.TX_MAX_BYTES_LIMIT),
)
def test_random_bytes(twins, txs: list[bytes], max_tx: int) -> None:
    assert_same(twins, txs, CHAIN_ID, max_tx)


@DIFF_SETTINGS
@given(
    txs=st.lists(st.one_of(txgen.valid_transactions(), st.binary(max_size=50)), max_size=3),
    chain_id=st.one_of(
        st.just(CHAIN_ID),
        st.binary(min_size=0, max_size=52),
        st.text(txgen.IDENT_CHARS + "A ", min_size=0, max_size=52).map(str.encode),
        st.sampled_from(["emrchain-test", None, bytearray(CHAIN_ID)]),
    ),
    max_tx=st.one_of(
        st.integers(-5, schema.TX_MAX_BYTES_LIMIT + 5),
        st.integers(),
        st.sampled_from([True, False, 1000.0, None, "1000"]),
    ),
    bad_item=st.sampled_from([None, bytearray(b"x"), "x", 0, b"fine"]),
)
def test_arguments_differential(twins, txs, chain_id, max_tx, bad_item) -> None:
    compiled, reference = twins
    batch = [*txs, bad_item]
    assert outcome(compiled, batch, chain_id, max_tx) == outcome(reference, batch, chain_id, max_tx)
