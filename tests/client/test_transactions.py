"""Transaction builders: every kind passes the stateless checks with a valid signature, and the
real EMR application (`ChainBuilder` + `EMR_HANDLERS`) accepts what they build."""

from __future__ import annotations

import hashlib

import pytest

from emrchain import _core
from emrchain.client import transactions
from emrchain.client.envelope import new_record_id, open_record, seal_record, unwrap_data_key
from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import PATIENT_RECIPIENT
from emrchain.crypto.keys import verify_signature
from emrchain.schema import (
    TX_MAX_BYTES_LIMIT,
    AmendmentReason,
    ErasureReason,
    QueryType,
    RecordType,
    ReviewOutcome,
    Role,
    TxKind,
)
from emrchain.state import ResultCode
from emrchain.state.emr import EMR_HANDLERS, GenesisAdmin, GenesisOrganization, rotation_message
from emrchain.types.signing import node_registration_message
from emrchain.types.transaction import Transaction
from tests.state.chain import CHAIN_ID, ChainBuilder, signer


def identity(label: str) -> MemberIdentity:
    return MemberIdentity.from_seed(hashlib.sha256(b"client-tx/" + label.encode()).digest())


ADMIN = identity("admin")
B_ADMIN = identity("b-admin")
CLINICIAN = identity("clinician")
PATIENT = identity("patient")
B_CLINICIAN = identity("b-clinician")
ORG_KEY = identity("org-a").encryption_public_key
PATIENT_ID = hashlib.sha256(b"patient id").digest()
RECORD_ID = hashlib.sha256(b"record id").digest()


def sealed_record():
    recipients = {PATIENT_RECIPIENT: ORG_KEY, "a": ORG_KEY}
    return seal_record(b"glucose 5.4 mmol/l", RECORD_ID, PATIENT_ID, recipients)


