"""The compiled ANCHOR_RECORD accept path changes nothing a chain can see.

`EmrApplication` with the path (as the node runs it) and without it (every transaction through
the general pipeline and `clinical.anchor_record`) must give the same writes, app hash, results
and validator updates for every block, and raise the same error where the general rule raises.
Blocks here are generated: anchors by every kind of sender (clinicians, an admin, a patient,
an auditor, a stranger), for registered, unknown and limit-reached patients, new and already
anchored records, duplicates within the block, nonces next, reused, skipped and 0, bad
signatures and garbage — interleaved with revocations, key rotations and registrations that
change who may anchor in the middle of the block; custody lists naming another organisation or
two; a genesis with k = 3, where the path takes nothing. The twins' agreement with each other is
`tests/core/test_anchor_path_twins.py`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.crypto.keys import Ed25519Signer
from emrchain.schema import Role, TxKind
from emrchain.state import keys
from emrchain.state.codes import ResultCode
from emrchain.state.emr import EmrApplication
from emrchain.state.emr.limits import MAX_RECORDS_PER_PATIENT
from emrchain.state.result import ExecutionResult
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import StateView
from emrchain.types import Block
from tests.state.chain import CHAIN_ID, signed_tx, signer
from tests.state.emr.world import (
    A_ADMIN,
    A_AUDITOR,
    A_CLINICIAN,
    A_COLLEAGUE,
    A_NURSE,
    B_CLINICIAN,
    HOSPITAL_A,
    HOSPITAL_B,
    OTHER_PATIENT_ID,
    PATIENT,
    PATIENT_ID,
    RECORD,
    STRANGER,
    Actor,
    World,
    actor,
    anchor_fields,
    digest,
    member_fields,
)

ANCHOR = TxKind.ANCHOR_RECORD
NURSE_ROTATED = signer("anchor-path/nurse-rotated")
LATE = actor("anchor-path/late-clinician")
ANCHORING = [A_CLINICIAN, A_COLLEAGUE, A_NURSE, A_ADMIN, B_CLINICIAN, PATIENT, A_AUDITOR, STRANGER]
PATIENT_IDS = [PATIENT_ID, OTHER_PATIENT_ID, digest("anchor-path/nobody")]
RECORD_IDS = [RECORD, *(digest(f"anchor-path/record/{index}") for index in range(5))]


@cache
def world() -> World:
    """Registered members and two anchored records, committed; never changed by the tests
    (blocks are executed on its state, not committed)."""
    return World()


def _key(sender: Actor | Ed25519Signer) -> Ed25519Signer:
    return sender.key if isinstance(sender, Actor) else sender


class BlockWriter:
    """Signed transactions with nonces that follow each sender's committed one unless told
    otherwise."""

    def __init__(self, base: World) -> None:
        self.world = base
        self.next: dict[bytes, int] = {}
        self.txs: list[bytes] = []

    def add(
        self, sender: Actor | Ed25519Signer, kind: TxKind, fields: dict[str, Any], nonce: str
    ) -> None:
        key = _key(sender)
        following = self.next.get(key.public_key, self.world.nonces.get(key.public_key, 0) + 1)
        value = {"next": following, "used": following - 1, "gap": following + 1, "zero": 0}[
            nonce
        ]
        if nonce == "next":
            self.next[key.public_key] = following + 1
        self.txs.append(signed_tx(key, kind, value, fields))

    def add_raw(self, raw: bytes) -> None:
        self.txs.append(raw)


def execute_both(
    block: Block, view: StateView, base: World | None = None
) -> tuple[Any, Any, int]:
    """(outcome with the path, outcome without, accept path hits); an outcome is the
    ExecutionResult or the (type, message) of the error raised."""
    outcomes = []
    hits = 0
    committed = (base or world()).state
    for anchor_path in (True, False):
        application = EmrApplication(CHAIN_ID, committed, anchor_path=anchor_path)
        try:
            outcome: Any = application.execute_block(block, view)
        except Exception as error:
            outcome = (type(error), str(error))
        outcomes.append(outcome)
        if anchor_path:
            hits = application.accept_path_hits
    return outcomes[0], outcomes[1], hits


def assert_same(with_path: Any, without_path: Any) -> None:
    if isinstance(without_path, ExecutionResult):
        assert isinstance(with_path, ExecutionResult), with_path
        assert with_path.tx_results == without_path.tx_results
        assert with_path.writes == without_path.writes
        assert with_path.app_hash == without_path.app_hash
        assert with_path.validator_updates == without_path.validator_updates
    else:
        assert with_path == without_path


any_anchor = st.tuples(
    st.just("anchor"),
    st.sampled_from(ANCHORING),
    st.sampled_from(RECORD_IDS),
    st.sampled_from(PATIENT_IDS),
    st.sampled_from(["next"] * 8 + ["used", "gap", "zero"]),
    st.sampled_from(["good"] * 12 + ["bad signature", "garbage"]),
)
# Anchors by members whom the changes below concern, for registered patients.
concerned_anchor = st.tuples(
    st.just("anchor"),
    st.sampled_from([A_CLINICIAN, A_COLLEAGUE, A_NURSE, NURSE_ROTATED, LATE]),
    st.sampled_from(RECORD_IDS),
    st.sampled_from(PATIENT_IDS[:2]),
    st.just("next"),
    st.just("good"),
)
# What changes who may anchor, mid-block.
change = st.one_of(
    st.tuples(st.just("revoke"), st.sampled_from([A_COLLEAGUE, A_NURSE])),
    st.tuples(st.just("rotate")),
    st.tuples(st.just("register")),
)
STEP_TABLE = [any_anchor] * 6 + [concerned_anchor] * 3 + [change]
steps = st.integers(0, len(STEP_TABLE) - 1).flatmap(lambda index: STEP_TABLE[index])


def _apply(writer: BlockWriter, step: tuple[Any, ...]) -> None:
    if step[0] == "anchor":
        _, sender, record_id, patient_id, nonce, form = step
        writer.add(sender, ANCHOR, anchor_fields(record_id, patient_id), nonce)
        if form == "bad signature":
            raw = writer.txs.pop()
            writer.add_raw(raw[:-1] + bytes((raw[-1] ^ 1,)))
        elif form == "garbage":
            raw = writer.txs.pop()
            writer.add_raw(raw[: len(raw) // 2])
    elif step[0] == "revoke":
        fields = {"member_key": step[1].public_key, "reason": "x"}
        writer.add(A_ADMIN, TxKind.REVOKE_MEMBER, fields, "next")
    elif step[0] == "rotate":
        fields = writer.world.rotation_fields(A_NURSE, NURSE_ROTATED)
        writer.add(A_NURSE, TxKind.ROTATE_KEY, fields, "next")
    else:
        fields = member_fields("hospital-a", LATE, Role.CLINICIAN)
        writer.add(A_ADMIN, TxKind.REGISTER_MEMBER, fields, "next")


@settings(max_examples=120, deadline=None)
@given(block_steps=st.lists(steps, min_size=1, max_size=40))
def test_blocks_execute_alike_with_and_without_the_accept_path(
    block_steps: list[tuple[Any, ...]],
) -> None:
    writer = BlockWriter(world())
    for step in block_steps:
        _apply(writer, step)
    block = world().chain.propose(writer.txs)
    with_path, without_path, _ = execute_both(block, world().state)
    assert_same(with_path, without_path)


def test_a_typical_block_takes_the_accept_path() -> None:
    """With k = 1 (the default) an anchor's custody list is its author's organisation alone,
    which the path checks on the bytes: the 40 typical anchors take it, the two refusals go the
    general way."""
    writer = BlockWriter(world())
    for index in range(40):
        sender = (A_CLINICIAN, A_COLLEAGUE, A_ADMIN, B_CLINICIAN)[index % 4]
        organization = HOSPITAL_B if sender is B_CLINICIAN else HOSPITAL_A
        fields = anchor_fields(digest(f"typical/{index}"), PATIENT_IDS[index % 2], organization)
        writer.add(sender, ANCHOR, fields, "next")
    writer.add(A_CLINICIAN, ANCHOR, anchor_fields(RECORD), "next")  # already anchored
    writer.add(PATIENT, ANCHOR, anchor_fields(digest("typical/by-patient")), "next")
    block = world().chain.propose(writer.txs)
    with_path, without_path, hits = execute_both(block, world().state)
    assert_same(with_path, without_path)
    assert hits == 40
    assert [result.code for result in with_path.tx_results[:40]] == [0] * 40
    assert [result.code for result in with_path.tx_results[40:]] == [
        ResultCode.DUPLICATE_RECORD,
        ResultCode.ROLE_NOT_PERMITTED,
    ]
    custody = with_path.writes[keys.record_custody_key(digest("typical/3"))]
    assert custody == (
        anchor_fields(digest("typical/3"))["patient_wrap_sha256"]
        + anchor_fields(digest("typical/3"), author_organization=HOSPITAL_B)["custody"]
    )


def test_a_custody_entry_naming_another_organisation_goes_the_general_way() -> None:
    """k = 1 but the one entry names another organisation (or the list names two): not the
    path's case; the general rule refuses both, with or without the path."""
    writer = BlockWriter(world())
    writer.add(A_CLINICIAN, ANCHOR, anchor_fields(digest("other/0")), "next")
    fields = anchor_fields(digest("other/1"), author_organization=HOSPITAL_B)
    writer.add(A_CLINICIAN, ANCHOR, fields, "next")
    fields = anchor_fields(digest("other/2"), custodians=[HOSPITAL_A, HOSPITAL_B])
    writer.add(A_CLINICIAN, ANCHOR, fields, "next")
    writer.add(A_CLINICIAN, ANCHOR, anchor_fields(digest("other/3")), "next")
    block = world().chain.propose(writer.txs)
    with_path, without_path, hits = execute_both(block, world().state)
    assert_same(with_path, without_path)
    assert hits == 2
    assert [result.code for result in with_path.tx_results] == [
        ResultCode.OK,
        ResultCode.CUSTODY_SET_MISMATCH,
        ResultCode.CUSTODY_SET_MISMATCH,
        ResultCode.OK,
    ]
    assert keys.record_custody_key(digest("other/1")) not in with_path.writes


