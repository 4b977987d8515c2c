"""Application state key layout (`docs/spec/state.md` §3).

Every key starts with a one-byte namespace. Keys are application keys: the store adds its own
prefix in front of them. Namespaces below 0x20 belong to the block pipeline (progress, validator
sets, nonces); 0x20..0x7F to the EMR rules (organisations, members, records, grants, audit
events), specified in `docs/spec/state.md` §3.1. Every EMR key is a namespace byte and
fixed-width fields, so no key is a prefix of a key of another kind. 0x12 held the anchors of the
first milestone's rules, which the node no longer runs: nothing writes it, and it stays
unassigned.
"""

from __future__ import annotations

PROGRESS = b"\x01"
"""-> last executed height u64 | that block's time_ms u64."""
VALIDATORS_NEXT = b"\x02"
"""-> ValidatorSet encoding: the set that signs the next block (height + 1)."""
VALIDATORS_AFTER_NEXT = b"\x03"
"""-> ValidatorSet encoding: the set for height + 2 (already fixed, updates go after it)."""
VALIDATOR_PROPOSALS = b"\x04"
"""-> the open validator-update proposals and their approvals (`validators.py`)."""
COMMITTED_EVIDENCE_PREFIX = b"\x05"
"""0x05 | evidence hash (32) -> commit height u64 | evidence encoding (`evidence.py`)."""
VALIDATOR_NODES = b"\x06"
"""-> the P2P node key and advertised address of validators added by VALIDATOR_UPDATE
(`peers.py`); kept apart from the set encodings so the set hash does not change."""
NONCE_PREFIX = b"\x10"
"""0x10 | sender key (32) -> last applied nonce u64."""
VALIDATOR_EPOCH_PREFIX = b"\x11"
"""0x11 | validator key (32) -> epoch u64 of the last update applied to that key."""


def nonce_key(sender: bytes) -> bytes:
    return NONCE_PREFIX + sender


def validator_epoch_key(validator_key: bytes) -> bytes:
    return VALIDATOR_EPOCH_PREFIX + validator_key


def committed_evidence_key(evidence_hash: bytes) -> bytes:
    return COMMITTED_EVIDENCE_PREFIX + evidence_hash


# --- EMR rules (`emrchain/state/emr/`), namespaces 0x20..0x7F ---------------------------------

