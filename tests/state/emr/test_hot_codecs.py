"""The anchor hot path's codecs and member memo agree with the generic codecs they replace.

`encode_record` and the struct-based `PatientEntry` codec replaced Writer/Reader code on the
ANCHOR_RECORD path (issue #7); the references below are that code, verbatim, so any input on
which the two differ — bytes produced or errors raised — fails here.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrchain.schema import Role
from emrchain.state import StateCorruptionError, keys
from emrchain.state.emr import memo as memo_module
from emrchain.state.emr import tables
from emrchain.state.emr.entities import NO_KEY, Member, MemberStatus, PatientEntry
from emrchain.state.emr.records import EmrRecord, encode_record
from emrchain.types.codec import DecodeError, EncodeError, Reader, Writer
from tests.state.emr.world import HOSPITAL_A, digest

U64 = st.integers(0, (1 << 64) - 1)
KEY = st.binary(min_size=32, max_size=32)
IDENT = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=64)


def reference_record_encoding(record: EmrRecord) -> bytes:
    """`EmrRecord.encode` as it was (Writer), before `encode_record`."""
    writer = Writer().fixed(record.patient_id, 32).fixed(record.ciphertext_sha256, 32)
    writer.var_bytes(record.cid, 1).u8(record.record_type).u64(record.size_bytes)
    writer.fixed(record.author, 32).var_bytes(record.author_organization.encode("ascii"), 1)
    writer.u64(record.height).u64(record.time_ms).u8(record.erasure_reason)
    writer.fixed(record.erased_by, 32).u64(record.erased_height).u64(record.erased_time_ms)
    return writer.bytes()


def reference_patient_decode(data: bytes) -> PatientEntry:
    reader = Reader(data, "PatientEntry")
    entry = PatientEntry(reader.fixed(32, "member_id"), reader.u32("record_count"))
    reader.finish()
    return entry


records = st.builds(
    EmrRecord,
    record_id=KEY,
    patient_id=KEY,
    ciphertext_sha256=KEY,
    cid=st.binary(max_size=64),
    record_type=st.integers(1, 3),
    size_bytes=U64,
    author=KEY,
    author_organization=IDENT,
    height=U64,
    time_ms=U64,
    erasure_reason=st.integers(0, 3),
    erased_by=KEY,
    erased_height=U64,
    erased_time_ms=U64,
)


@given(records)
def test_encode_record_matches_the_writer_encoding(record: EmrRecord) -> None:
    encoded = record.encode()
    assert encoded == reference_record_encoding(record)
    assert EmrRecord.decode(record.record_id, encoded) == record


@given(
    records,
    st.sampled_from(
        [
            ("patient_id", b"\x01" * 31),
            ("author", b"\x01" * 33),
            ("erased_by", bytearray(32)),
            ("cid", b"\x00" * 256),
            ("cid", "not bytes"),
            ("author_organization", "x" * 256),
            ("record_type", 256),
            ("record_type", -1),
            ("record_type", True),
            ("size_bytes", 1 << 64),
            ("height", -1),
            ("time_ms", 1.0),
            ("erasure_reason", False),
            ("erased_height", True),
            ("erased_time_ms", 1 << 64),
        ]
    ),
)
def test_encode_record_refuses_what_the_writer_refused(
    record: EmrRecord, change: tuple[str, object]
) -> None:
    broken = replace(record, **{change[0]: change[1]})
    with pytest.raises(EncodeError):
        reference_record_encoding(broken)
    with pytest.raises(EncodeError):
        broken.encode()


def test_encode_record_defaults_are_a_live_record() -> None:
    record = EmrRecord(
        digest("r"), digest("p"), digest("c"), b"\x01\x55", 2, 9, digest("a"), HOSPITAL_A, 3, 4
    )
    fields = (
        record.patient_id,
        record.ciphertext_sha256,
        record.cid,
        2,
        9,
        record.author,
        HOSPITAL_A,
        3,
        4,
    )
    assert encode_record(*fields) == reference_record_encoding(record)
    assert record.erased_by == NO_KEY


@given(KEY, st.integers(0, (1 << 32) - 1))
def test_patient_entry_codec_matches_the_generic_one(member_id: bytes, count: int) -> None:
    entry = PatientEntry(member_id, count)
    encoded = entry.encode()
    assert encoded == Writer().fixed(member_id, 32).u32(count).bytes()
    assert PatientEntry.decode(encoded) == reference_patient_decode(encoded) == entry


@given(st.binary(max_size=40).filter(lambda data: len(data) != 36))
def test_malformed_patient_entries_fail_as_before(data: bytes) -> None:
    with pytest.raises(DecodeError) as generic:
        reference_patient_decode(data)
    with pytest.raises(DecodeError) as fast:
        PatientEntry.decode(data)
    assert str(fast.value) == str(generic.value)


@pytest.mark.parametrize(
    "entry",
    [PatientEntry(b"\x01" * 31, 0), PatientEntry(digest("m"), 1 << 32), PatientEntry(NO_KEY, True)],
)
def test_patient_entry_encode_refuses_what_the_writer_refused(entry: PatientEntry) -> None:
    with pytest.raises(EncodeError):
        entry.encode()


class DictView:
    """Committed state as a plain dict the test rewrites (a block applied or rolled back)."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.values.get(key)


def _member(member_id: bytes, **changes: object) -> Member:
    member = Member(
        member_id,
        HOSPITAL_A,
        Role.CLINICIAN,
        NO_KEY,
        member_id,
        digest("e"),
        MemberStatus.ACTIVE,
        1,
        NO_KEY,
        1,
    )
    return replace(member, **changes)


def test_member_memo_follows_the_stored_bytes() -> None:
    state = DictView()
    member_id = digest("memo/member")
    key = keys.member_key(member_id)
    first = _member(member_id)
    state.values[key] = first.encode()
    assert tables.read_member(state, member_id) is tables.read_member(state, member_id)
    assert tables.read_member(state, member_id) == first
    # A changed entry (revoked) has other bytes: decoded anew, never the old member.
    revoked = _member(member_id, status=MemberStatus.REVOKED, revoked_by=digest("admin"))
    state.values[key] = revoked.encode()
    assert tables.read_member(state, member_id) == revoked
    # Rolled back to the first bytes (an aborted block): the first member again.
    state.values[key] = first.encode()
    assert tables.read_member(state, member_id) == first


def test_member_memo_checks_the_member_id() -> None:
    """Byte-identical entries of two members (impossible in valid state) still decode apart."""
    state = DictView()
    one, two = digest("memo/one"), digest("memo/two")
    shared = _member(one, current_key=digest("memo/key")).encode()
    state.values[keys.member_key(one)] = shared
    state.values[keys.member_key(two)] = shared
    assert tables.read_member(state, one).member_id == one
    assert tables.read_member(state, two).member_id == two


def test_undecodable_member_is_corruption_and_not_remembered() -> None:
    state = DictView()
    member_id = digest("memo/corrupt")
    state.values[keys.member_key(member_id)] = b"\x00"
    for _ in range(2):
        with pytest.raises(StateCorruptionError):
            tables.read_member(state, member_id)


def test_memo_is_bounded() -> None:
    memo: memo_module.DecodedMemo[int] = memo_module.DecodedMemo(3)
    for value in range(3):
        memo.put(bytes([value]), value)
    assert len(memo) == 3 and memo.get(b"\x01") == 1
    memo.put(b"\x09", 9)
    assert len(memo) == 1 and memo.get(b"\x01") is None and memo.get(b"\x09") == 9
    with pytest.raises(ValueError):
        memo_module.DecodedMemo(0)
