"""Deterministic synthetic workloads: signed ANCHOR_RECORD transactions for benchmarks and demos.

Everything derives from a seed, so two runs (or two processes) produce identical transactions.
Signing is the client's cost; generate ahead of any measured window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from emrchain import schema
from emrchain.crypto.encryption_keys import derive_member_key_pair
from emrchain.crypto.keys import Ed25519Signer
from emrchain.state.emr.custody import CustodyEntry, encode_custody_entries
from emrchain.types.transaction import Transaction

DEFAULT_CHAIN_ID = b"emrchain-devnet"


def sender_key(seed: int, index: int) -> Ed25519Signer:
    """The `index`-th synthetic sender key of workload `seed`."""
    return Ed25519Signer(hashlib.sha256(b"emrchain-workload/%d/%d" % (seed, index)).digest())


PATIENTS_PER_WORKLOAD = 97


def patient_id(seed: int, patient_index: int) -> bytes:
    return hashlib.sha256(b"patient/%d/%d" % (seed, patient_index)).digest()


def patient_key(seed: int, patient_index: int) -> Ed25519Signer:
    return Ed25519Signer(
        hashlib.sha256(b"emrchain-workload-patient/%d/%d" % (seed, patient_index)).digest()
    )


def _encryption_key(signer: Ed25519Signer) -> bytes:
    return derive_member_key_pair(signer.seed).public_key


def registration_transactions(
    admin: Ed25519Signer,
    organization_id: str,
    *,
    chain_id: bytes = DEFAULT_CHAIN_ID,
    senders: int = 100,
    seed: int = 0,
    first_nonce: int = 1,
) -> list[bytes]:
    """The admin of `organization_id` registers the workload's senders as clinicians and its
    patients, so that the anchors of `anchor_transactions` execute (and are not refused)."""
    members = [
        (sender_key(seed, index), schema.Role.CLINICIAN, bytes(32)) for index in range(senders)
    ] + [
        (patient_key(seed, index), schema.Role.PATIENT, patient_id(seed, index))
        for index in range(PATIENTS_PER_WORKLOAD)
    ]
    return [
        Transaction.create(
            admin,
            chain_id,
            schema.TxKind.REGISTER_MEMBER,
            first_nonce + position,
            {
                "organization_id": organization_id,
                "member_key": key.public_key,
                "encryption_key": _encryption_key(key),
                "role": role,
                "patient_id": patient,
            },
        ).encode()
        for position, (key, role, patient) in enumerate(members)
    ]


WORKLOAD_ORGANIZATION = "hospital-0"
"""The organisation of the workload's senders and patients (node 0's in a devnet)."""


def anchor_fields(
    seed: int, sender_index: int, nonce: int, organization_id: str = WORKLOAD_ORGANIZATION
) -> dict[str, object]:
    """Payload of a realistic anchor: ids and hashes are 32 bytes, the CID is a CIDv1 raw leaf.
    Its custody set is the senders' organisation alone: a chain whose genesis sets no custody
    set size (`docs/spec/records.md` §9) wants exactly that."""
    label = b"%d/%d/%d" % (seed, sender_index, nonce)
    ciphertext_hash = hashlib.sha256(b"ciphertext/" + label).digest()
    custody = ((organization_id, hashlib.sha256(b"wrap/" + label).digest()),)
    return {
        "record_id": hashlib.sha256(b"record/" + label).digest(),
        "patient_id": patient_id(seed, sender_index % PATIENTS_PER_WORKLOAD),
        "ciphertext_sha256": ciphertext_hash,
        # CIDv1, raw codec (0x55), sha2-256 multihash (0x12, 32 bytes): the binary CID form.
        "cid": bytes((0x01, 0x55, 0x12, 0x20)) + ciphertext_hash,
        "record_type": schema.RecordType.LAB_RESULT,
        "size_bytes": 4096 + nonce % 1024,
        "patient_wrap_sha256": hashlib.sha256(b"patient-wrap/" + label).digest(),
        "custody": encode_custody(custody),
    }


def encode_custody(custody: tuple[tuple[str, bytes], ...]) -> bytes:
    return encode_custody_entries(tuple(CustodyEntry(*entry) for entry in custody))


def anchor_transactions(
    count: int,
    *,
    chain_id: bytes = DEFAULT_CHAIN_ID,
    senders: int = 100,
    seed: int = 0,
    first_nonce: int = 1,
) -> list[bytes]:
    """`count` signed anchor transactions, round-robin over `senders`, nonces contiguous per
    sender starting at `first_nonce`."""
    return list(
        iter_anchor_transactions(
            count, chain_id=chain_id, senders=senders, seed=seed, first_nonce=first_nonce
        )
    )


def iter_anchor_transactions(
    count: int,
    *,
    chain_id: bytes = DEFAULT_CHAIN_ID,
    senders: int = 100,
    seed: int = 0,
    first_nonce: int = 1,
) -> Iterator[bytes]:
    if count < 0 or senders < 1:
        raise ValueError("count must be >= 0 and senders >= 1")
    keys = [sender_key(seed, index) for index in range(min(senders, max(count, 1)))]
    for position in range(count):
        index = position % len(keys)
        nonce = first_nonce + position // len(keys)
        yield Transaction.create(
            keys[index],
            chain_id,
            schema.TxKind.ANCHOR_RECORD,
            nonce,
            anchor_fields(seed, index, nonce),
        ).encode()
