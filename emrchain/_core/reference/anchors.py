"""Pure-Python twin of `_anchors.pyx`: the accept path of ANCHOR_RECORD on raw transaction bytes.

Why: on a busy chain nearly every transaction is an ANCHOR_RECORD that applies, and running it
through the general pipeline (decode into objects, nonce, sender lookup, the handler, a result)
was about half of the node's event loop (BENCHMARKS.md). This does that one case on the raw
bytes of the block's transactions and the block's pending writes, with no per-transaction
objects.

Layouts: `emrchain/schema/anchor.py` (the stored record and patient entry, the payload offsets,
the message), shared with the general rule and checked against the compiled twin's constants at
import (`emrchain._core`).

Exactness: the rule is `anchor_record` in `emrchain/state/emr/clinical.py`; this path never
decides anything that rule could decide differently. A transaction is taken here only when
the caller says the custody set size k is 1 (`sole_custodian`: the policy's set is then the
author's organisation alone, `docs/spec/records.md` §9) and every check passes — the next
nonce (the stored value absent or 8 bytes), an author the caller's `author_of` vouches for (the
sender is an active member signing with its current key, in a role that may anchor, of an
organisation a custody entry may name), a custody list of exactly one entry naming the
author's organisation with a 32-byte digest, no stored record under the record id, a patient
entry of the normal 36 bytes below the record limit, room in the overlay for its five writes.
Anything else — k above 1, a different kind, any refusal, another custody list, an entry in
another form, bytes whose layout does not add up — is handed to the caller's `deliver(index)`
before anything is written for it, and the caller runs the general pipeline, which gives the
exact result (and raises where it raises). The writes (record, record custody, the patient's
record index entry, patient entry, nonce, in the rule's order) and the result message are byte
for byte those of the general rule (`tests/state/emr/test_anchor_path.py` runs blocks both ways
and compares everything).

Authors are remembered per sender within one `deliver_block` call, and forgotten whenever a
transaction goes the general way: only such a transaction can change a member (the accept path
writes record, record custody, record index, patient and nonce entries only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from emrchain.schema import (
    ENVELOPE_CHAIN_ID_LENGTH_OFFSET,
    ENVELOPE_KIND_OFFSET,
    ENVELOPE_NONCE_OFFSET,
    ENVELOPE_PAYLOAD_OFFSET,
    ENVELOPE_SENDER_OFFSET,
    NONCE_BYTES,
    PAYLOAD_LENGTH_BYTES,
    SIGNATURE_BYTES,
)
from emrchain.schema.anchor import (
    ACCEPT_PATH_LAYOUT,
    CUSTODY_WRAP_BYTES,
    KEY_BYTES,
    PATIENT_COUNT_BYTES,
    PATIENT_COUNT_OFFSET,
    PATIENT_ENTRY_BYTES,
    PAYLOAD_CID_LENGTH_OFFSET,
    PAYLOAD_CUSTODY_LENGTH_BYTES,
    PAYLOAD_FIXED_BYTES,
    PAYLOAD_RECORD_OFFSET,
    PAYLOAD_WRAP_BYTES,
    RECORD_ERASURE_BYTES,
    RECORD_HEIGHT_BYTES,
    RECORD_TIME_BYTES,
    anchored_message,
)

LAYOUT = dict(ACCEPT_PATH_LAYOUT)
"""The constants this twin builds on (`schema.anchor`; the compiled twin exposes its own)."""
_U32_MAX = 0xFFFFFFFF
_ERASURE_FIELDS = bytes(RECORD_ERASURE_BYTES)
"""A live record's erasure reason (0), erased by (zeros), erased height and time (0)."""
_SOLE_ENTRY = 1
"""The custody count of a list naming one organisation."""
_SOLE_ENTRY_FRAMING = 2
"""Its count byte and the organisation id's length byte."""

Author = tuple[bytes, bytes]
"""(member id, organisation id as ASCII bytes) of a sender who may anchor."""


def check_arguments(
    anchor_kind: int,
    nonce_prefix: bytes,
    record_prefix: bytes,
    patient_prefix: bytes,
    custody_prefix: bytes,
    index_prefix: bytes,
    max_records_per_patient: int,
) -> None:
    """The constructor's checks, shared by both twins (same messages, same order)."""
    if type(anchor_kind) is not int or not 0 <= anchor_kind <= 255:
        raise ValueError("anchor_kind must be an int within 0..255")
    for name, prefix in (
        ("nonce_prefix", nonce_prefix),
        ("record_prefix", record_prefix),
        ("patient_prefix", patient_prefix),
        ("custody_prefix", custody_prefix),
        ("index_prefix", index_prefix),
    ):
        if type(prefix) is not bytes or len(prefix) != 1:
            raise ValueError(f"{name} must be one byte")
    if len({nonce_prefix, record_prefix, patient_prefix, custody_prefix, index_prefix}) != 5:
        raise ValueError("the five prefixes must differ")
    if type(max_records_per_patient) is not int or not 1 <= max_records_per_patient <= _U32_MAX:
        raise ValueError("max_records_per_patient must be an int within 1..4294967295")