def one_of_each() -> dict[TxKind, Transaction]:
    """A transaction of every kind, built with the client builders."""
    chain = CHAIN_ID
    sealed = sealed_record()
    return {
        TxKind.REGISTER_ORGANIZATION: transactions.register_organization(
            ADMIN, chain, 1, organization_id="clinic-c", name="Clinic C", encryption_key=ORG_KEY
        ),
        TxKind.REGISTER_MEMBER: transactions.register_identity(
            ADMIN, chain, 2, organization_id="a", member=CLINICIAN, role=Role.CLINICIAN
        ),
        TxKind.REVOKE_MEMBER: transactions.revoke_member(
            ADMIN, chain, 3, member_key=CLINICIAN.member_key, reason="left"
        ),
        TxKind.ROTATE_KEY: transactions.rotate_key(
            CLINICIAN, chain, 1, new_identity=identity("new")
        ),
        TxKind.ANCHOR_RECORD: transactions.anchor_record(
            CLINICIAN, chain, 2, sealed=sealed, record_type=RecordType.LAB_RESULT, custodians=["a"]
        ),
        TxKind.GRANT_ACCESS: transactions.grant_patient(
            PATIENT, chain, 1, patient_id=PATIENT_ID, grantee_organization="b"
        ),
        TxKind.REVOKE_ACCESS: transactions.revoke_access(PATIENT, chain, 2, grant_id=RECORD_ID),
        TxKind.ACCESS_EVENT: transactions.access_event(PATIENT, chain, 3, record_id=RECORD_ID),
        TxKind.BREAK_GLASS: transactions.break_glass(
            CLINICIAN, chain, 3, patient_id=PATIENT_ID, reason="unconscious", duration_ms=60_000
        ),
        TxKind.ERASE_RECORD: transactions.erase_record(
            PATIENT, chain, 4, record_id=RECORD_ID, reason=ErasureReason.PATIENT_REQUEST
        ),
        TxKind.VALIDATOR_UPDATE: transactions.validator_update(
            signer(0),
            chain,
            1,
            validator_key=B_ADMIN.member_key,
            power=5,
            epoch=1,
            node_key=signer(8).public_key,
            address="validator-b.example:26656",
        ),
        TxKind.REGISTER_NODE: transactions.register_node(
            ADMIN, chain, 5, organization_id="a", node=signer(7), address="10.0.0.7:26656"
        ),
        TxKind.REMOVE_NODE: transactions.remove_node(
            ADMIN, chain, 6, node_key=signer(7).public_key
        ),
        TxKind.ERASURE_RECEIPT: transactions.erasure_receipt(ADMIN, chain, 4, record_id=RECORD_ID),
        TxKind.AMEND_RECORD: transactions.anchor_record(
            CLINICIAN,
            chain,
            5,
            sealed=sealed,
            record_type=RecordType.LAB_RESULT,
            custodians=["a"],
            amendment={
                "supersedes": hashlib.sha256(b"earlier").digest(),
                "reason": AmendmentReason.ADDENDUM,
                "note": "repeat sample",
            },
        ),
        TxKind.CLOSE_REVIEW: transactions.close_review(
            identity("auditor"),
            chain,
            1,
            review_id=RECORD_ID,
            outcome=ReviewOutcome.NEEDS_FOLLOW_UP,
            note="ask the ward",
        ),
        TxKind.PROPOSE_STUDY: transactions.propose_study(
            CLINICIAN,
            chain,
            6,
            study_id=RECORD_ID,
            purpose="HbA1c",
            query_types=[QueryType.COUNT, QueryType.MEAN],
            epsilon_total=1_000_000,
            delta_total=1_000,
            participants=["b", "a"],
            expires_at_ms=1 << 50,
        ),
        TxKind.APPROVE_STUDY: transactions.approve_study(ADMIN, chain, 7, study_id=RECORD_ID),
        TxKind.STUDY_QUERY: transactions.study_query(
            CLINICIAN,
            chain,
            7,
            study_id=RECORD_ID,
            query_id=PATIENT_ID,
            query_type=QueryType.MEAN,
            measure="4548-4",
            upper_milli=15_000,
            epsilon=100_000,
            delta=10,
        ),
        TxKind.STUDY_RESULT: transactions.study_result(
            CLINICIAN, chain, 8, study_id=RECORD_ID, query_id=PATIENT_ID, result_sha256=RECORD_ID
        ),
        TxKind.CLOSE_STUDY: transactions.close_study(CLINICIAN, chain, 9, study_id=RECORD_ID),
        TxKind.RESEARCH_CONSENT: transactions.research_consent(PATIENT, chain, 3, opt_in=True),
    }


def test_a_builder_for_every_kind_passes_stateless_checks_and_signature() -> None:
    built = one_of_each()
    assert set(built) == set(TxKind)  # a new kind without a builder fails here
    raw = [tx.encode() for tx in built.values()]
    verdicts, ids = _core.check_transactions(raw, CHAIN_ID, TX_MAX_BYTES_LIMIT)
    assert list(verdicts) == [_core.Verdict.OK] * len(raw)
    assert ids == [tx.tx_id for tx in built.values()]
    assert _core.verify_transactions(raw, 1) == b"\x01" * len(raw)
    for kind, tx in built.items():
        assert Transaction.decode(tx.encode(), CHAIN_ID).kind == kind


def test_builders_refuse_what_the_schema_forbids() -> None:
    with pytest.raises(_core.TxDecodeError):
        transactions.break_glass(
            CLINICIAN, CHAIN_ID, 1, patient_id=PATIENT_ID, reason="short", duration_ms=1
        )
    with pytest.raises(ValueError, match="exactly one grantee"):
        transactions.grant_patient(PATIENT, CHAIN_ID, 1, patient_id=PATIENT_ID)