@cache
def world_of_three_custodians() -> World:
    """A world whose genesis sets k = 3 (two organisations: every set is both)."""
    return World(custody_set_size=3)


def test_with_three_custodians_no_anchor_takes_the_accept_path() -> None:
    """k = 3: the policy's set is more than the author, so the path takes nothing; anchors
    naming the policy's set apply, author-only ones are refused, alike either way."""
    base = world_of_three_custodians()
    writer = BlockWriter(base)
    for index in range(20):
        sender = (A_CLINICIAN, B_CLINICIAN)[index % 2]
        organization = HOSPITAL_B if sender is B_CLINICIAN else HOSPITAL_A
        record_id = digest(f"three/{index}")
        if index % 4 < 2:
            fields = base.anchor_fields(record_id, PATIENT_IDS[index % 2], organization)
        else:
            fields = anchor_fields(record_id, PATIENT_IDS[index % 2], organization)
        writer.add(sender, ANCHOR, fields, "next")
    block = base.chain.propose(writer.txs)
    with_path, without_path, hits = execute_both(block, base.state, base)
    assert_same(with_path, without_path)
    assert hits == 0
    assert [result.code for result in with_path.tx_results] == [
        ResultCode.OK if index % 4 < 2 else ResultCode.CUSTODY_SET_MISMATCH for index in range(20)
    ]


