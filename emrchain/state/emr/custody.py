"""Custody sets: which organisations hold each record's data key (`docs/spec/records.md` §9).

The set is a deterministic function of the chain state at the anchor: every node executing
ANCHOR_RECORD recomputes it and refuses an anchor whose list differs, so no client and no
faulty minority of validators chooses who holds a key. It is stored with the record (under its
own key, with the SHA-256 of each custodian's wrap and of the patient's) and never moves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from emrchain.schema import CUSTODY_MAX_BYTES, IDENT_ALPHABET, MAX_CUSTODIANS
from emrchain.schema.anchor import CUSTODY_WRAP_BYTES
from emrchain.state import keys
from emrchain.state.emr.limits import MAX_ORGANIZATIONS, ORGANIZATION_ID_MAX_BYTES
from emrchain.state.emr.tables import patient_member
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import OverlayStateView, StateView
from emrchain.types.codec import DecodeError, Reader, Writer

CUSTODY_POLICY_LABEL = b"emrchain/custody-set/v1"
"""Names the policy version inside every rendezvous hash; a new policy takes a new label."""
DEFAULT_CUSTODY_SET_SIZE = 1
"""k when the genesis does not set `emr_params.custody_set_size`: the author's organisation
alone, as before custody sets existed. Redundancy is a network decision made in the genesis."""
DIGEST_BYTES = CUSTODY_WRAP_BYTES


@dataclass(frozen=True, slots=True)
class CustodyEntry:
    organization_id: str
    wrap_sha256: bytes
    """SHA-256 of the 80-byte sealed box of the data key made for this organisation."""


def encode_custody_entries(entries: tuple[CustodyEntry, ...]) -> bytes:
    """ANCHOR_RECORD `custody`: count u8 | (u8 length | organisation id | wrap SHA-256)*."""
    writer = Writer().u8(len(entries))
    for entry in entries:
        writer.var_bytes(entry.organization_id.encode("ascii"), 1).fixed(entry.wrap_sha256, 32)
    return writer.bytes()


def custody_nameable(organization_id: bytes) -> bool:
    """Whether a custody entry may name `organization_id`: 1..64 bytes of [a-z0-9._-]."""
    return 0 < len(organization_id) <= ORGANIZATION_ID_MAX_BYTES and all(
        byte in IDENT_ALPHABET for byte in organization_id
    )


def _read_entries(reader: Reader) -> tuple[CustodyEntry, ...]:
    count = reader.count(1, MAX_CUSTODIANS, "custodian count")
    entries = []
    for _ in range(count):
        raw = reader.var_bytes(1, ORGANIZATION_ID_MAX_BYTES, "organization_id")
        if not custody_nameable(raw):
            raise DecodeError("custody: an organisation id is not 1..64 of [a-z0-9._-]")
        entries.append(CustodyEntry(raw.decode("ascii"), reader.fixed(DIGEST_BYTES, "wrap")))
    if len({entry.organization_id for entry in entries}) != count:
        raise DecodeError("custody: an organisation appears twice")
    return tuple(entries)


def decode_custody_entries(data: bytes) -> tuple[CustodyEntry, ...]:
    """The entries of an ANCHOR_RECORD `custody` field; DecodeError unless canonical."""
    if len(data) > CUSTODY_MAX_BYTES:
        raise DecodeError("custody: too long")
    reader = Reader(data, "custody")
    entries = _read_entries(reader)
    reader.finish()
    return entries


@dataclass(frozen=True, slots=True)
class RecordCustody:
    """What the chain keeps of a record's custody: stored under `0x31 | record id`."""

    patient_wrap_sha256: bytes
    custodians: tuple[CustodyEntry, ...]

    @property
    def organization_ids(self) -> tuple[str, ...]:
        return tuple(entry.organization_id for entry in self.custodians)

    def wrap_digest_of(self, organization_id: str) -> bytes | None:
        for entry in self.custodians:
            if entry.organization_id == organization_id:
                return entry.wrap_sha256
        return None

    def encode(self) -> bytes:
        return self.patient_wrap_sha256 + encode_custody_entries(self.custodians)

    @classmethod
    def decode(cls, data: bytes) -> RecordCustody:
        reader = Reader(data, "RecordCustody")
        patient_wrap = reader.fixed(DIGEST_BYTES, "patient_wrap_sha256")
        entries = _read_entries(reader)
        reader.finish()
        return cls(patient_wrap, entries)


def read_record_custody(view: StateView, record_id: bytes) -> RecordCustody | None:
    raw = view.get(keys.record_custody_key(record_id))
    if raw is None:
        return None
    try:
        return RecordCustody.decode(raw)
    except DecodeError as error:
        raise StateCorruptionError(f"record custody is undecodable: {error}") from None


