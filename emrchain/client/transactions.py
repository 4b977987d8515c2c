"""Builders of every transaction kind a client sends (`docs/spec/encoding.md` §4.2).

Each builder takes the signer (a `MemberIdentity`, or any `Signer` for a validator update), the
chain id and the nonce, checks nothing the chain checks anyway, and returns a signed
`Transaction`. The codec refuses values the schema forbids (`TxDecodeError`), so a builder can
never produce a statelessly invalid transaction. Wrapping data keys happens here, client side:
the node never sees a data key in clear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from emrchain.client.envelope import SealedRecord, rewrap
from emrchain.client.identity import MemberIdentity
from emrchain.crypto.keys import Signer
from emrchain.schema import (
    AccessAction,
    AmendmentReason,
    ErasureReason,
    GranteeKind,
    GrantScope,
    QueryType,
    RecordType,
    ResearchChoice,
    ReviewOutcome,
    Role,
    TxKind,
)
from emrchain.state.emr.custody import CustodyEntry, encode_custody_entries
from emrchain.types.codec import Writer
from emrchain.types.signing import Domain, node_registration_message, signed_message
from emrchain.types.transaction import Transaction

NO_KEY = bytes(32)
"""32 zero bytes: "none" in an optional key or id field."""


def register_organization(
    admin: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    organization_id: str,
    name: str,
    encryption_key: bytes,
) -> Transaction:
    """A new organisation with its X25519 key; the admin's organisation becomes its sponsor."""
    fields = {"organization_id": organization_id, "name": name, "encryption_key": encryption_key}
    return Transaction.create(admin.signer, chain_id, TxKind.REGISTER_ORGANIZATION, nonce, fields)


def register_member(
    admin: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    organization_id: str,
    member_key: bytes,
    encryption_key: bytes,
    role: Role,
    patient_id: bytes = NO_KEY,
) -> Transaction:
    """Register a member; `patient_id` is nonzero exactly for role patient."""
    fields = {
        "organization_id": organization_id,
        "member_key": member_key,
        "encryption_key": encryption_key,
        "role": int(Role(role)),
        "patient_id": patient_id,
    }
    return Transaction.create(admin.signer, chain_id, TxKind.REGISTER_MEMBER, nonce, fields)


def register_identity(
    admin: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    organization_id: str,
    member: MemberIdentity,
    role: Role,
    patient_id: bytes = NO_KEY,
) -> Transaction:
    """`register_member` with the keys of `member` (its member key and encryption key)."""
    return register_member(
        admin,
        chain_id,
        nonce,
        organization_id=organization_id,
        member_key=member.member_key,
        encryption_key=member.encryption_public_key,
        role=role,
        patient_id=patient_id,
    )


def revoke_member(
    admin: MemberIdentity, chain_id: bytes, nonce: int, *, member_key: bytes, reason: str = ""
) -> Transaction:
    fields = {"member_key": member_key, "reason": reason}
    return Transaction.create(admin.signer, chain_id, TxKind.REVOKE_MEMBER, nonce, fields)


def rotation_proof(chain_id: bytes, old: MemberIdentity, new: MemberIdentity) -> bytes:
    """The new key's signature over old key ‖ new key ‖ new encryption key (domain 0x05): it
    proves possession of the new key and binds it to this chain and to the key it replaces."""
    body = old.member_key + new.member_key + new.encryption_public_key
    return new.signer.sign(signed_message(Domain.KEY_ROTATION, chain_id, body))


def rotate_key(
    member: MemberIdentity, chain_id: bytes, nonce: int, *, new_identity: MemberIdentity
) -> Transaction:
    """Move `member` to `new_identity`; signed by the current (old) key."""
    fields = {
        "new_member_key": new_identity.member_key,
        "new_encryption_key": new_identity.encryption_public_key,
        "proof": rotation_proof(chain_id, member, new_identity),
    }
    return Transaction.create(member.signer, chain_id, TxKind.ROTATE_KEY, nonce, fields)


