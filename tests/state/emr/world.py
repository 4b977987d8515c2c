"""A small EMR world for tests: two genesis organisations, members of every role, two records.

Everything is built with real signed transactions through the real application (`ChainBuilder`
with the EMR handler table). `World.send` puts transactions in the next block and tracks each
sender's nonce (a transaction consumes its nonce even when a rule refuses it, as on the chain;
only one refused for its nonce, signature or encoding gives it back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from emrchain.crypto.keys import Ed25519Signer
from emrchain.schema import (
    AccessAction,
    ErasureReason,
    GranteeKind,
    GrantScope,
    RecordType,
    Role,
    TxKind,
    codec,
)
from emrchain.state import ResultCode, TxResult
from emrchain.state.emr import (
    EMR_HANDLERS,
    NO_KEY,
    GenesisAdmin,
    GenesisOrganization,
    rotation_message,
)
from emrchain.state.emr.context import transaction_id
from emrchain.state.emr.custody import CustodyEntry, custody_set_for, encode_custody_entries
from emrchain.types.signing import node_registration_message
from tests.state.chain import CHAIN_ID, ChainBuilder, consumes_nonce, signed_tx, signer

HOSPITAL_A = "hospital-a"
HOSPITAL_B = "hospital-b"
WRAPPED_KEY = b"\x07" * 80
WRAPPED_KEY_SHA256 = hashlib.sha256(WRAPPED_KEY).digest()


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def encryption_key(label: str) -> bytes:
    """A stand-in X25519 public key (the chain only stores it)."""
    return digest("x25519/" + label)


@dataclass(frozen=True)
class Actor:
    key: Ed25519Signer
    label: str

    @property
    def public_key(self) -> bytes:
        return self.key.public_key


def actor(label: str) -> Actor:
    return Actor(signer("emr/" + label), label)


A_ADMIN = actor("a-admin")
B_ADMIN = actor("b-admin")
A_CLINICIAN = actor("a-clinician")
A_COLLEAGUE = actor("a-colleague")  # another clinician of hospital-a
A_AUDITOR = actor("a-auditor")
A_NURSE = actor("a-nurse")  # a clinician admins may revoke in the matrix
PATIENT = actor("patient")
OTHER_PATIENT = actor("other-patient")
B_CLINICIAN = actor("b-clinician")
B_AUDITOR = actor("b-auditor")
STRANGER = actor("stranger")  # never registered

PATIENT_ID = digest("patient-id/1")
OTHER_PATIENT_ID = digest("patient-id/2")
RECORD = digest("record/1")  # patient's record, anchored by A_CLINICIAN
OTHER_RECORD = digest("record/2")  # other patient's record, anchored by A_CLINICIAN

ROLE_ACTORS = {
    Role.ADMIN: A_ADMIN,
    Role.CLINICIAN: A_CLINICIAN,
    Role.PATIENT: PATIENT,
    Role.AUDITOR: A_AUDITOR,
}


def genesis_organizations() -> list[GenesisOrganization]:
    return [
        GenesisOrganization(
            HOSPITAL_A,
            "Hospital A",
            encryption_key("org-a"),
            (GenesisAdmin(A_ADMIN.public_key, encryption_key("a-admin")),),
        ),
        GenesisOrganization(
            HOSPITAL_B,
            "Hospital B",
            encryption_key("org-b"),
            (GenesisAdmin(B_ADMIN.public_key, encryption_key("b-admin")),),
        ),
    ]


def member_fields(
    organization_id: str, member: Actor, role: Role, patient_id: bytes = NO_KEY
) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "member_key": member.public_key,
        "encryption_key": encryption_key(member.label),
        "role": role,
        "patient_id": patient_id,
    }


def node_fields(
    node: Ed25519Signer,
    organization_id: str,
    address: str = "",
    *,
    proof_by: Ed25519Signer | None = None,
) -> dict[str, Any]:
    """REGISTER_NODE fields for an admin of `organization_id`, with the proof of possession
    signed by `proof_by` (default: the node key itself)."""
    message = node_registration_message(CHAIN_ID, node.public_key, organization_id, address)
    return {
        "node_key": node.public_key,
        "address": address,
        "proof": (proof_by or node).sign(message),
    }


def anchor_fields(
    record_id: bytes,
    patient_id: bytes = PATIENT_ID,
    author_organization: str = HOSPITAL_A,
    custodians: Sequence[str] | None = None,
) -> dict[str, Any]:
    """`custodians`: the custody list (default: the author's organisation alone, the policy's
    set when k = 1); every entry names the same wrap digest."""
    ciphertext = hashlib.sha256(b"ciphertext/" + record_id).digest()
    wrap = hashlib.sha256(b"wrap/" + record_id).digest()
    named = [author_organization] if custodians is None else custodians
    return {
        "record_id": record_id,
        "patient_id": patient_id,
        "ciphertext_sha256": ciphertext,
        "cid": bytes((0x01, 0x55, 0x12, 0x20)) + ciphertext,
        "record_type": RecordType.LAB_RESULT,
        "size_bytes": 2048,
        "patient_wrap_sha256": hashlib.sha256(b"patient-wrap/" + record_id).digest(),
        "custody": encode_custody_entries(
            tuple(CustodyEntry(organization, wrap) for organization in named)
        ),
    }


def grant_fields(
    target: bytes = RECORD,
    *,
    scope: GrantScope = GrantScope.RECORD,
    member: Actor | None = B_CLINICIAN,
    organization: str = "",
    expires_at_ms: int = 0,
    wrapped_key_sha256: bytes | None = None,
) -> dict[str, Any]:
    if wrapped_key_sha256 is None:
        wrapped_key_sha256 = WRAPPED_KEY_SHA256 if scope == GrantScope.RECORD else NO_KEY
    return {
        "scope": scope,
        "target": target,
        "grantee_kind": GranteeKind.ORGANIZATION if organization else GranteeKind.MEMBER,
        "grantee_member": member.public_key if member is not None else NO_KEY,
        "grantee_organization": organization,
        "expires_at_ms": expires_at_ms,
        "wrapped_key_sha256": wrapped_key_sha256,
    }


def access_fields(record_id: bytes = RECORD, grant_id: bytes = NO_KEY) -> dict[str, Any]:
    return {"record_id": record_id, "action": AccessAction.READ, "grant_id": grant_id}


def break_glass_fields(
    patient_id: bytes = PATIENT_ID,
    record_id: bytes = NO_KEY,
    reason: str = "unconscious patient in the emergency room",
    duration_ms: int = 10_000,
) -> dict[str, Any]:
    return {
        "patient_id": patient_id,
        "record_id": record_id,
        "reason": reason,
        "duration_ms": duration_ms,
    }


def erase_fields(
    record_id: bytes = RECORD, reason: ErasureReason = ErasureReason.PATIENT_REQUEST
) -> dict[str, Any]:
    return {"record_id": record_id, "reason": reason}


class World:
    """The chain plus nonce bookkeeping; `setup()` registers everyone and anchors two records."""

    def __init__(
        self,
        *,
        setup: bool = True,
        anchor_path: bool = True,
        custody_set_size: int | None = None,
    ) -> None:
        """`anchor_path`: run the node's `EmrApplication` with (default) or without its
        compiled ANCHOR_RECORD accept path; `custody_set_size`: the genesis k (None: unset)."""
        self.chain = ChainBuilder(
            handlers=EMR_HANDLERS,
            organizations=genesis_organizations(),
            anchor_path=anchor_path,
            custody_set_size=custody_set_size,
        )
        self.nonces: dict[bytes, int] = {}
        if setup:
            self.setup()

    @property
    def state(self):  # the committed MemoryState
        return self.chain.state

    @property
    def time_ms(self) -> int:
        """The last block's time."""
        return self.chain.block_time_ms(self.chain.height)

    def tx(self, sender: Actor | Ed25519Signer, kind: TxKind, fields: dict[str, Any]) -> bytes:
        key = sender.key if isinstance(sender, Actor) else sender
        nonce = self.nonces.get(key.public_key, 0) + 1
        self.nonces[key.public_key] = nonce
        return signed_tx(key, kind, nonce, fields)

    def block(self, txs: list[bytes]) -> list[TxResult]:
        """Execute `txs` in the next block; only transactions refused before their nonce was
        consumed (nonce, signature or encoding errors) give their nonce back."""
        built = self.chain.add_block(txs)
        for raw, result in zip(txs, built.result.tx_results, strict=True):
            if not consumes_nonce(result.code):
                sender = codec.decode_transaction(raw, CHAIN_ID, 4096).sender
                self.nonces[sender] -= 1
        return list(built.result.tx_results)

    def send(self, sender: Actor | Ed25519Signer, kind: TxKind, fields: dict[str, Any]) -> TxResult:
        """One transaction in its own block."""
        return self.block([self.tx(sender, kind, fields)])[0]

    def send_ok(self, sender: Actor | Ed25519Signer, kind: TxKind, fields: dict[str, Any]) -> bytes:
        """Send, require it to apply, and return its transaction id."""
        raw = self.tx(sender, kind, fields)
        result = self.block([raw])[0]
        assert result.code == ResultCode.OK, result
        return transaction_id(codec.decode_transaction(raw, CHAIN_ID, 4096))

    def idle(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.chain.add_block([])

    def setup(self) -> None:
        register = TxKind.REGISTER_MEMBER
        txs = [
            self.tx(A_ADMIN, register, member_fields(HOSPITAL_A, A_CLINICIAN, Role.CLINICIAN)),
            self.tx(A_ADMIN, register, member_fields(HOSPITAL_A, A_COLLEAGUE, Role.CLINICIAN)),
            self.tx(A_ADMIN, register, member_fields(HOSPITAL_A, A_NURSE, Role.CLINICIAN)),
            self.tx(A_ADMIN, register, member_fields(HOSPITAL_A, A_AUDITOR, Role.AUDITOR)),
            self.tx(
                A_ADMIN, register, member_fields(HOSPITAL_A, PATIENT, Role.PATIENT, PATIENT_ID)
            ),
            self.tx(
                A_ADMIN,
                register,
                member_fields(HOSPITAL_A, OTHER_PATIENT, Role.PATIENT, OTHER_PATIENT_ID),
            ),
            self.tx(B_ADMIN, register, member_fields(HOSPITAL_B, B_CLINICIAN, Role.CLINICIAN)),
            self.tx(B_ADMIN, register, member_fields(HOSPITAL_B, B_AUDITOR, Role.AUDITOR)),
        ]
        assert [result.code for result in self.block(txs)] == [0] * len(txs)
        anchors = [
            self.tx(A_CLINICIAN, TxKind.ANCHOR_RECORD, self.anchor_fields(RECORD)),
            self.tx(
                A_CLINICIAN,
                TxKind.ANCHOR_RECORD,
                self.anchor_fields(OTHER_RECORD, OTHER_PATIENT_ID),
            ),
        ]
        assert [result.code for result in self.block(anchors)] == [0, 0]

    def anchor_fields(
        self,
        record_id: bytes,
        patient_id: bytes = PATIENT_ID,
        author_organization: str = HOSPITAL_A,
    ) -> dict[str, Any]:
        """`anchor_fields` with the custody list the policy gives in the committed state."""
        custodians = custody_set_for(self.state, record_id, author_organization, patient_id)
        return anchor_fields(record_id, patient_id, author_organization, custodians)

    def rotation_fields(
        self, old: Actor, new: Ed25519Signer, *, proof_by: Ed25519Signer | None = None
    ) -> dict[str, Any]:
        """ROTATE_KEY fields with a proof signed by `proof_by` (default: the new key)."""
        new_encryption_key = encryption_key("rotated/" + old.label)
        message = rotation_message(CHAIN_ID, old.public_key, new.public_key, new_encryption_key)
        return {
            "new_member_key": new.public_key,
            "new_encryption_key": new_encryption_key,
            "proof": (proof_by or new).sign(message),
        }
