"""ANCHOR_RECORD's layout is declared once (`emrchain.schema.anchor`): the general rule's stored
forms are built from it, and `emrchain._core` loads an accept-path twin only if the constants it
was built with (`LAYOUT`) are the declared ones. These tests hold each piece to the declaration
and show that one constant changed in one place is refused (`scripts/test` then fails: it
requires the compiled core to have loaded)."""

from __future__ import annotations

import struct

import pytest

from emrchain.schema import anchor
from emrchain.state.emr.entities import PatientEntry
from emrchain.state.emr.records import EmrRecord, encode_record
from tests.core.conftest import import_twin_module

RECORD_ID = b"\x70" * 32
CID = b"\x01\x70" + b"c" * 34
ORGANIZATION = "hospital-a"


@pytest.mark.parametrize(
    ("module", "compiled"),
    [("emrchain._core._anchors", True), ("emrchain._core.reference.anchors", False)],
)
def test_each_twin_was_built_with_the_declared_layout(module: str, compiled: bool) -> None:
    twin = import_twin_module(module, compiled=compiled)
    assert twin.LAYOUT == anchor.ACCEPT_PATH_LAYOUT
    anchor.check_layout(module, twin.LAYOUT)  # what the package's import runs


@pytest.mark.parametrize("name", sorted(anchor.ACCEPT_PATH_LAYOUT))
def test_one_changed_constant_is_refused_at_import(name: str) -> None:
    layout = dict(anchor.ACCEPT_PATH_LAYOUT)
    value = layout[name]
    layout[name] = value + b"x" if isinstance(value, bytes) else value + 1
    with pytest.raises(ImportError, match=f"{name}: built {layout[name]!r}, declared"):
        anchor.check_layout("emrchain._core._anchors", layout)


def test_a_missing_or_unknown_constant_is_refused_at_import() -> None:
    missing = dict(anchor.ACCEPT_PATH_LAYOUT)
    del missing["ERASURE"]
    with pytest.raises(ImportError, match="ERASURE: built None"):
        anchor.check_layout("emrchain._core._anchors", missing)
    with pytest.raises(ImportError, match="EXTRA: built 1, declared None"):
        anchor.check_layout("emrchain._core._anchors", {**anchor.ACCEPT_PATH_LAYOUT, "EXTRA": 1})


def test_the_declaration_is_the_specified_layout() -> None:
    """`docs/spec/state.md` §3.1 and `docs/spec/encoding.md` §4 in numbers: a change to the
    declaration alone fails here (and in the golden app hashes)."""
    assert anchor.struct_sections(anchor.EMR_RECORD) == (">32s32sB", ">BQ32sB", ">QQB32sQQ")
    assert anchor.struct_sections(anchor.PATIENT_ENTRY) == (">32sI",)
    assert {
        name: anchor.ACCEPT_PATH_LAYOUT[name]
        for name in ("ENTRY", "FIXED", "CID_LENGTH_AT", "PAYLOAD_AFTER_KIND", "ERASURE")
    } == {"ENTRY": 36, "FIXED": 106, "CID_LENGTH_AT": 96, "PAYLOAD_AFTER_KIND": 43, "ERASURE": 49}


def test_the_stored_record_is_the_declared_layout() -> None:
    """Walk `EMR_RECORD` over what the general rule writes: every field where it is declared."""
    values = {
        "patient_id": b"\x60" * 32,
        "ciphertext_sha256": b"\xcc" * 32,
        "cid": CID,
        "record_type": 2,
        "size_bytes": 4096,
        "author": b"\x01" * 32,
        "author_organization": ORGANIZATION,
        "height": 7,
        "time_ms": 1_700_000_000_000,
        "erasure_reason": anchor.NOT_ERASED,
        "erased_by": bytes(32),
        "erased_height": 0,
        "erased_time_ms": 0,
    }
    encoded = encode_record(*values.values())
    position = 0
    for field in anchor.EMR_RECORD:
        if field.kind == anchor.VARIABLE:
            length = encoded[position]
            content = encoded[position + 1 : position + 1 + length]
            expected = values[field.name]
            assert content == (expected.encode() if isinstance(expected, str) else expected)
            position += 1 + length
            continue
        raw = encoded[position : position + field.size]
        value = raw if field.kind == anchor.FIXED else int.from_bytes(raw, "big")
        assert value == values[field.name], field.name
        position += field.size
    assert position == len(encoded)
    assert EmrRecord.decode(RECORD_ID, encoded).encode() == encoded


def test_the_patient_entry_is_the_declared_layout() -> None:
    entry = PatientEntry(b"\x02" * 32, 5).encode()
    assert len(entry) == anchor.PATIENT_ENTRY_BYTES
    count_end = anchor.PATIENT_COUNT_OFFSET + anchor.PATIENT_COUNT_BYTES
    assert struct.unpack(">I", entry[anchor.PATIENT_COUNT_OFFSET : count_end]) == (5,)


def test_the_message_names_the_record_id_prefix() -> None:
    assert anchor.anchored_message(RECORD_ID) == "record 7070707070707070 anchored"