def anchor_record(
    author: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    sealed: SealedRecord,
    record_type: RecordType,
    custodians: list[str],
    patient_recipient: str = "<patient>",
    amendment: Mapping[str, Any] | None = None,
) -> Transaction:
    """Anchor a sealed record: its id, patient, ciphertext hash, binary CID, type and size,
    and the SHA-256 of the patient's wrap and of each custodian's, in custody-set order
    (`sealed.wraps` names them by organisation id, the patient's by `patient_recipient`).

    With `amendment` ({"supersedes": record id, "reason": AmendmentReason, "note": str}), the
    same record is anchored by AMEND_RECORD as superseding that record (`records.md` §11)."""
    entries = tuple(
        CustodyEntry(organization_id, hashlib.sha256(sealed.wraps[organization_id]).digest())
        for organization_id in custodians
    )
    fields = {
        "record_id": sealed.record_id,
        "patient_id": sealed.patient_id,
        "ciphertext_sha256": sealed.ciphertext_sha256,
        "cid": sealed.cid_bytes,
        "record_type": int(RecordType(record_type)),
        "size_bytes": sealed.size,
        "patient_wrap_sha256": hashlib.sha256(sealed.wraps[patient_recipient]).digest(),
        "custody": encode_custody_entries(entries),
    }
    if amendment is None:
        return Transaction.create(author.signer, chain_id, TxKind.ANCHOR_RECORD, nonce, fields)
    fields.update(
        supersedes=amendment["supersedes"],
        reason=int(AmendmentReason(amendment["reason"])),
        note=amendment.get("note", ""),
    )
    return Transaction.create(author.signer, chain_id, TxKind.AMEND_RECORD, nonce, fields)


def close_review(
    auditor: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    review_id: bytes,
    outcome: ReviewOutcome,
    note: str = "",
) -> Transaction:
    """An auditor closes the review opened by transaction `review_id` (a BREAK_GLASS, or a
    re-enrolling REGISTER_MEMBER) with an outcome and a short note."""
    fields = {"review_id": review_id, "outcome": int(ReviewOutcome(outcome)), "note": note}
    return Transaction.create(auditor.signer, chain_id, TxKind.CLOSE_REVIEW, nonce, fields)


def _grant(
    grantor: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    scope: GrantScope,
    target: bytes,
    grantee_member: bytes | None,
    grantee_organization: str | None,
    expires_at_ms: int,
    wrapped_key_sha256: bytes,
) -> Transaction:
    if (grantee_member is None) == (grantee_organization is None):
        raise ValueError("name exactly one grantee: a member key or an organisation id")
    fields = {
        "scope": int(scope),
        "target": target,
        "grantee_kind": int(GranteeKind.MEMBER if grantee_member else GranteeKind.ORGANIZATION),
        "grantee_member": grantee_member or NO_KEY,
        "grantee_organization": grantee_organization or "",
        "expires_at_ms": expires_at_ms,
        "wrapped_key_sha256": wrapped_key_sha256,
    }
    return Transaction.create(grantor.signer, chain_id, TxKind.GRANT_ACCESS, nonce, fields)


def grant_record(
    grantor: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    record_id: bytes,
    grantee_wrap: bytes,
    grantee_member: bytes | None = None,
    grantee_organization: str | None = None,
    expires_at_ms: int = 0,
) -> Transaction:
    """Consent to one record. The grant carries only the SHA-256 of `grantee_wrap` (the data key
    sealed to the grantee, see `grantee_wrap`); the wrap itself goes to the record's custodians
    off chain, so that erasure can destroy it (`docs/spec/records.md` §9)."""
    return _grant(
        grantor,
        chain_id,
        nonce,
        GrantScope.RECORD,
        record_id,
        grantee_member,
        grantee_organization,
        expires_at_ms,
        hashlib.sha256(grantee_wrap).digest(),
    )