def check_block_arguments(
    txs: Sequence[bytes],
    pending: dict[bytes, bytes | None],
    eligible: bytes,
    results: list[Any],
    max_pending_writes: int,
    height: int,
    time_ms: int,
    sole_custodian: bool,
) -> None:
    """`deliver_block`'s checks on its arguments, shared by both twins."""
    if type(txs) not in (list, tuple):
        raise TypeError("txs must be a list or tuple of bytes")
    if type(pending) is not dict:
        raise TypeError("pending must be a dict")
    if type(eligible) is not bytes or len(eligible) != len(txs):
        raise ValueError("eligible must be bytes with one byte per transaction")
    if type(results) is not list or len(results) != len(txs):
        raise ValueError("results must be a list with one slot per transaction")
    for name, value in (
        ("max_pending_writes", max_pending_writes),
        ("height", height),
        ("time_ms", time_ms),
    ):
        if type(value) is not int or not 0 <= value < 1 << 63:
            raise ValueError(f"{name} must be an int within 0..2^63-1")
    if type(sole_custodian) is not bool:
        raise TypeError("sole_custodian must be a bool")


def check_author(author: object) -> None:
    """What `author_of` returns for an author, checked by both twins before it is used."""
    if not (
        type(author) is tuple
        and len(author) == 2
        and type(author[0]) is bytes
        and len(author[0]) == KEY_BYTES
        and type(author[1]) is bytes
        and len(author[1]) <= 255
    ):
        raise ValueError(
            "author_of must return None or (32-byte member id, organisation id of at most "
            "255 bytes)"
        )