ORGANIZATION_PREFIX = b"\x20"
"""0x20 | organization id padded with 0x00 to 64 bytes -> Organization."""
ORGANIZATION_COUNT = b"\x21"
"""-> number of registered organisations u32 (bounds the organisation table)."""
MEMBER_PREFIX = b"\x22"
"""0x22 | member id (32, the key the member was registered with) -> Member."""
MEMBER_KEY_PREFIX = b"\x23"
"""0x23 | member key (32) -> member id: every key a member ever had, current or rotated away."""
KEY_HISTORY_PREFIX = b"\x24"
"""0x24 | member id (32) | index u16 -> KeyHistoryEntry (the member's n-th key)."""
PATIENT_PREFIX = b"\x25"
"""0x25 | patient id (32) -> PatientEntry (the patient member holding it, record count)."""
ORGANIZATION_LIST = b"\x26"
"""-> the registered organisation ids in registration order (the custody policy's candidates)."""
CUSTODY_SET_SIZE = b"\x27"
"""-> k u8, the custody set size of the genesis (absent: the default, `records.md` §9)."""
EMR_RECORD_PREFIX = b"\x30"
"""0x30 | record id (32) -> EmrRecord (anchor, author, erasure tombstone)."""
RECORD_CUSTODY_PREFIX = b"\x31"
"""0x31 | record id (32) -> RecordCustody (custodians and wrap digests fixed at anchoring)."""
ERASURE_RECEIPTS_PREFIX = b"\x32"
"""0x32 | record id (32) -> the custodians that posted an erasure receipt, in custody order."""
PATIENT_RECORDS_PREFIX = b"\x33"
"""0x33 | patient id (32) | sequence u32 -> record id (32): the patient's records in anchoring
order; the sequence is the patient entry's record count before the anchor."""
AMENDMENT_LINK_PREFIX = b"\x34"
"""0x34 | record id (32) -> AmendmentLink: the record an AMEND_RECORD anchored supersedes,
why, and at which height (`records.md` §11)."""
AMENDMENT_STATE_PREFIX = b"\x35"
"""0x35 | record id (32) -> AmendmentState: the record's status and the records that amend
it, oldest first (absent: current, never amended)."""
GRANT_PREFIX = b"\x40"
"""0x40 | grant id (32) -> Grant, while the grant is in force (moved to 0x44 when revoked,
expired and pruned, or its record erased)."""
PATIENT_GRANTS_PREFIX = b"\x41"
"""0x41 | patient id (32) -> list of grant ids naming this patient (both scopes)."""
RECORD_GRANTS_PREFIX = b"\x42"
"""0x42 | record id (32) -> list of grant ids of record scope for this record."""
CONSENT_HISTORY_PREFIX = b"\x43"
"""0x43 | patient id (32) | sequence u64 -> grant id (32): every grant ever made naming the
patient, in grant order; sequence 2^64-1 holds the history's length u64 instead."""
ENDED_GRANT_PREFIX = b"\x44"
"""0x44 | grant id (32) -> EndedGrant: a grant no longer in force (revoked, expired and pruned,
or its record erased), with how, when and by whom it ended."""
GRANTEE_GRANTS_PREFIX = b"\x45"
"""0x45 | grantee kind u8 | grantee (64: member id padded with 0x00, or organisation id padded
as in 0x20) | grant id (32) -> patient id (32): the grants in force naming each grantee, so a
member can list what was shared with it; written and deleted with 0x40."""
BREAK_GLASS_PREFIX = b"\x50"
"""0x50 | patient id (32) -> the patient's break-glass sessions not yet pruned."""
PATIENT_TRAIL_COUNT_PREFIX = b"\x60"
"""0x60 | patient id (32) -> events ever appended to the patient's access trail u64."""
PATIENT_TRAIL_PREFIX = b"\x61"
"""0x61 | patient id (32) | sequence u64 -> AccessEvent: the patient's trail, append-only."""
RECORD_TRAIL_COUNT_PREFIX = b"\x62"
"""0x62 | record id (32) -> events ever appended to the record's access trail u64."""
RECORD_TRAIL_PREFIX = b"\x63"
"""0x63 | record id (32) | sequence u64 -> AccessEvent: the record's trail, append-only."""
REVIEW_COUNT = b"\x64"
"""-> break-glass events ever appended to the review queue u64."""
REVIEW_PREFIX = b"\x65"
"""0x65 | slot u32 -> AccessEvent of kind break-glass, for auditors' review."""
REVIEW_STATE_PREFIX = b"\x68"
"""0x68 | review id (32) -> ReviewState: the review's queue position, open or closed, and the
closing auditor's outcome; deleted when the review leaves the queue's ring."""
OPEN_REVIEW_COUNT = b"\x69"
"""-> reviews in the queue not yet closed u64."""
NODE_REGISTRY = b"\x70"
"""-> the registered full nodes: node key, organisation, advertised address (`peers.py`)."""

# --- Studies under differential privacy (`docs/spec/analytics.md`), namespaces 0x80..0x8F ------

STUDY_PREFIX = b"\x80"
"""0x80 | study id (32) -> Study: its terms, approvals, status and the budget spent."""
STUDY_COUNT = b"\x81"
"""-> studies ever proposed u32 (bounds the study table; closed ones still count)."""
STUDY_LIST_PREFIX = b"\x82"
"""0x82 | sequence u32 -> study id (32): the studies in proposal order."""
STUDY_QUERY_PREFIX = b"\x83"
"""0x83 | study id (32) | sequence u32 -> StudyQuery: the study's queries in commit order."""
STUDY_QUERY_INDEX_PREFIX = b"\x84"
"""0x84 | study id (32) | query id (32) -> the query's sequence u32."""
RESEARCH_CONSENT_PREFIX = b"\x85"
"""0x85 | patient id (32) -> the number of research-consent changes u32."""
RESEARCH_CONSENT_HISTORY_PREFIX = b"\x86"
"""0x86 | patient id (32) | sequence u32 -> choice u8 | height u64: each change, in order."""

ORGANIZATION_ID_FIELD_BYTES = 64


def organization_key(organization_id: str) -> bytes:
    """The organisation id is [a-z0-9._-]{1,64}; 0x00 padding cannot collide with it."""
    raw = organization_id.encode("ascii")
    if not 1 <= len(raw) <= ORGANIZATION_ID_FIELD_BYTES:
        raise ValueError("organization id must be 1..64 bytes")
    return ORGANIZATION_PREFIX + raw.ljust(ORGANIZATION_ID_FIELD_BYTES, b"\x00")