def grantee_wrap(
    grantor: MemberIdentity, own_wrapped_key: bytes, grantee_encryption_key: bytes
) -> bytes:
    """The data key, opened from the grantor's own wrap, sealed to the grantee's X25519 key (a
    member's, or an organisation's)."""
    return rewrap(own_wrapped_key, grantor.encryption_private_key, grantee_encryption_key)


def grant_patient(
    patient: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    patient_id: bytes,
    grantee_member: bytes | None = None,
    grantee_organization: str | None = None,
    expires_at_ms: int = 0,
) -> Transaction:
    """Consent to every record of the patient; no wrapped key (reads use the custody path)."""
    return _grant(
        patient,
        chain_id,
        nonce,
        GrantScope.PATIENT,
        patient_id,
        grantee_member,
        grantee_organization,
        expires_at_ms,
        NO_KEY,
    )


def revoke_access(
    member: MemberIdentity, chain_id: bytes, nonce: int, *, grant_id: bytes
) -> Transaction:
    """Withdraw a grant (its id is the id of the grant transaction)."""
    return Transaction.create(
        member.signer, chain_id, TxKind.REVOKE_ACCESS, nonce, {"grant_id": grant_id}
    )


def access_event(
    reader: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    record_id: bytes,
    action: AccessAction = AccessAction.READ,
    grant_id: bytes = NO_KEY,
) -> Transaction:
    """The reader's own record of a read (the `X-Emrchain-Access-Event` header). With a zero
    `grant_id` the chain finds the basis itself (author, patient, grant, break-glass)."""
    fields = {"record_id": record_id, "action": int(AccessAction(action)), "grant_id": grant_id}
    return Transaction.create(reader.signer, chain_id, TxKind.ACCESS_EVENT, nonce, fields)


def break_glass(
    clinician: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    patient_id: bytes,
    reason: str,
    duration_ms: int,
    record_id: bytes = NO_KEY,
) -> Transaction:
    """Emergency access to a patient's records (or one record) for `duration_ms`, flagged."""
    fields = {
        "patient_id": patient_id,
        "record_id": record_id,
        "reason": reason,
        "duration_ms": duration_ms,
    }
    return Transaction.create(clinician.signer, chain_id, TxKind.BREAK_GLASS, nonce, fields)


def erase_record(
    member: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    record_id: bytes,
    reason: ErasureReason,
) -> Transaction:
    fields = {"record_id": record_id, "reason": int(ErasureReason(reason))}
    return Transaction.create(member.signer, chain_id, TxKind.ERASE_RECORD, nonce, fields)


def erasure_receipt(
    member: MemberIdentity, chain_id: bytes, nonce: int, *, record_id: bytes
) -> Transaction:
    """A custodian organisation's admin confirms its copies of an erased record are gone."""
    fields = {"record_id": record_id}
    return Transaction.create(member.signer, chain_id, TxKind.ERASURE_RECEIPT, nonce, fields)


def validator_update(
    validator: Signer,
    chain_id: bytes,
    nonce: int,
    *,
    validator_key: bytes,
    power: int,
    epoch: int,
    node_key: bytes = bytes(32),
    address: str = "",
) -> Transaction:
    """A current validator's approval of a power change (0 removes); not a member action.

    An addition or power change names the validator's P2P node key and advertised address
    (`host:port`, or "" for none); a removal leaves both at their defaults."""
    fields = {
        "validator_key": validator_key,
        "power": power,
        "epoch": epoch,
        "node_key": node_key,
        "address": address,
    }
    return Transaction.create(validator, chain_id, TxKind.VALIDATOR_UPDATE, nonce, fields)


