"""Build the canonical-encoding vectors in `types.json` and `transactions.json`.

Run `python -m tests.vectors.generate_types --write` only when the encoding deliberately changes
(a new version); the tests rebuild the same objects and require byte-identical encodings.
Keys are derived from fixed seeds, and Ed25519 signing is deterministic, so output is stable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from emrchain import schema
from emrchain.crypto.keys import Ed25519Signer
from emrchain.state.emr.membership import rotation_message
from emrchain.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    ConflictingProposalEvidence,
    DuplicateVoteEvidence,
    Proposal,
    Transaction,
    TxKind,
    Validator,
    ValidatorSet,
    Vote,
    VoteType,
)
from emrchain.types.block import evidence_root, tx_ids
from emrchain.types.signing import node_registration_message

CHAIN_ID = b"emrchain-vectors"
HERE = Path(__file__).parent


def key(index: int) -> Ed25519Signer:
    return Ed25519Signer(hashlib.sha256(b"emrchain-vector-key-%d" % index).digest())


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def sample_fields() -> dict[TxKind, dict[str, Any]]:
    """One valid payload per kind, touching every field type."""
    return {
        TxKind.REGISTER_ORGANIZATION: {
            "organization_id": "st-mary.hospital",
            "name": "St. Mary's — Cardiología",
            "encryption_key": digest("org-x25519"),
        },
        TxKind.REGISTER_MEMBER: {
            "organization_id": "st-mary.hospital",
            "member_key": key(10).public_key,
            "encryption_key": digest("member-x25519"),
            "role": schema.Role.PATIENT,
            "patient_id": digest("patient-1"),
        },
        TxKind.REVOKE_MEMBER: {"member_key": key(10).public_key, "reason": "left the hospital"},
        TxKind.ROTATE_KEY: {
            "new_member_key": key(11).public_key,
            "new_encryption_key": digest("member-x25519-2"),
            # A proof that verifies: the new key signs the rotation message (encoding.md §2.2)
            # for the vector's sender, key 1, on the vectors' chain.
            "proof": key(11).sign(
                rotation_message(
                    CHAIN_ID, key(1).public_key, key(11).public_key, digest("member-x25519-2")
                )
            ),
        },
        TxKind.ANCHOR_RECORD: {
            "record_id": digest("record-1"),
            "patient_id": digest("patient-1"),
            "ciphertext_sha256": digest("ciphertext-1"),
            "cid": bytes.fromhex("01551220") + digest("ciphertext-1"),
            "record_type": schema.RecordType.LAB_RESULT,
            "size_bytes": 4096,
            "patient_wrap_sha256": digest("patient-wrap-1"),
            # One custodian, "city-clinic", and the SHA-256 of its wrap (records.md §9).
            "custody": b"\x01\x0bcity-clinic" + digest("custody-wrap-1"),
        },
        TxKind.GRANT_ACCESS: {
            "scope": schema.GrantScope.RECORD,
            "target": digest("record-1"),
            "grantee_kind": schema.GranteeKind.ORGANIZATION,
            "grantee_member": bytes(32),
            "grantee_organization": "city-clinic",
            "expires_at_ms": 1_800_000_000_000,
            "wrapped_key_sha256": hashlib.sha256(bytes(range(80))).digest(),
        },
        TxKind.REVOKE_ACCESS: {"grant_id": digest("grant-1")},
        TxKind.ACCESS_EVENT: {
            "record_id": digest("record-1"),
            "action": schema.AccessAction.READ,
            "grant_id": digest("grant-1"),
        },
        TxKind.BREAK_GLASS: {
            "patient_id": digest("patient-1"),
            "record_id": bytes(32),
            "reason": "unconscious patient in the emergency room",
            "duration_ms": 3_600_000,
        },
        TxKind.ERASE_RECORD: {
            "record_id": digest("record-1"),
            "reason": schema.ErasureReason.PATIENT_REQUEST,
        },
        TxKind.VALIDATOR_UPDATE: {
            "validator_key": key(20).public_key,
            "power": 10,
            "epoch": 1,
            "node_key": key(21).public_key,
            "address": "validator-20.example:26656",
        },
        TxKind.REGISTER_NODE: {
            "node_key": key(22).public_key,
            "address": "10.0.0.22:26656",
            # A proof that verifies: the node key signs chain, organisation, key and address
            # (encoding.md §2.3).
            "proof": key(22).sign(
                node_registration_message(
                    CHAIN_ID, key(22).public_key, "st-mary.hospital", "10.0.0.22:26656"
                )
            ),
        },
        TxKind.REMOVE_NODE: {"node_key": key(22).public_key},
        TxKind.ERASURE_RECEIPT: {"record_id": digest("record-1")},
        TxKind.AMEND_RECORD: {
            "record_id": digest("record-2"),
            "patient_id": digest("patient-1"),
            "ciphertext_sha256": digest("ciphertext-2"),
            "cid": bytes.fromhex("01551220") + digest("ciphertext-2"),
            "record_type": schema.RecordType.LAB_RESULT,
            "size_bytes": 4096,
            "patient_wrap_sha256": digest("patient-wrap-2"),
            "custody": b"\x01\x0bcity-clinic" + digest("custody-wrap-2"),
            "supersedes": digest("record-1"),
            "reason": schema.AmendmentReason.CORRECTION,
            "note": "potassium 4.1, not 41",
        },
        TxKind.CLOSE_REVIEW: {
            "review_id": digest("break-glass-1"),
            "outcome": schema.ReviewOutcome.JUSTIFIED,
            "note": "cardiac arrest on arrival; access matched the emergency",
        },
        TxKind.PROPOSE_STUDY: {
            "study_id": digest("study-1"),
            "purpose": "HbA1c in type 2 diabetes across the consortium",
            "query_types": 0b11110,
            "epsilon_total": 2_000_000,
            "delta_total": 1_000_000,
            "participants": b"\x02\x0bcity-clinic\x10st-mary.hospital",
            "expires_at_ms": 1_900_000_000_000,
        },
        TxKind.APPROVE_STUDY: {"study_id": digest("study-1")},
        TxKind.STUDY_QUERY: {
            "study_id": digest("study-1"),
            "query_id": digest("query-1"),
            "query_type": schema.QueryType.HISTOGRAM,
            "measure": "4548-4",
            "lower_milli": 4_000,
            "upper_milli": 14_000,
            "bins": 10,
            "epsilon": 500_000,
            "delta": 100_000,
        },
        TxKind.STUDY_RESULT: {
            "study_id": digest("study-1"),
            "query_id": digest("query-1"),
            "result_sha256": digest("result-1"),
        },
        TxKind.CLOSE_STUDY: {"study_id": digest("study-1")},
        TxKind.RESEARCH_CONSENT: {"choice": schema.ResearchChoice.OPT_IN},
    }


def transactions() -> dict[str, Transaction]:
    signer = key(1)
    return {
        kind.name.lower(): Transaction.create(signer, CHAIN_ID, kind, 1000 + int(kind), fields)
        for kind, fields in sample_fields().items()
    }


def structures() -> dict[str, Any]:
    """Named instances of every consensus structure."""
    validator_set = ValidatorSet([Validator(key(i).public_key, 10 + i) for i in range(4)])
    block_one_id = digest("block-1")
    precommits = [
        Vote.create(key(i), CHAIN_ID, VoteType.PRECOMMIT, 1, 0, block_one_id) for i in range(3)
    ]
    commit = CommitCertificate.from_precommits(precommits)
    evidence = DuplicateVoteEvidence.from_votes(
        Vote.create(key(2), CHAIN_ID, VoteType.PREVOTE, 2, 1, digest("a")),
        Vote.create(key(2), CHAIN_ID, VoteType.PREVOTE, 2, 1, digest("b")),
    )
    conflicting = ConflictingProposalEvidence.from_proposals(
        Proposal.create(key(1), CHAIN_ID, 2, 0, -1, digest("c")),
        Proposal.create(key(1), CHAIN_ID, 2, 0, -1, digest("d")),
    )
    txs = tuple(tx.encode() for tx in transactions().values())
    header = BlockHeader(
        chain_id=CHAIN_ID,
        height=2,
        time_ms=1_764_000_000_000,
        previous_block_id=block_one_id,
        last_commit_hash=commit.hash,
        tx_root=_merkle_root(tx_ids(txs)),
        tx_count=len(txs),
        app_hash=digest("app-state"),
        validators_hash=validator_set.hash,
        next_validators_hash=validator_set.hash,
        evidence_hash=evidence_root((evidence,)),
        proposer=key(0).public_key,
    )
    return {
        "validator": Validator(key(0).public_key, 10),
        "validator_set": validator_set,
        "prevote": Vote.create(key(0), CHAIN_ID, VoteType.PREVOTE, 7, 2, digest("block-7")),
        "precommit_nil": Vote.create(key(1), CHAIN_ID, VoteType.PRECOMMIT, 7, 3, bytes(32)),
        "proposal": Proposal.create(key(0), CHAIN_ID, 7, 2, 1, digest("block-7")),
        "commit": commit,
        "evidence": evidence,
        "header": header,
        "block": Block(header, txs, commit, (evidence,)),
        # Both kinds in one block (added with the second kind; the vectors above are unchanged).
        "conflicting_proposals": conflicting,
        "block_with_both_evidence_kinds": Block(
            dataclasses.replace(header, evidence_hash=evidence_root((evidence, conflicting))),
            txs,
            commit,
            (evidence, conflicting),
        ),
    }


def _merkle_root(leaves: list[bytes]) -> bytes:
    from emrchain import _core

    return _core.merkle_root(leaves)


def build() -> tuple[dict[str, Any], dict[str, Any]]:
    types_vectors = {}
    for name, value in structures().items():
        entry: dict[str, Any] = {"hex": value.encode().hex()}
        for attribute in ("hash", "block_id"):
            if hasattr(type(value), attribute):
                entry[attribute] = getattr(value, attribute).hex()
        types_vectors[name] = entry
    tx_vectors = {
        "chain_id": CHAIN_ID.decode(),
        "sender_seed": key(1).seed.hex(),
        "transactions": {
            name: {"kind": int(tx.kind), "hex": tx.encode().hex(), "tx_id": tx.tx_id.hex()}
            for name, tx in transactions().items()
        },
    }
    return types_vectors, tx_vectors


def main() -> None:
    types_vectors, tx_vectors = build()
    if "--write" not in sys.argv:
        print(json.dumps({"types": types_vectors, "transactions": tx_vectors}, indent=2))
        return
    (HERE / "types.json").write_text(json.dumps(types_vectors, indent=2) + "\n")
    (HERE / "transactions.json").write_text(json.dumps(tx_vectors, indent=2) + "\n")


if __name__ == "__main__":
    main()