def write_record_custody(state: OverlayStateView, record_id: bytes, custody: RecordCustody) -> None:
    state.put(keys.record_custody_key(record_id), custody.encode())


def encode_organization_ids(organization_ids: list[str]) -> bytes:
    writer = Writer().u16(len(organization_ids))
    for organization_id in organization_ids:
        writer.var_bytes(organization_id.encode("ascii"), 1)
    return writer.bytes()


def read_organization_ids(view: StateView) -> list[str]:
    """Every registered organisation id, in registration order (genesis ones first)."""
    raw = view.get(keys.ORGANIZATION_LIST)
    if raw is None:
        return []
    return _decode_organization_ids(raw, MAX_ORGANIZATIONS, "organisation list")


def _decode_organization_ids(raw: bytes, most: int, what: str) -> list[str]:
    """`encode_organization_ids` read back; a state entry that does not decode is corruption."""
    try:
        reader = Reader(raw, what)
        count = reader.count(2, most, "count")
        ids = [
            reader.var_bytes(1, ORGANIZATION_ID_MAX_BYTES, "organization_id").decode("ascii")
            for _ in range(count)
        ]
        reader.finish()
    except (DecodeError, UnicodeDecodeError) as error:
        raise StateCorruptionError(f"{what} is undecodable: {error}") from None
    return ids


def add_organization_id(state: OverlayStateView, organization_id: str) -> None:
    state.put(
        keys.ORGANIZATION_LIST,
        encode_organization_ids([*read_organization_ids(state), organization_id]),
    )


def read_custody_set_size(view: StateView) -> int:
    raw = view.get(keys.CUSTODY_SET_SIZE)
    if raw is None:
        return DEFAULT_CUSTODY_SET_SIZE
    if len(raw) != 1 or not 1 <= raw[0] <= MAX_CUSTODIANS:
        raise StateCorruptionError("custody set size is not one byte within 1..16")
    return raw[0]


def author_is_sole_custodian(view: StateView) -> bool:
    """Whether k is 1 in `view` (stored as 1, or absent: the default), so that every record's
    custody set is its author's organisation alone. The compiled accept path takes anchors only
    then (`state/emr/application.py`). A corrupt k gives False, never an error: the general rule
    then meets it and raises, as it would without the path. Only the genesis writes k."""
    raw = view.get(keys.CUSTODY_SET_SIZE)
    if raw is None:
        return DEFAULT_CUSTODY_SET_SIZE == 1
    return raw == b"\x01"


def rendezvous_rank(record_id: bytes, organization_id: str) -> bytes:
    """The policy's ordering key; label and record id are fixed-width, so the concatenation
    is unambiguous."""
    return hashlib.sha256(
        CUSTODY_POLICY_LABEL + record_id + organization_id.encode("ascii")
    ).digest()


def custody_policy(
    record_id: bytes,
    author_organization: str,
    patient_organization: str | None,
    organization_ids: list[str],
    set_size: int,
) -> list[str]:
    """The custody set (§9 policy): the author's organisation, the patient's registering
    organisation, then the others by ascending rendezvous rank, up to `set_size`."""
    chosen = [author_organization]
    if patient_organization is not None and patient_organization != author_organization:
        chosen.append(patient_organization)
    others = sorted(
        (organization for organization in organization_ids if organization not in chosen),
        key=lambda organization: rendezvous_rank(record_id, organization),
    )
    return (chosen + others)[: max(set_size, 1)]


def custody_set_for(
    view: StateView, record_id: bytes, author_organization: str, patient_id: bytes
) -> list[str]:
    """The policy's custody set of a record about to be anchored, from the state `view`.
    With k = 1 the set is the author's organisation whatever else the state holds, so nothing
    else is read: the compiled accept path (which reads nothing else either) then decides
    exactly as this does, even on a state where those other entries are corrupt."""
    set_size = read_custody_set_size(view)
    if set_size == 1:
        return [author_organization]
    patient = patient_member(view, patient_id)
    return custody_policy(
        record_id,
        author_organization,
        patient.organization_id if patient is not None else None,
        read_organization_ids(view),
        set_size,
    )


def encode_receipts(organization_ids: list[str]) -> bytes:
    return encode_organization_ids(organization_ids)


def read_erasure_receipts(view: StateView, record_id: bytes) -> list[str]:
    """The custodians that posted an erasure receipt for the record, in custody order."""
    raw = view.get(keys.erasure_receipts_key(record_id))
    return [] if raw is None else _decode_organization_ids(raw, MAX_CUSTODIANS, "erasure receipts")
