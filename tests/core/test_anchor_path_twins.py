"""`AnchorPath`: the compiled twin (`_core/_anchors.pyx`) and the pure one
(`_core/reference/anchors.py`) take the same transactions, hand the same ones to `deliver`, ask
`author_of` about the same senders, write the same bytes in the same order, and raise the same
errors. That each twin agrees with the general ANCHOR_RECORD rule is tested at the application
level in `tests/state/emr/test_anchor_path.py`.

The inputs here are raw and adversarial: committed and pending entries in odd forms (deleted,
wrong lengths, record counts at the limit), nonces around the next one and at 2^64-1,
transactions of other kinds, truncated or inconsistent layouts, custody lists naming the
author's organisation, another one, two, or with a count, length or digest off, blocks with and
without `sole_custodian` (k = 1), items that are not bytes, and an overlay cap that is reached
mid-block.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain._core.reference import anchors as pure
from tests.core.conftest import import_twin_module

ANCHOR_KIND = 5
NONCE, RECORD, PATIENT, CUSTODY, INDEX = b"\x10", b"\x30", b"\x25", b"\x31", b"\x33"
MAX_RECORDS = 5
CHAIN = b"emrchain-test"
NONCE_END = 2 + len(CHAIN) + 1 + 32 + 8
SENDERS = [bytes([0x50 + index]) * 32 for index in range(4)]
PATIENTS = [bytes([0x60 + index]) * 32 for index in range(3)]
RECORDS = [bytes([0x70 + index]) * 32 for index in range(6)]
AUTHORS: dict[bytes, Any] = {
    SENDERS[0]: (b"\x01" * 32, b"hospital-a"),
    SENDERS[1]: (b"\x02" * 32, b"h" * 64),
    SENDERS[2]: None,  # not a member, or not allowed to anchor
    SENDERS[3]: "raise",  # the rules find the state corrupt
}


class Result(NamedTuple):
    code: int
    message: str


class CorruptStateError(Exception):
    pass


def sole_custody(organization: bytes) -> bytes:
    """A custody list naming `organization` alone, with its wrap digest."""
    return b"\x01" + bytes((len(organization),)) + organization + b"\xdd" * 32


PATIENT_WRAP = b"\xee" * 32


def anchor_bytes(
    sender: bytes,
    nonce: int,
    record: bytes,
    patient: bytes,
    cid: bytes,
    kind: int = ANCHOR_KIND,
    custody: bytes = sole_custody(b"hospital-a"),
) -> bytes:
    payload = record + patient + b"\xcc" * 32 + bytes((len(cid),)) + cid + b"\x02"
    payload += struct.pack(">Q", 4096) + PATIENT_WRAP + struct.pack(">H", len(custody)) + custody
    return (
        bytes((1, len(CHAIN)))
        + CHAIN
        + bytes((kind,))
        + sender
        + struct.pack(">QH", nonce, len(payload))
        + payload
        + b"\x5a" * 64
    )


CIDS = [b"\x01\x70" + b"c" * 34, b"ab", b"z" * 64]
CUSTODIES = [
    sole_custody(b"hospital-a"),  # SENDERS[0]'s organisation
    sole_custody(b"h" * 64),  # SENDERS[1]'s
    sole_custody(b"hospital-b"),
    sole_custody(b"hospital-a") + b"\x00",  # one byte too many
    sole_custody(b"hospital-a")[:-1],  # digest one byte short
    b"\x02" + sole_custody(b"hospital-a")[1:],  # count off
    b"\x01\x09" + sole_custody(b"hospital-a")[2:],  # organisation length off
    b"\x02" + sole_custody(b"hospital-a")[1:] + sole_custody(b"h" * 64)[1:],  # two entries
    b"",
]


def _mangle(raw: bytes, how: int) -> Any:
    if how == 0:
        return raw[: len(raw) // 2]  # truncated
    if how == 1:
        return raw[:-1]  # payload length no longer adds up
    if how == 2:
        cid_at = 2 + len(CHAIN) + 43 + 96
        return raw[:cid_at] + bytes((raw[cid_at] + 1,)) + raw[cid_at + 1 :]  # cid length off
    if how == 5:
        return bytearray(raw)  # not bytes
    if how == 3:
        return raw[:1]
    kind_at = 2 + len(CHAIN)
    return raw[:kind_at] + b"\x06" + raw[kind_at + 1 :]  # another kind


@st.composite
def transaction_lists(draw: st.DrawFn) -> list[Any]:
    """Anchors whose nonces mostly follow on per sender (from 1; committed nonces are mostly
    absent), with gaps, used ones, 0 and 2^64-1 among them, and some mangled or other kinds."""
    next_nonce = dict.fromkeys(SENDERS, 1)
    txs: list[Any] = []
    for _ in range(draw(st.integers(0, 40))):
        # Mostly the two authors; the non-author and the corrupt one now and then.
        sender = SENDERS[draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2]))] if draw(
            st.integers(0, 63)
        ) else SENDERS[3]
        mangle = draw(st.integers(0, 7)) == 0
        step = draw(st.sampled_from(["next"] * 12 + ["gap", "used", "zero", "max"]))
        nonce = {
            "next": next_nonce[sender],
            "gap": next_nonce[sender] + 1,
            "used": next_nonce[sender] - 1,
            "zero": 0,
            "max": (1 << 64) - 1,
        }[step]
        if step == "next" and not mangle:  # a mangled one does not consume its nonce
            next_nonce[sender] += 1
        own = sole_custody(b"h" * 64 if sender == SENDERS[1] else b"hospital-a")
        raw = anchor_bytes(
            sender,
            nonce,
            draw(st.sampled_from(RECORDS)),
            draw(st.sampled_from(PATIENTS)),
            draw(st.sampled_from(CIDS)),
            custody=own if draw(st.integers(0, 3)) else draw(st.sampled_from(CUSTODIES)),
        )
        if mangle:
            raw = _mangle(raw, draw(st.integers(0, 5)))
        txs.append(raw)
    return txs


def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A strategy picking among `choices` by weight (one_of does not weight)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda index: table[index])


nonce_values = _weighted(
    (8, st.none()),
    (2, st.just(struct.pack(">Q", 1))),
    (1, st.just(struct.pack(">Q", (1 << 64) - 1))),
    (1, st.binary(max_size=9)),
)
patient_entries = _weighted(
    (
        10,
        st.sampled_from([MAX_RECORDS - 2, MAX_RECORDS - 1, MAX_RECORDS, 0, 1, 2]).map(
            lambda count: b"\x0b" * 32 + struct.pack(">I", count)
        ),
    ),
    (1, st.none()),
    (1, st.binary(min_size=35, max_size=37)),
)
record_values = _weighted((4, st.none()), (1, st.binary(max_size=3)))


def _entries(prefix: bytes, identifiers: list[bytes], values: st.SearchStrategy) -> Any:
    return st.fixed_dictionaries({prefix + key: values for key in identifiers})


def _well_formed_anchor(raw: Any) -> bool:
    if type(raw) is not bytes or len(raw) < NONCE_END + 2 or raw[NONCE_END - 41] != ANCHOR_KIND:
        return False
    payload_length = int.from_bytes(raw[NONCE_END : NONCE_END + 2], "big")
    if len(raw) != NONCE_END + 2 + payload_length + 64 or payload_length < 106:
        return False
    custody_at = NONCE_END + 2 + 106 + raw[NONCE_END + 2 + 96] + 32 + 2
    if custody_at > NONCE_END + 2 + payload_length:
        return False
    custody_length = int.from_bytes(raw[custody_at - 2 : custody_at], "big")
    return custody_at + custody_length == NONCE_END + 2 + payload_length


class Scenario(NamedTuple):
    txs: list[Any]
    eligible: bytes
    committed: dict[bytes, bytes]
    pending: dict[bytes, bytes | None]
    cap_slack: int
    sole_custodian: bool


def _merge(*parts: dict[bytes, Any]) -> dict[bytes, Any]:
    return {key: value for part in parts for key, value in part.items()}


scenarios = st.builds(
    Scenario,
    transaction_lists(),
    st.binary(max_size=40).map(lambda flags: bytes(min(byte & 7, 1) for byte in flags)),
    st.builds(
        _merge,
        _entries(NONCE, SENDERS, nonce_values),
        _entries(RECORD, RECORDS, record_values),
        _entries(PATIENT, PATIENTS, patient_entries),
    ).map(lambda entries: {key: value for key, value in entries.items() if value is not None}),
    st.builds(
        _merge,
        st.dictionaries(
            st.sampled_from(SENDERS).map(lambda key: NONCE + key), nonce_values, max_size=2
        ),
        st.dictionaries(
            st.sampled_from(RECORDS).map(lambda key: RECORD + key), record_values, max_size=2
        ),
        st.dictionaries(
            st.sampled_from(PATIENTS).map(lambda key: PATIENT + key), patient_entries, max_size=2
        ),
    ),
    st.one_of(st.integers(0, 12), st.just(1000)),
    st.sampled_from([True, True, True, False]),
)


@pytest.fixture(scope="module")
def compiled_class() -> Any:
    return import_twin_module("emrchain._core._anchors", compiled=True).AnchorPath


def run(path_class: Any, scenario: Scenario) -> tuple[Any, ...]:
    """Everything observable of one `deliver_block` call: its return value or exception, the
    pending writes in order, the results, and every call it made back."""
    path = path_class(ANCHOR_KIND, NONCE, RECORD, PATIENT, CUSTODY, INDEX, MAX_RECORDS, Result)
    txs = scenario.txs
    eligible = (scenario.eligible + b"\x01" * len(txs))[: len(txs)]
    pending = dict(scenario.pending)
    results: list[Any] = [None] * len(txs)
    calls: list[tuple[str, Any]] = []

    def read(key: bytes) -> bytes | None:
        calls.append(("read", key))
        return scenario.committed.get(key)

    def author_of(sender: bytes) -> Any:
        calls.append(("author_of", sender))
        author = AUTHORS[sender]
        if author == "raise":
            raise CorruptStateError("a member key index entry names no member")
        return author

    def deliver(index: int) -> None:
        calls.append(("deliver", index))
        # As the general way does: a well-formed transaction with the next nonce consumes it
        # (whatever the rule says), so later nonces follow on; and it writes (here one key of
        # its own), so the cap and later reads see that.
        raw = txs[index]
        if _well_formed_anchor(raw):
            key = NONCE + raw[NONCE_END - 40 : NONCE_END - 8]
            stored = pending[key] if key in pending else scenario.committed.get(key)
            last = 0 if stored is None else int.from_bytes(stored, "big")
            nonce = int.from_bytes(raw[NONCE_END - 8 : NONCE_END], "big")
            if (stored is None or len(stored) == 8) and nonce == last + 1:
                pending[key] = nonce.to_bytes(8, "big")
        pending[b"\x99" + index.to_bytes(4, "big")] = b"general"
        results[index] = Result(99, "general")

    try:
        outcome: Any = path.deliver_block(
            txs,
            eligible,
            pending,
            len(pending) + scenario.cap_slack,
            read,
            author_of,
            deliver,
            results,
            123,
            1_700_000_000_000,
            scenario.sole_custodian,
        )
    except Exception as error:
        outcome = (type(error), str(error))
    return outcome, list(pending.items()), results, calls


@settings(max_examples=400, deadline=None)
@given(scenario=scenarios)
def test_twins_agree_on_everything_observable(compiled_class: Any, scenario: Scenario) -> None:
    assert run(compiled_class, scenario) == run(pure.AnchorPath, scenario)


def test_the_accept_path_is_taken_and_writes_what_the_rule_writes(compiled_class: Any) -> None:
    """A plain case, spelled out: the record, its custody, the patient's record index entry
    (sequence = the record count before), the patient entry and the nonce, in that order
    (`encode_record`, `RecordCustody.encode` and `PatientEntry.pack` give these bytes:
    tests/state/emr compares them through the application)."""
    patient_entry = b"\x0b" * 32 + struct.pack(">I", 1)
    cid = b"\x01\x70" + b"c" * 34
    raw = anchor_bytes(SENDERS[0], 1, RECORDS[0], PATIENTS[0], cid)
    scenario = Scenario([raw], b"\x01", {PATIENT + PATIENTS[0]: patient_entry}, {}, 5, True)
    for path_class in (compiled_class, pure.AnchorPath):
        outcome, writes, results, calls = run(path_class, scenario)
        assert outcome == 1
        assert [key for key, _ in writes] == [
            RECORD + RECORDS[0],
            CUSTODY + RECORDS[0],
            INDEX + PATIENTS[0] + struct.pack(">I", 1),
            PATIENT + PATIENTS[0],
            NONCE + SENDERS[0],
        ]
        assert dict(writes)[CUSTODY + RECORDS[0]] == PATIENT_WRAP + sole_custody(b"hospital-a")
        record = dict(writes)[RECORD + RECORDS[0]]
        assert record == (
            PATIENTS[0]
            + b"\xcc" * 32
            + bytes((len(cid),))
            + cid
            + b"\x02"
            + struct.pack(">Q", 4096)
            + b"\x01" * 32
            + bytes((len(b"hospital-a"),))
            + b"hospital-a"
            + struct.pack(">QQ", 123, 1_700_000_000_000)
            + bytes(49)
        )
        assert dict(writes)[INDEX + PATIENTS[0] + struct.pack(">I", 1)] == RECORDS[0]
        assert dict(writes)[PATIENT + PATIENTS[0]] == b"\x0b" * 32 + struct.pack(">I", 2)
        assert dict(writes)[NONCE + SENDERS[0]] == struct.pack(">Q", 1)
        assert results == [Result(0, f"record {RECORDS[0][:8].hex()} anchored")]
        assert ("deliver", 0) not in calls


@pytest.mark.parametrize(
    "custody, sole_custodian",
    [
        (sole_custody(b"hospital-a"), False),  # k above 1: the set is more than the author
        (sole_custody(b"hospital-b"), True),  # another organisation
        (sole_custody(b"hospital-a") + sole_custody(b"hospital-b")[1:], True),
        (b"\x02" + sole_custody(b"hospital-a")[1:] + sole_custody(b"hospital-b")[1:], True),
    ],
)
def test_anything_but_the_authors_organisation_alone_goes_the_general_way(
    compiled_class: Any, custody: bytes, sole_custodian: bool
) -> None:
    patient_entry = b"\x0b" * 32 + struct.pack(">I", 1)
    raw = anchor_bytes(SENDERS[0], 1, RECORDS[0], PATIENTS[0], b"ab", custody=custody)
    committed = {PATIENT + PATIENTS[0]: patient_entry}
    scenario = Scenario([raw], b"\x01", committed, {}, 4, sole_custodian)
    for path_class in (compiled_class, pure.AnchorPath):
        outcome, writes, results, calls = run(path_class, scenario)
        assert outcome == 0
        assert ("deliver", 0) in calls
        assert results == [Result(99, "general")]
        assert [key for key, _ in writes] == [NONCE + SENDERS[0], b"\x99" + bytes(4)]


def test_a_full_overlay_sends_the_transaction_the_general_way(compiled_class: Any) -> None:
    patient_entry = b"\x0b" * 32 + struct.pack(">I", 1)
    raw = anchor_bytes(SENDERS[0], 1, RECORDS[0], PATIENTS[0], b"ab")
    for slack, delivered in ((4, True), (5, False)):
        committed = {PATIENT + PATIENTS[0]: patient_entry}
        scenario = Scenario([raw], b"\x01", committed, {}, slack, True)
        for path_class in (compiled_class, pure.AnchorPath):
            outcome, _, _, calls = run(path_class, scenario)
            assert (("deliver", 0) in calls) == delivered
            assert outcome == (0 if delivered else 1)


@pytest.mark.parametrize(
    "arguments, error",
    [
        ((256, NONCE, RECORD, PATIENT, CUSTODY, INDEX, 5), "anchor_kind"),
        ((5, b"", RECORD, PATIENT, CUSTODY, INDEX, 5), "nonce_prefix"),
        ((5, NONCE, b"\x30\x31", PATIENT, CUSTODY, INDEX, 5), "record_prefix"),
        ((5, NONCE, RECORD, "%", CUSTODY, INDEX, 5), "patient_prefix"),
        ((5, NONCE, RECORD, PATIENT, None, INDEX, 5), "custody_prefix"),
        ((5, NONCE, RECORD, PATIENT, CUSTODY, b"", 5), "index_prefix"),
        ((5, NONCE, NONCE, PATIENT, CUSTODY, INDEX, 5), "differ"),
        ((5, NONCE, RECORD, PATIENT, RECORD, INDEX, 5), "differ"),
        ((5, NONCE, RECORD, PATIENT, CUSTODY, PATIENT, 5), "differ"),
        ((5, NONCE, RECORD, PATIENT, CUSTODY, INDEX, 0), "max_records_per_patient"),
        ((5, NONCE, RECORD, PATIENT, CUSTODY, INDEX, True), "max_records_per_patient"),
    ],
)
def test_twins_refuse_the_same_constructor_arguments(
    compiled_class: Any, arguments: tuple[Any, ...], error: str
) -> None:
    for path_class in (compiled_class, pure.AnchorPath):
        with pytest.raises(ValueError, match=error):
            path_class(*arguments, Result)


@pytest.mark.parametrize(
    "change, error_type, error",
    [
        ({"txs": iter([])}, TypeError, "txs"),
        ({"pending": []}, TypeError, "pending"),
        ({"eligible": b""}, ValueError, "eligible"),
        ({"eligible": bytearray(b"\x01")}, ValueError, "eligible"),
        ({"results": []}, ValueError, "results"),
        ({"results": (None,)}, ValueError, "results"),
        ({"max_pending_writes": -1}, ValueError, "max_pending_writes"),
        ({"height": 1 << 63}, ValueError, "height"),
        ({"time_ms": 1.5}, ValueError, "time_ms"),
        ({"sole_custodian": 1}, TypeError, "sole_custodian"),
    ],
)
def test_twins_refuse_the_same_block_arguments(
    compiled_class: Any, change: dict[str, Any], error_type: type, error: str
) -> None:
    raw = anchor_bytes(SENDERS[0], 1, RECORDS[0], PATIENTS[0], b"ab")
    for path_class in (compiled_class, pure.AnchorPath):
        arguments: dict[str, Any] = {
            "txs": [raw],
            "eligible": b"\x01",
            "pending": {},
            "max_pending_writes": 10,
            "read": lambda key: None,
            "author_of": lambda sender: None,
            "deliver": lambda index: None,
            "results": [None],
            "height": 1,
            "time_ms": 1,
            "sole_custodian": True,
        }
        arguments.update(change)
        path = path_class(ANCHOR_KIND, NONCE, RECORD, PATIENT, CUSTODY, INDEX, MAX_RECORDS, Result)
        with pytest.raises(error_type, match=error):
            path.deliver_block(**arguments)


@pytest.mark.parametrize(
    "author", [(b"\x01" * 31, b"x"), (b"\x01" * 32, "x"), [b"\x01" * 32, b"x"], (b"\x01" * 32,)]
)
def test_twins_refuse_a_malformed_author(compiled_class: Any, author: Any) -> None:
    patient_entry = b"\x0b" * 32 + struct.pack(">I", 1)
    raw = anchor_bytes(SENDERS[0], 1, RECORDS[0], PATIENTS[0], b"ab")
    for path_class in (compiled_class, pure.AnchorPath):
        path = path_class(ANCHOR_KIND, NONCE, RECORD, PATIENT, CUSTODY, INDEX, MAX_RECORDS, Result)
        pending: dict[bytes, bytes | None] = {PATIENT + PATIENTS[0]: patient_entry}
        with pytest.raises(ValueError, match="author_of"):
            path.deliver_block(
                [raw], b"\x01", pending, 10, lambda key: None, lambda sender: author,
                lambda index: None, [None], 1, 1, True,
            )
        assert pending == {PATIENT + PATIENTS[0]: patient_entry}  # nothing written
