"""Reply body schemas of the OpenAPI document (`emrchain/rpc/openapi.py`).

They mirror the JSON the handlers build (`server.py`, `records.py`, `binary.py`), with every
field required, so schemathesis' response-schema check (`scripts/fuzz-rpc`) notices a reply
that drifts from what clients are told.
"""

from __future__ import annotations

from typing import Any

AMENDMENT_REASONS = ("correction", "entered_in_error", "addendum")

HEX = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}
HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
BOOL = {"type": "boolean"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def strict(**properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, all required."""
    return {
        "type": "object",
        "required": sorted(properties),
        "properties": properties,
        "additionalProperties": False,
    }


HEALTH = strict(ok=BOOL, height=INT, halt=nullable(STR))
STATUS = strict(
    chain_id=STR,
    node_id=STR,
    validator=HEX32,
    core_implementation=STR,
    latest_height=INT,
    base_height=INT,
    latest_block_id=nullable(HEX32),
    latest_app_hash=HEX32,
    consensus=strict(height=nullable(INT), round=nullable(INT), step=nullable(STR)),
    peers={"type": "array", "items": STR},
    p2p=strict(
        peers={
            "type": "object",
            "additionalProperties": strict(strikes={"type": "object", "additionalProperties": INT}),
        },
        bans_in_force=INT,
        bans=INT,
        unknown_peer_refusals=INT,
    ),
    mempool_txs=INT,
    evidence={"type": "array", "items": HEX},
    refused_signatures=INT,
    blocks_synced=INT,
    sync=strict(
        blocks_by_peer={"type": "object", "additionalProperties": INT},
        requests_by_peer={"type": "object", "additionalProperties": INT},
        requests_in_flight=INT,
        buffered_blocks=INT,
        buffered_bytes=INT,
        timeouts=INT,
        responses_refused=INT,
        pruned_answers=INT,
    ),
    counters=strict(
        admitted_txs=INT,
        refused_txs_by_code={"type": "object", "additionalProperties": INT},
        signatures_verified=INT,
        signature_cache_hits=INT,
        preverified_txs=INT,
        gossip_batches_dropped=INT,
        undecodable_messages=INT,
        state_cache_hits=INT,
        state_cache_misses=INT,
        state_cache_entries=INT,
        absence_filter_keys=INT,
    ),
    halt=nullable(STR),
)
# POST /txs answers in the shape of the request: a verdict per tx for JSON (with its outcome
# when waited for: wait=commit), only the refusals for the binary batch (`binary.py`).
SUBMIT = {
    "oneOf": [
        strict(
            results={
                "type": "array",
                "items": strict(tx_id=HEX32, accepted=BOOL, code=STR, reason=STR),
            }
        ),
        strict(
            results={
                "type": "array",
                "items": strict(
                    tx_id=HEX32,
                    accepted=BOOL,
                    code=STR,
                    reason=STR,
                    outcome={"enum": ["committed", "dropped", "refused"]},
                    height=nullable(INT),
                    index=nullable(INT),
                    result_code=nullable(INT),
                ),
            }
        ),
        strict(
            accepted=INT,
            refused={
                "type": "array",
                "items": strict(index=INT, tx_id=HEX32, code=STR, reason=STR),
            },
        ),
    ]
}
HEADER = strict(
    height=INT,
    block_id=HEX32,
    time_ms=INT,
    previous_block_id=HEX32,
    last_commit_hash=HEX32,
    tx_root=HEX32,
    tx_count=INT,
    app_hash=HEX32,
    validators_hash=HEX32,
    next_validators_hash=HEX32,
    evidence_hash=HEX32,
    proposer=HEX32,
)
TX_STATUS = {
    "oneOf": [
        strict(tx_id=HEX32, status={"const": "pending"}),
        strict(
            tx_id=HEX32,
            status={"const": "committed"},
            height=INT,
            index=INT,
            result_code=nullable(INT),
            result=nullable(STR),
            proof=strict(total=INT, index=INT, audit_path={"type": "array", "items": HEX32}),
            header=nullable(HEADER),
        ),
    ]
}
BLOCK = strict(
    header=HEADER,
    tx_ids={"type": "array", "items": HEX32},
    commit=nullable(strict(round=INT, signers={"type": "array", "items": HEX32})),
)
EVIDENCE_ITEM: dict[str, dict[str, Any]] = dict(
    type={"enum": ["duplicate_vote", "conflicting_proposals"]},
    offender=HEX32,
    height=INT,
    round=INT,
    vote_type={"enum": ["prevote", "precommit", "proposal"]},
    block_ids={"type": "array", "items": HEX32, "minItems": 2, "maxItems": 2},
    hash=HEX32,
)
EVIDENCE = strict(
    committed={"type": "array", "items": strict(**EVIDENCE_ITEM, committed_height=INT)},
    pending={"type": "array", "items": strict(**EVIDENCE_ITEM)},
)
_REPLICATION_RECORD = strict(record_id=HEX32, cid=STR)
REPLICATION = strict(
    enabled=BOOL,
    organization_id=STR,
    factor=INT,
    factors_by_type={"type": "object", "additionalProperties": INT},
    rounds=INT,
    last_round_height=INT,
    last_round_duration_ms=INT,
    last_round_error=STR,
    local_store_up=BOOL,
    records=INT,
    wanted_here=INT,
    pinned_here=INT,
    missing_here=INT,
    under_replicated=INT,
    peers={"type": "object", "additionalProperties": BOOL},
    missing={"type": "array", "items": _REPLICATION_RECORD},
    under_replicated_records={
        "type": "array",
        "items": strict(record_id=HEX32, cid=STR, copies=INT, factor=INT),
    },
    pins={"type": "object", "additionalProperties": INT},
    failover={"type": "object", "additionalProperties": INT},
)
VALIDATORS = strict(
    height=INT,
    hash=HEX32,
    validators={"type": "array", "items": strict(public_key=HEX32, power=INT)},
)
VALIDATOR_NONCE = strict(validator_key=HEX32, committed_nonce=INT, next_nonce=INT)
ACCOUNT = strict(
    member_key=HEX32,
    # Fields the caller may not see are null (`docs/spec/rpc.md`, Accounts).
    member=nullable(
        strict(
            member_id=nullable(HEX32),
            organization_id=nullable(STR),
            role=nullable(STR),
            patient_id=nullable(HEX),
            encryption_key=HEX,
            active=BOOL,
            is_current_key=BOOL,
        )
    ),
    committed_nonce=nullable(INT),
    next_nonce=nullable(INT),
)
UPLOAD = strict(record_id=HEX32, organization_id=STR, cid=STR, ciphertext_sha256=HEX32, size=INT)
_CUSTODIAN = strict(organization_id=STR, custody_key=nullable(STR), node_address=nullable(STR))
GRANTEE_WRAP = strict(record_id=HEX32, grant_id=HEX32, kept=BOOL)
CUSTODY_SET = strict(
    record_id=HEX32,
    patient_id=HEX32,
    patient_encryption_key=HEX32,
    custodians={"type": "array", "items": _CUSTODIAN},
    height=INT,
)
RECORD_CUSTODY = strict(
    record_id=HEX32,
    erased=BOOL,
    patient_wrap_sha256=HEX32,
    custodians={"type": "array", "items": {"type": "object"}},
    erasure_complete=BOOL,
)
READ = strict(
    record_id=HEX32,
    patient_id=HEX32,
    record_type=INT,
    ciphertext_sha256=HEX32,
    ciphertext={"type": "string", "contentEncoding": "base64"},
    wrapped_key=HEX,
    via=STR,
    access_event_tx_id=HEX32,
    access_event_height=INT,
    status={"enum": ["current", "superseded", "entered-in-error"]},
    superseded_by={
        "type": "array",
        "items": strict(record_id=HEX32, reason={"enum": list(AMENDMENT_REASONS)}),
    },
)
GRANT = strict(
    grant_id=HEX32,
    scope=STR,
    target=HEX,
    patient_id=HEX32,
    grantee_kind=STR,
    grantee_member=HEX,
    grantee_organization=STR,
    grantor=HEX32,
    expires_at_ms=INT,
    height=INT,
    time_ms=INT,
)
GRANTS = strict(grants={"type": "array", "items": GRANT})
EVENT = strict(
    kind=STR,
    event_id=HEX32,
    patient_id=HEX32,
    record_id=HEX,
    actor=HEX32,
    actor_organization=STR,
    action=INT,
    basis=STR,
    grant_id=HEX,
    reason=STR,
    expires_at_ms=INT,
    flagged_for_review=BOOL,
    height=INT,
    time_ms=INT,
)
CURSOR = nullable({"type": "string", "pattern": "^[0-9]{1,20}\\.[0-9a-f]{16}$"})
EVENTS = strict(events={"type": "array", "items": EVENT}, total=INT, dropped=INT, next=CURSOR)
INDEXED_RECORD = strict(
    record_id=HEX32,
    patient_id=HEX32,
    author=HEX32,
    author_organization=STR,
    anchored_height=INT,
    anchored_time_ms=INT,
    record_type=STR,
    content_sha256=HEX32,
    cid=nullable(STR),
    size_bytes=INT,
    erased=BOOL,
    erasure_reason=nullable(STR),
    erased_by=nullable(HEX32),
    erased_height=nullable(INT),
    erased_time_ms=nullable(INT),
)
PATIENT_RECORDS = strict(
    patient_id=HEX32, records={"type": "array", "items": INDEXED_RECORD}, next=CURSOR
)
CONSENT = strict(
    grant_id=HEX32,
    scope={"enum": ["patient", "record"]},
    record_id=nullable(HEX32),
    grantee=STR,
    grantee_kind={"enum": ["member", "organization"]},
    grantor=HEX32,
    granted_height=INT,
    granted_time_ms=INT,
    expires_time_ms=nullable(INT),
    status={"enum": ["active", "revoked", "expired"]},
    revoked_height=nullable(INT),
    revoked_time_ms=nullable(INT),
    revoked_by=nullable(HEX32),
    ended=nullable({"enum": ["revoked", "expired", "record_erased"]}),
    ended_height=nullable(INT),
    ended_time_ms=nullable(INT),
)
CONSENTS = strict(patient_id=HEX32, consents={"type": "array", "items": CONSENT}, next=CURSOR)
SHARED_CURSOR_HEX = 2 * (1 + 1 + 64 + 32)
"""The hex of a grantee index key (state key 0x45): the cursor of `/members/{key}/shared`."""
SHARED_CURSOR = {"type": "string", "pattern": f"^[0-9a-f]{{{SHARED_CURSOR_HEX}}}$"}
SHARED_GRANT = strict(
    grant_id=HEX32,
    scope={"enum": ["patient", "record"]},
    record_id=nullable(HEX32),
    patient_id=HEX32,
    grantee_kind={"enum": ["member", "organization"]},
    expires_time_ms=nullable(INT),
    granted_height=INT,
)
SHARED = strict(
    member_key=HEX32,
    shared={"type": "array", "items": SHARED_GRANT},
    next=nullable(SHARED_CURSOR),
)
AMENDMENT_LINK = strict(
    record_id=HEX32,
    reason={"enum": list(AMENDMENT_REASONS)},
    note=nullable(STR),
    height=INT,
)
HISTORY = strict(
    record_id=HEX32,
    status={"enum": ["current", "superseded", "entered-in-error"]},
    supersedes={"type": "array", "items": AMENDMENT_LINK},
    superseded_by={"type": "array", "items": AMENDMENT_LINK},
)
REVIEW = strict(
    review_id=HEX32,
    sequence=INT,
    status={"enum": ["open", "closed"]},
    kind={"enum": ["break_glass", "reenrolment"]},
    patient_id=HEX32,
    patient_organization=nullable(STR),
    record_id=nullable(HEX32),
    actor=HEX32,
    actor_organization=STR,
    reason=STR,
    expires_at_ms=INT,
    opened_height=INT,
    opened_time_ms=INT,
    outcome=nullable({"enum": ["justified", "unjustified", "needs_follow_up"]}),
    note=nullable(STR),
    closed_by=nullable(HEX32),
    closed_by_organization=nullable(STR),
    closed_height=nullable(INT),
    closed_time_ms=nullable(INT),
)
REVIEWS = strict(
    reviews={"type": "array", "items": REVIEW}, next_after=nullable(INT), total=INT, open=INT
)
_QUERY_TYPE = {"enum": ["count", "sum", "mean", "histogram"]}
STUDY_QUERY = strict(
    query_id=HEX32,
    sequence=INT,
    query_type=_QUERY_TYPE,
    measure=STR,
    lower_milli=INT,
    upper_milli=INT,
    bins=INT,
    epsilon=INT,
    delta=INT,
    height=INT,
    time_ms=INT,
    result_sha256=nullable(HEX32),
    result_height=nullable(INT),
)
_STUDY_FIELDS: dict[str, dict[str, Any]] = {
    "study_id": HEX32,
    "sequence": INT,
    "status": {"enum": ["proposed", "active", "closed"]},
    "sponsor": HEX32,
    "sponsor_organization": STR,
    "purpose": STR,
    "query_types": {"type": "array", "items": _QUERY_TYPE},
    "participants": {"type": "array", "items": STR},
    "approved_by": {"type": "array", "items": STR},
    "expires_at_ms": INT,
    "epsilon_total": INT,
    "epsilon_spent": INT,
    "epsilon_left": INT,
    "delta_total": INT,
    "delta_spent": INT,
    "delta_left": INT,
    "query_count": INT,
    "result_count": INT,
    "height": INT,
    "closed_height": nullable(INT),
}
STUDY_SUMMARY = strict(**_STUDY_FIELDS)
STUDY = strict(**_STUDY_FIELDS, queries={"type": "array", "items": STUDY_QUERY})
STUDIES = strict(studies={"type": "array", "items": STUDY_SUMMARY}, next_after=nullable(INT))
CONTRIBUTION = strict(
    study_id=HEX32,
    query_id=HEX32,
    organization_id=STR,
    masked=BOOL,
    vector={"type": "array", "items": {"type": "string", "pattern": "^-?[0-9]{1,20}$"}},
)
ERROR = strict(
    error={
        **strict(code=STR, message=STR),
        # Beside code and message: `height_pruned` (410) and a 404 `unknown_tx` of a node
        # that pruned say from which height the node keeps blocks.
        "properties": {"code": STR, "message": STR, "base_height": INT},
    }
)