def register_node(
    admin: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    organization_id: str,
    node: Signer,
    address: str = "",
) -> Transaction:
    """An admin of `organization_id` registers a full node of it (its P2P node key and address).

    `node` is the node's P2P key: it signs the proof of possession (domain NODE_REGISTRATION) that
    binds the key to this chain, this organisation and this address."""
    message = node_registration_message(chain_id, node.public_key, organization_id, address)
    fields = {"node_key": node.public_key, "address": address, "proof": node.sign(message)}
    return Transaction.create(admin.signer, chain_id, TxKind.REGISTER_NODE, nonce, fields)


def remove_node(
    admin: MemberIdentity, chain_id: bytes, nonce: int, *, node_key: bytes
) -> Transaction:
    """An admin removes a full node its organisation registered."""
    fields = {"node_key": node_key}
    return Transaction.create(admin.signer, chain_id, TxKind.REMOVE_NODE, nonce, fields)


def propose_study(
    sponsor: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    study_id: bytes,
    purpose: str,
    query_types: list[QueryType],
    epsilon_total: int,
    delta_total: int,
    participants: list[str],
    expires_at_ms: int,
) -> Transaction:
    """Propose a study (`docs/spec/analytics.md` §1): epsilon in millionths, delta in 10^-12
    units; `participants` in any order (sent ascending)."""
    writer = Writer().u8(len(participants))
    for organization_id in sorted(participants):
        writer.var_bytes(organization_id.encode("ascii"), 1)
    fields = {
        "study_id": study_id,
        "purpose": purpose,
        "query_types": sum(1 << int(QueryType(kind)) for kind in set(query_types)),
        "epsilon_total": epsilon_total,
        "delta_total": delta_total,
        "participants": writer.bytes(),
        "expires_at_ms": expires_at_ms,
    }
    return Transaction.create(sponsor.signer, chain_id, TxKind.PROPOSE_STUDY, nonce, fields)


def approve_study(
    admin: MemberIdentity, chain_id: bytes, nonce: int, *, study_id: bytes
) -> Transaction:
    fields = {"study_id": study_id}
    return Transaction.create(admin.signer, chain_id, TxKind.APPROVE_STUDY, nonce, fields)


def study_query(
    sponsor: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    study_id: bytes,
    query_id: bytes,
    query_type: QueryType,
    measure: str,
    lower_milli: int = 0,
    upper_milli: int = 0,
    bins: int = 0,
    epsilon: int,
    delta: int,
) -> Transaction:
    """Run a query (clamping bounds in thousandths; `bins` for a histogram only)."""
    fields = {
        "study_id": study_id,
        "query_id": query_id,
        "query_type": int(QueryType(query_type)),
        "measure": measure,
        "lower_milli": lower_milli,
        "upper_milli": upper_milli,
        "bins": bins,
        "epsilon": epsilon,
        "delta": delta,
    }
    return Transaction.create(sponsor.signer, chain_id, TxKind.STUDY_QUERY, nonce, fields)


def study_result(
    sponsor: MemberIdentity,
    chain_id: bytes,
    nonce: int,
    *,
    study_id: bytes,
    query_id: bytes,
    result_sha256: bytes,
) -> Transaction:
    fields = {"study_id": study_id, "query_id": query_id, "result_sha256": result_sha256}
    return Transaction.create(sponsor.signer, chain_id, TxKind.STUDY_RESULT, nonce, fields)


def close_study(
    member: MemberIdentity, chain_id: bytes, nonce: int, *, study_id: bytes
) -> Transaction:
    fields = {"study_id": study_id}
    return Transaction.create(member.signer, chain_id, TxKind.CLOSE_STUDY, nonce, fields)


def research_consent(
    patient: MemberIdentity, chain_id: bytes, nonce: int, *, opt_in: bool
) -> Transaction:
    """The patient opts in to (or out of) research use of their records."""
    choice = ResearchChoice.OPT_IN if opt_in else ResearchChoice.OPT_OUT
    fields = {"choice": int(choice)}
    return Transaction.create(patient.signer, chain_id, TxKind.RESEARCH_CONSENT, nonce, fields)