class AnchorPath:
    """The ANCHOR_RECORD accept path for one application's key layout (see the module)."""

    __slots__ = (
        "_anchor_kind",
        "_custody_prefix",
        "_index_prefix",
        "_max_records",
        "_nonce_prefix",
        "_patient_prefix",
        "_record_prefix",
        "_result_type",
    )

    def __init__(
        self,
        anchor_kind: int,
        nonce_prefix: bytes,
        record_prefix: bytes,
        patient_prefix: bytes,
        custody_prefix: bytes,
        index_prefix: bytes,
        max_records_per_patient: int,
        result_type: Callable[[int, str], Any],
    ) -> None:
        check_arguments(
            anchor_kind,
            nonce_prefix,
            record_prefix,
            patient_prefix,
            custody_prefix,
            index_prefix,
            max_records_per_patient,
        )
        self._anchor_kind = anchor_kind
        self._nonce_prefix = nonce_prefix
        self._record_prefix = record_prefix
        self._patient_prefix = patient_prefix
        self._custody_prefix = custody_prefix
        self._index_prefix = index_prefix
        self._max_records = max_records_per_patient
        self._result_type = result_type

    def deliver_block(
        self,
        txs: Sequence[bytes],
        eligible: bytes,
        pending: dict[bytes, bytes | None],
        max_pending_writes: int,
        read: Callable[[bytes], bytes | None],
        author_of: Callable[[bytes], Author | None],
        deliver: Callable[[int], object],
        results: list[Any],
        height: int,
        time_ms: int,
        sole_custodian: bool,
    ) -> int:
        """Deliver the block's transactions in order; return how many took the accept path.

        `eligible[i]` is 1 for a transaction that passed the stateless checks and whose
        signature verified (the others are skipped: the caller has their results). `pending` is
        the block overlay's writes (None = deleted) over `read`, the committed state.
        `sole_custodian` says that the custody set size k is 1 in the block's state; when it is
        False every eligible transaction goes to `deliver`. For each accepted anchor this writes
        the record, its custody, the patient's record index entry, the patient entry and the
        nonce into `pending` and puts `result_type(0, message)` in `results[i]`; every other
        eligible transaction is passed to `deliver(i)`, which must deliver it the general way.
        The transactions are taken as they were when the call began."""
        check_block_arguments(
            txs, pending, eligible, results, max_pending_writes, height, time_ms, sole_custodian
        )
        authors: dict[bytes, Author] = {}
        accepted = 0
        for index, raw in enumerate(tuple(txs)):  # as it was when the call began
            if not eligible[index]:
                continue
            if sole_custodian and self._accept(
                raw, pending, max_pending_writes, read, author_of, authors, height, time_ms,
                results, index,
            ):
                accepted += 1
            else:
                deliver(index)
                authors.clear()
        return accepted

    def _accept(
        self,
        raw: bytes,
        pending: dict[bytes, bytes | None],
        max_pending_writes: int,
        read: Callable[[bytes], bytes | None],
        author_of: Callable[[bytes], Author | None],
        authors: dict[bytes, Author],
        height: int,
        time_ms: int,
        results: list[Any],
        index: int,
    ) -> bool:
        """Write and record the result of `raw` if the accept path takes it; else change
        nothing and return False."""
        if type(raw) is not bytes or len(raw) <= ENVELOPE_CHAIN_ID_LENGTH_OFFSET:
            return False
        size = len(raw)
        chain_id_length = raw[ENVELOPE_CHAIN_ID_LENGTH_OFFSET]
        kind_at = ENVELOPE_KIND_OFFSET + chain_id_length
        payload_at = ENVELOPE_PAYLOAD_OFFSET + chain_id_length
        if size < payload_at + SIGNATURE_BYTES or raw[kind_at] != self._anchor_kind:
            return False
        payload_length = int.from_bytes(raw[payload_at - PAYLOAD_LENGTH_BYTES : payload_at], "big")
        if payload_at + payload_length + SIGNATURE_BYTES != size:
            return False
        if payload_length < PAYLOAD_FIXED_BYTES:
            return False
        cid_length = raw[payload_at + PAYLOAD_CID_LENGTH_OFFSET]
        head_end = payload_at + PAYLOAD_FIXED_BYTES + cid_length  # then the custody tail
        custody_at = head_end + PAYLOAD_WRAP_BYTES + PAYLOAD_CUSTODY_LENGTH_BYTES
        if custody_at > payload_at + payload_length:
            return False
        custody_length = int.from_bytes(
            raw[custody_at - PAYLOAD_CUSTODY_LENGTH_BYTES : custody_at], "big"
        )
        if custody_at + custody_length != payload_at + payload_length:
            return False
        sender_at = ENVELOPE_SENDER_OFFSET + chain_id_length
        sender = raw[sender_at : sender_at + KEY_BYTES]
        nonce_at = ENVELOPE_NONCE_OFFSET + chain_id_length
        nonce = int.from_bytes(raw[nonce_at : payload_at - PAYLOAD_LENGTH_BYTES], "big")

        nonce_key = self._nonce_prefix + sender
        stored = pending[nonce_key] if nonce_key in pending else read(nonce_key)
        if stored is None:
            last_nonce = 0
        elif type(stored) is bytes and len(stored) == NONCE_BYTES:
            last_nonce = int.from_bytes(stored, "big")
        else:
            return False
        if nonce != last_nonce + 1:
            return False
        author = authors.get(sender)
        if author is None:
            author = author_of(sender)
            if author is None:
                return False
            check_author(author)
            authors[sender] = author
        member_id, organization = author
        organization_at = custody_at + _SOLE_ENTRY_FRAMING
        if (
            custody_length != _SOLE_ENTRY_FRAMING + len(organization) + CUSTODY_WRAP_BYTES
            or raw[custody_at] != _SOLE_ENTRY
            or raw[custody_at + 1] != len(organization)
            or raw[organization_at : organization_at + len(organization)] != organization
        ):
            return False

        record_id = raw[payload_at : payload_at + KEY_BYTES]
        record_key = self._record_prefix + record_id
        stored = pending[record_key] if record_key in pending else read(record_key)
        if stored is not None:
            return False
        record_at = payload_at + PAYLOAD_RECORD_OFFSET  # the patient id starts the record
        patient_id = raw[record_at : record_at + KEY_BYTES]
        patient_key = self._patient_prefix + patient_id
        entry = pending[patient_key] if patient_key in pending else read(patient_key)
        if type(entry) is not bytes or len(entry) != PATIENT_ENTRY_BYTES:
            return False
        count_end = PATIENT_COUNT_OFFSET + PATIENT_COUNT_BYTES
        record_count = int.from_bytes(entry[PATIENT_COUNT_OFFSET:count_end], "big")
        if record_count >= self._max_records:
            return False
        custody_key = self._custody_prefix + record_id
        # The patient's record index entry: its sequence is the record count before the anchor.
        index_key = self._index_prefix + patient_id + entry[PATIENT_COUNT_OFFSET:count_end]
        new_keys = (
            (record_key not in pending)
            + (custody_key not in pending)
            + (index_key not in pending)
            + (patient_key not in pending)
            + (nonce_key not in pending)
        )
        if len(pending) + new_keys > max_pending_writes:
            return False

        # The rule's writes, in its order: record, record custody, record index entry, patient
        # entry; then the pipeline's nonce.
        pending[record_key] = b"".join(
            (
                raw[record_at:head_end],  # patient id to size: the record's head
                member_id,
                bytes((len(organization),)),
                organization,
                height.to_bytes(RECORD_HEIGHT_BYTES, "big"),
                time_ms.to_bytes(RECORD_TIME_BYTES, "big"),
                _ERASURE_FIELDS,
            )
        )
        # RecordCustody: the patient's wrap digest, then the custody list as the payload has it
        # (one entry, canonical: the encoding the rule would write).
        pending[custody_key] = (
            raw[head_end : head_end + PAYLOAD_WRAP_BYTES]
            + raw[custody_at : custody_at + custody_length]
        )
        pending[index_key] = record_id
        pending[patient_key] = entry[:PATIENT_COUNT_OFFSET] + (record_count + 1).to_bytes(
            PATIENT_COUNT_BYTES, "big"
        )
        pending[nonce_key] = nonce.to_bytes(NONCE_BYTES, "big")
        results[index] = self._result_type(0, anchored_message(record_id))
        return True
