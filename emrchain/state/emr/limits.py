"""Explicit bounds of every EMR collection in state (`docs/spec/access-control.md` §5).

These are consensus rules: every node of a chain must use the same numbers, so they are
constants, not configuration. A transaction that would exceed one is refused with a specific
code; the auditors' review queue instead drops its oldest entry and counts it (the event
itself stays in its patient's trail). The patients' and records' access trails, the consent
histories and the patient record index are append-only logs with one entry per transaction
that adds to them (§5 of the spec says which).
"""

from __future__ import annotations

from emrchain import schema

MAX_ORGANIZATIONS = 4_096
"""Registered organisations, genesis ones included."""
MAX_MEMBERS_PER_ORGANIZATION = 10_000_000
"""Members ever registered by one organisation (revoked ones still count: their record stays)."""
MAX_KEYS_PER_MEMBER = 256
"""Keys in one member's history, the registration key included (255 rotations)."""
MAX_RECORDS_PER_PATIENT = 100_000
"""Records anchored for one patient id."""
MAX_GRANTS_PER_PATIENT = 256
"""Grants in force naming one patient (both scopes); expired ones are pruned before counting."""
MAX_GRANTS_PER_RECORD = 64
"""Record-scope grants in force for one record."""
MAX_BREAK_GLASS_SESSIONS_PER_PATIENT = 32
"""Unexpired break-glass sessions on one patient."""
REVIEW_QUEUE_CAPACITY = 65_536
"""Most recent break-glass events kept in state for auditors' review."""
MAX_AMENDMENTS_PER_RECORD = 64
"""Records that amend one record (its addenda, then at most one correction or entered-in-error),
`records.md` §11."""
MAX_STUDIES = 65_536
"""Studies ever proposed on a chain (closed ones keep their record and count)."""
MAX_QUERIES_PER_STUDY = 1_024
"""Queries one study may run (the privacy budget usually ends it much sooner)."""
MAX_RESEARCH_CONSENT_CHANGES = 1_024
"""Opt-in/opt-out changes one patient may make (each is kept: workers look up the choice in
force at a query's height)."""

WRAPPED_KEY_BYTES = 80
"""A record data key (32 bytes) sealed to the grantee's X25519 key: ephemeral public key (32)
+ ciphertext (32) + tag (16)."""


def _payload_maximum(kind: schema.TxKind, name: str) -> int:
    """A payload bound, read from the schema so state codecs can never drift from it."""
    return next(spec for spec in schema.PAYLOAD_SCHEMAS[kind] if spec.name == name).maximum


ORGANIZATION_ID_MAX_BYTES = _payload_maximum(schema.TxKind.REGISTER_ORGANIZATION, "organization_id")
ORGANIZATION_NAME_MAX_BYTES = _payload_maximum(schema.TxKind.REGISTER_ORGANIZATION, "name")
REVOKE_REASON_MAX_BYTES = _payload_maximum(schema.TxKind.REVOKE_MEMBER, "reason")
BREAK_GLASS_REASON_MAX_BYTES = _payload_maximum(schema.TxKind.BREAK_GLASS, "reason")
CID_MAX_BYTES = _payload_maximum(schema.TxKind.ANCHOR_RECORD, "cid")