class PatchedView:
    """Committed state with some entries replaced (None = absent)."""

    def __init__(self, base: StateView, patches: dict[bytes, bytes | None]) -> None:
        self._base = base
        self._patches = patches

    def get(self, key: bytes) -> bytes | None:
        if key in self._patches:
            return self._patches[key]
        return self._base.get(key)


def _holder(patient_id: bytes) -> bytes:
    entry = world().state.get(keys.patient_key(patient_id))
    assert entry is not None
    return entry[:32]


def _count_entry(patient_id: bytes, count: int) -> bytes:
    return _holder(patient_id) + struct.pack(">I", count)


CLINICIAN_NONCE = keys.nonce_key(A_CLINICIAN.public_key)
PATCHES: dict[str, Callable[[], dict[bytes, bytes | None]]] = {
    "patient one below the record limit": lambda: {
        keys.patient_key(PATIENT_ID): _count_entry(PATIENT_ID, MAX_RECORDS_PER_PATIENT - 1)
    },
    "patient at the record limit": lambda: {
        keys.patient_key(PATIENT_ID): _count_entry(PATIENT_ID, MAX_RECORDS_PER_PATIENT)
    },
    "patient entry of 35 bytes": lambda: {keys.patient_key(PATIENT_ID): bytes(35)},
    "patient entry of 37 bytes": lambda: {keys.patient_key(PATIENT_ID): bytes(37)},
    "nonce entry of 9 bytes": lambda: {CLINICIAN_NONCE: b"\x00" * 8 + b"\x01"},
    "nonce entry of 4 bytes": lambda: {CLINICIAN_NONCE: b"\x00\x00\x00\x01"},
    "nonce at 2^64-1": lambda: {CLINICIAN_NONCE: b"\xff" * 8},
    "member key index entry of 31 bytes": lambda: {
        keys.member_key_index_key(A_CLINICIAN.public_key): bytes(31)
    },
    "member entry missing": lambda: {
        keys.member_key(A_CLINICIAN.public_key): None,
    },
    "member entry undecodable": lambda: {keys.member_key(A_CLINICIAN.public_key): b"\x01"},
    "custody set size of two bytes": lambda: {keys.CUSTODY_SET_SIZE: b"\x01\x01"},
    "custody set size 2": lambda: {keys.CUSTODY_SET_SIZE: b"\x02"},
    "custody set size 1 stored": lambda: {keys.CUSTODY_SET_SIZE: b"\x01"},
    # With k = 1 neither way reads the patient's member (the set is the author alone).
    "patient's member entry missing": lambda: {keys.member_key(PATIENT.public_key): None},
}


@pytest.mark.parametrize("case", sorted(PATCHES))
def test_odd_committed_entries_get_the_general_rules_answer(case: str) -> None:
    """Entries the accept path does not take (it hands the transaction back) or that the
    general rule finds corrupt (both raise the same error)."""
    view = PatchedView(world().state, PATCHES[case]())
    writer = BlockWriter(world())
    nonce = world().nonces.get(A_CLINICIAN.public_key, 0)
    for index in range(3):
        # Nonces from the committed one on, whatever the patched entry says.
        writer.add_raw(
            signed_tx(
                A_CLINICIAN.key, ANCHOR, nonce + 1 + index, anchor_fields(digest(f"odd/{index}"))
            )
        )
    block = world().chain.propose(writer.txs)
    with_path, without_path, _ = execute_both(block, view)
    assert_same(with_path, without_path)
    if case.startswith("member") or "entry of 3" in case or "two bytes" in case:
        assert with_path[0] is StateCorruptionError  # the rule raises; so does the path
    if case == "patient's member entry missing":
        assert [result.code for result in with_path.tx_results] == [ResultCode.OK] * 3