def test_rotation_proof_is_the_new_key_signing_the_spec_message() -> None:
    new = identity("rotated")
    tx = transactions.rotate_key(CLINICIAN, CHAIN_ID, 7, new_identity=new)
    proof = tx.fields["proof"]
    message = rotation_message(
        CHAIN_ID, CLINICIAN.member_key, new.member_key, new.encryption_public_key
    )
    assert message[0] == 0x05 and message[2 : 2 + len(CHAIN_ID)] == CHAIN_ID
    assert verify_signature(new.member_key, message, proof)
    # Bound to the chain and to the key it replaces: elsewhere it does not verify.
    other_chain = rotation_message(
        b"other-chain", CLINICIAN.member_key, new.member_key, new.encryption_public_key
    )
    other_member = rotation_message(
        CHAIN_ID, PATIENT.member_key, new.member_key, new.encryption_public_key
    )
    assert not verify_signature(new.member_key, other_chain, proof)
    assert not verify_signature(new.member_key, other_member, proof)
    assert tx.sender == CLINICIAN.member_key and tx.verify_signature()


def test_record_grant_rewraps_the_data_key_for_the_grantee_only() -> None:
    sealed = seal_record(
        b"x-ray report", RECORD_ID, PATIENT_ID, {"patient": PATIENT.encryption_public_key}
    )
    wrapped = transactions.grantee_wrap(
        PATIENT, sealed.wraps["patient"], B_CLINICIAN.encryption_public_key
    )
    tx = transactions.grant_record(
        PATIENT,
        CHAIN_ID,
        1,
        record_id=RECORD_ID,
        grantee_wrap=wrapped,
        grantee_member=B_CLINICIAN.member_key,
    )
    # Only the wrap's digest goes on chain (records.md §9).
    assert tx.fields["wrapped_key_sha256"] == hashlib.sha256(wrapped).digest()
    assert len(wrapped) == 80 and wrapped != sealed.wraps["patient"]
    opened = open_record(
        sealed.ciphertext, wrapped, B_CLINICIAN.encryption_private_key, RECORD_ID, PATIENT_ID
    )
    assert opened == b"x-ray report"
    assert unwrap_data_key(wrapped, B_CLINICIAN.encryption_private_key) == unwrap_data_key(
        sealed.wraps["patient"], PATIENT.encryption_private_key
    )


class Ledger:
    """The real EMR application on an in-memory chain, fed by the client builders."""

    def __init__(self) -> None:
        organizations = [
            GenesisOrganization(
                "a",
                "Hospital A",
                ORG_KEY,
                (GenesisAdmin(ADMIN.member_key, ADMIN.encryption_public_key),),
            ),
            GenesisOrganization(
                "b",
                "Hospital B",
                identity("org-b").encryption_public_key,
                (GenesisAdmin(B_ADMIN.member_key, B_ADMIN.encryption_public_key),),
            ),
        ]
        self.chain = ChainBuilder(handlers=EMR_HANDLERS, organizations=organizations)
        self.nonces: dict[bytes, int] = {}

    def nonce(self, member: MemberIdentity) -> int:
        self.nonces[member.member_key] = self.nonces.get(member.member_key, 0) + 1
        return self.nonces[member.member_key]

    def run(self, *txs: Transaction) -> list[ResultCode]:
        built = self.chain.add_block([tx.encode() for tx in txs])
        return [ResultCode(result.code) for result in built.result.tx_results]