def member_key(member_id: bytes) -> bytes:
    return MEMBER_PREFIX + member_id


def member_key_index_key(key: bytes) -> bytes:
    return MEMBER_KEY_PREFIX + key


def key_history_key(member_id: bytes, index: int) -> bytes:
    return KEY_HISTORY_PREFIX + member_id + index.to_bytes(2, "big")


def patient_key(patient_id: bytes) -> bytes:
    return PATIENT_PREFIX + patient_id


def emr_record_key(record_id: bytes) -> bytes:
    return EMR_RECORD_PREFIX + record_id


def record_custody_key(record_id: bytes) -> bytes:
    return RECORD_CUSTODY_PREFIX + record_id


def erasure_receipts_key(record_id: bytes) -> bytes:
    return ERASURE_RECEIPTS_PREFIX + record_id


def grant_key(grant_id: bytes) -> bytes:
    return GRANT_PREFIX + grant_id


GRANTEE_FIELD_BYTES = 64
"""The grantee field of 0x45: wide enough for an organisation id; a member id is padded."""


def grantee_grants_prefix(grantee_kind: int, grantee: bytes) -> bytes:
    """0x45 | kind | grantee padded: every key of the grants naming this grantee. The kind byte
    keeps a member id and an organisation id that share bytes apart; the fixed width keeps one
    grantee's keys from being a prefix of another's."""
    if not 1 <= len(grantee) <= GRANTEE_FIELD_BYTES:
        raise ValueError("a grantee is 1..64 bytes")
    return (
        GRANTEE_GRANTS_PREFIX
        + grantee_kind.to_bytes(1, "big")
        + grantee.ljust(GRANTEE_FIELD_BYTES, b"\x00")
    )


def grantee_grant_key(grantee_kind: int, grantee: bytes, grant_id: bytes) -> bytes:
    return grantee_grants_prefix(grantee_kind, grantee) + grant_id


def patient_grants_key(patient_id: bytes) -> bytes:
    return PATIENT_GRANTS_PREFIX + patient_id


def record_grants_key(record_id: bytes) -> bytes:
    return RECORD_GRANTS_PREFIX + record_id


def patient_record_key(patient_id: bytes, sequence: int) -> bytes:
    return PATIENT_RECORDS_PREFIX + patient_id + sequence.to_bytes(4, "big")


CONSENT_HISTORY_LENGTH_SEQUENCE = (1 << 64) - 1
"""The sequence under which a consent history keeps its length (no grant ever gets it)."""


def consent_history_key(patient_id: bytes, sequence: int) -> bytes:
    return CONSENT_HISTORY_PREFIX + patient_id + sequence.to_bytes(8, "big")


def ended_grant_key(grant_id: bytes) -> bytes:
    return ENDED_GRANT_PREFIX + grant_id


def break_glass_key(patient_id: bytes) -> bytes:
    return BREAK_GLASS_PREFIX + patient_id


def amendment_link_key(record_id: bytes) -> bytes:
    return AMENDMENT_LINK_PREFIX + record_id


def amendment_state_key(record_id: bytes) -> bytes:
    return AMENDMENT_STATE_PREFIX + record_id


def review_state_key(review_id: bytes) -> bytes:
    return REVIEW_STATE_PREFIX + review_id


def study_key(study_id: bytes) -> bytes:
    return STUDY_PREFIX + study_id


def study_list_key(sequence: int) -> bytes:
    return STUDY_LIST_PREFIX + sequence.to_bytes(4, "big")


def study_query_key(study_id: bytes, sequence: int) -> bytes:
    return STUDY_QUERY_PREFIX + study_id + sequence.to_bytes(4, "big")


def study_query_index_key(study_id: bytes, query_id: bytes) -> bytes:
    return STUDY_QUERY_INDEX_PREFIX + study_id + query_id


def research_consent_key(patient_id: bytes) -> bytes:
    return RESEARCH_CONSENT_PREFIX + patient_id


def research_consent_history_key(patient_id: bytes, sequence: int) -> bytes:
    return RESEARCH_CONSENT_HISTORY_PREFIX + patient_id + sequence.to_bytes(4, "big")