def test_the_emr_application_applies_what_the_builders_make() -> None:
    ledger = Ledger()
    nonce = ledger.nonce
    chain = CHAIN_ID
    auditor = identity("auditor")

    def register(admin: MemberIdentity, org: str, member: MemberIdentity, role: Role, **extra):
        return transactions.register_identity(
            admin, chain, nonce(admin), organization_id=org, member=member, role=role, **extra
        )

    txs = [
        register(ADMIN, "a", CLINICIAN, Role.CLINICIAN),
        register(ADMIN, "a", PATIENT, Role.PATIENT, patient_id=PATIENT_ID),
        register(ADMIN, "a", auditor, Role.AUDITOR),
        register(B_ADMIN, "b", B_CLINICIAN, Role.CLINICIAN),
    ]
    txs.append(
        transactions.register_organization(
            ADMIN, chain, nonce(ADMIN), organization_id="c", name="Clinic C", encryption_key=ORG_KEY
        )
    )
    assert ledger.run(*txs) == [ResultCode.OK] * 5

    recipients = {PATIENT_RECIPIENT: PATIENT.encryption_public_key, "a": ORG_KEY}
    sealed = seal_record(b"lab", new_record_id(), PATIENT_ID, recipients)
    record_id = sealed.record_id
    anchor = transactions.anchor_record(
        CLINICIAN,
        chain,
        nonce(CLINICIAN),
        sealed=sealed,
        record_type=RecordType.LAB_RESULT,
        custodians=["a"],
    )
    assert ledger.run(anchor) == [ResultCode.OK]

    grant = transactions.grant_record(
        PATIENT,
        chain,
        nonce(PATIENT),
        record_id=record_id,
        grantee_wrap=transactions.grantee_wrap(
            PATIENT, sealed.wraps[PATIENT_RECIPIENT], B_CLINICIAN.encryption_public_key
        ),
        grantee_member=B_CLINICIAN.member_key,
    )
    patient_grant = transactions.grant_patient(
        PATIENT, chain, nonce(PATIENT), patient_id=PATIENT_ID, grantee_organization="b"
    )
    read = transactions.access_event(B_CLINICIAN, chain, nonce(B_CLINICIAN), record_id=record_id)
    assert ledger.run(grant, patient_grant, read) == [ResultCode.OK] * 3

    revoke = transactions.revoke_access(PATIENT, chain, nonce(PATIENT), grant_id=grant.tx_id)
    revoke_all = transactions.revoke_access(
        PATIENT, chain, nonce(PATIENT), grant_id=patient_grant.tx_id
    )
    assert ledger.run(revoke, revoke_all) == [ResultCode.OK] * 2
    refused = transactions.access_event(B_CLINICIAN, chain, nonce(B_CLINICIAN), record_id=record_id)
    assert ledger.run(refused) == [ResultCode.ACCESS_DENIED]

    emergency = transactions.break_glass(
        B_CLINICIAN,
        chain,
        nonce(B_CLINICIAN),
        patient_id=PATIENT_ID,
        reason="unconscious in ER",
        duration_ms=60_000,
        record_id=record_id,
    )
    new_clinician = identity("clinician/rotated")
    rotate = transactions.rotate_key(CLINICIAN, chain, nonce(CLINICIAN), new_identity=new_clinician)
    assert ledger.run(emergency, rotate) == [ResultCode.OK] * 2

    erase = transactions.erase_record(
        PATIENT, chain, nonce(PATIENT), record_id=record_id, reason=ErasureReason.PATIENT_REQUEST
    )
    revoke_member = transactions.revoke_member(
        ADMIN, chain, nonce(ADMIN), member_key=auditor.member_key, reason="left the hospital"
    )
    update = transactions.validator_update(
        signer(0),
        chain,
        1,
        validator_key=signer(9).public_key,
        power=3,
        epoch=1,
        node_key=signer(10).public_key,
    )
    assert ledger.run(erase, revoke_member, update) == [ResultCode.OK] * 3
    receipt = transactions.erasure_receipt(ADMIN, chain, nonce(ADMIN), record_id=record_id)
    assert ledger.run(receipt) == [ResultCode.OK]


def test_node_registration_proof_is_the_node_key_signing_the_spec_message() -> None:
    node = signer(7)
    tx = transactions.register_node(
        ADMIN, CHAIN_ID, 5, organization_id="a", node=node, address="10.0.0.7:26656"
    )
    message = node_registration_message(CHAIN_ID, node.public_key, "a", "10.0.0.7:26656")
    expected_body = node.public_key + b"\x01a" + bytes((14,)) + b"10.0.0.7:26656"
    assert message == bytes((7, len(CHAIN_ID))) + CHAIN_ID + expected_body
    assert verify_signature(node.public_key, message, tx.fields["proof"])
    # Bound to the organisation and to the address: for another, the proof does not verify.
    for organization, address in (("b", "10.0.0.7:26656"), ("a", "10.0.0.8:26656")):
        other = node_registration_message(CHAIN_ID, node.public_key, organization, address)
        assert not verify_signature(node.public_key, other, tx.fields["proof"])
