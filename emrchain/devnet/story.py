"""The demo story: two hospitals, a patient's consent, a cross-hospital read, revocation, audit.

`run_story(devnet_or_nodes, output)` plays it on a running devnet using only the client library
(`EmrClient`); every step is printed through `output`. The nodes' homes are read only for the
keys `emrchain testnet` put there for demos: each node's organisation (`hospital-<i>`) with its
X25519 custody key pair (`[keys] organization_key_file`) and its first admin's identity
(`config/admin_key.json`).

1. hospital A's admin (node 0) registers a clinician, a patient and an auditor; hospital B's
   admin (node 1) registers a clinician of B;
2. A's clinician seals a lab result in the client and stores it through node 0 (ciphertext and a
   custody wrap for A's organisation key), then anchors it;
3. the patient grants B's clinician access to that record: the client reads the record to open
   the patient's own wrap of its key and re-wraps the key for B's clinician;
4. B's clinician reads it through node 0 (which holds the ciphertext: devnet blob stores are
   local to each node) and gets the original plaintext, once its access event is committed;
5. the patient revokes the grant; B's clinician is refused (HTTP 404: a record one may not
   read answers as one that does not exist);
6. A's auditor lists the record's access trail: the patient's read and B's read, nothing else.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from emrchain.client import transactions
from emrchain.client.identity import (
    MemberIdentity,
    OrganizationKey,
    OrganizationPublicKey,
    load_identity,
    load_organization_public_key,
)
from emrchain.client.replies import NotFound
from emrchain.client.rpc import EmrClient
from emrchain.config.homes import ADMIN_IDENTITY_FILE
from emrchain.config.node import load_node_config
from emrchain.schema import RecordType, Role

LAB_RESULT = b"Lab result 2026-11-24: HbA1c 6.1 %, fasting glucose 5.9 mmol/l, eGFR 88"
STORY_TIMEOUT_S = 60.0
"""Each commit the story waits for; a devnet commits in well under a second."""


class DevnetLike(Protocol):
    homes: list[Path]
    rpc_urls: list[str]


@dataclass(frozen=True, slots=True)
class Hospital:
    """One devnet node as the story uses it: its RPC, organisation and first admin."""

    rpc_url: str
    organization_id: str
    organization_key: OrganizationKey | OrganizationPublicKey
    """Only its public key is used: the home's file may be sealed under the HSM KEK."""
    admin: MemberIdentity

    @classmethod
    def from_home(cls, rpc_url: str, home: Path) -> Hospital:
        config = load_node_config(home)
        organization_key = load_organization_public_key(config.organization_key_path)
        admin = load_identity(config.resolve(ADMIN_IDENTITY_FILE))
        return cls(rpc_url, organization_key.organization_id, organization_key, admin)


@dataclass(frozen=True, slots=True)
class StoryOutcome:
    """What happened, for callers that check the story (the end-to-end test)."""

    record_id: bytes
    patient_id: bytes
    grant_id: bytes
    plaintext_read_by_grantee: bytes
    refusal_after_revoke: NotFound
    trail: dict[str, Any]
    members: dict[str, bytes]
    """Role name → member key of everyone the story registered."""
    auditor: MemberIdentity = field(repr=False)
    """The auditor's identity, so a caller can check the trail on other nodes."""


def run_story(
    devnet_or_nodes: DevnetLike | Sequence[tuple[str, Path]],
    output: Callable[[str], object] = print,
) -> StoryOutcome:
    """Play the story on a running devnet (or on `(rpc_url, home)` pairs, at least two)."""
    if isinstance(devnet_or_nodes, Sequence):
        pairs = list(devnet_or_nodes)
    else:
        pairs = list(zip(devnet_or_nodes.rpc_urls, devnet_or_nodes.homes, strict=True))
    if len(pairs) < 2:
        raise ValueError("the story needs two hospitals: at least two nodes")
    hospitals = [Hospital.from_home(url, Path(home)) for url, home in pairs[:2]]
    return asyncio.run(_story(hospitals[0], hospitals[1], output))


def _short(value: bytes) -> str:
    return value.hex()[:12]


async def _register(hospital: Hospital, members: list[tuple[MemberIdentity, Role, bytes]]) -> None:
    """The hospital's admin registers `members` back to back, then waits for every commit."""
    async with EmrClient(hospital.rpc_url, hospital.admin) as admin:
        chain_id = await admin.chain_id()
        txs = [
            transactions.register_identity(
                hospital.admin,
                chain_id,
                await admin.next_nonce(),
                organization_id=hospital.organization_id,
                member=member,
                role=role,
                patient_id=patient_id,
            )
            for member, role, patient_id in members
        ]
        for tx, verdict in zip(txs, await admin.submit_batch(txs), strict=True):
            if not verdict.accepted:
                raise RuntimeError(f"registration refused: {verdict.code}: {verdict.reason}")
            await admin.wait_committed(tx.tx_id, STORY_TIMEOUT_S)


async def _story(a: Hospital, b: Hospital, output: Callable[[str], object]) -> StoryOutcome:
    clinician, patient, auditor = (MemberIdentity.generate() for _ in range(3))
    b_clinician = MemberIdentity.generate()
    patient_id = secrets.token_bytes(32)  # a pseudonym chosen off chain
    no_patient = transactions.NO_KEY

    output(f"1. {a.organization_id} admin registers a clinician, a patient and an auditor")
    await _register(
        a,
        [
            (clinician, Role.CLINICIAN, no_patient),
            (patient, Role.PATIENT, patient_id),
            (auditor, Role.AUDITOR, no_patient),
        ],
    )
    output(
        f"   clinician {_short(clinician.member_key)}, patient {_short(patient.member_key)}"
        f" (patient id {_short(patient_id)}), auditor {_short(auditor.member_key)}"
    )
    output(f"   {b.organization_id} admin registers a clinician of {b.organization_id}")
    await _register(b, [(b_clinician, Role.CLINICIAN, no_patient)])
    output(f"   clinician {_short(b_clinician.member_key)}")

    output(f"2. the clinician stores a lab result for the patient through {a.rpc_url}")
    async with EmrClient(a.rpc_url, clinician) as client:
        stored = await client.put_record(
            LAB_RESULT, patient_id, RecordType.LAB_RESULT
        )
    record_id = stored.record_id
    output(
        f"   record {_short(record_id)} sealed in the client, {stored.size_bytes} bytes of"
        f" ciphertext at {stored.cid_text[:20]}..., anchored at height {stored.height}"
    )

    async with (
        EmrClient(a.rpc_url, patient) as patient_client,
        EmrClient(a.rpc_url, b_clinician) as b_client,
    ):
        output(f"3. the patient grants {b.organization_id}'s clinician access to the record")
        grant = await patient_client.grant(
            record_id=record_id, grantee_member=b_clinician.member_key
        )
        output(
            f"   grant {_short(grant.tx_id)} at height {grant.height}"
            " (the patient's client read the record, an audited read, to open its own wrap"
            " of the data key and re-wrap it for the grantee)"
        )

        output(f"4. {b.organization_id}'s clinician reads the record")
        read = await b_client.get_record(record_id)
        matches = "equals" if read.plaintext == LAB_RESULT else "DIFFERS FROM"
        output(
            f"   decrypted {len(read.plaintext)} bytes; the plaintext {matches} the original;"
            f" served once its access event {_short(read.access_event_tx_id)} was committed"
            f" at height {read.access_event_height}"
        )

        output("5. the patient revokes the grant")
        revoked = await patient_client.revoke(grant.tx_id)
        output(f"   revoked at height {revoked.height}")
        try:
            await b_client.get_record(record_id)
        except NotFound as refusal:
            denied = refusal
        else:
            raise RuntimeError("the grantee could still read the record after revocation")
        output(f"   {b.organization_id}'s clinician is refused: HTTP {denied.status} {denied.code}")

    output(f"6. the {a.organization_id} auditor lists the record's access trail")
    async with EmrClient(a.rpc_url, auditor) as audit_client:
        trail = await audit_client.access_events(record_id=record_id)
    names = {
        clinician.member_key.hex(): "clinician",
        patient.member_key.hex(): "patient",
        b_clinician.member_key.hex(): f"clinician of {b.organization_id}",
    }
    for event in reversed(trail["events"]):  # oldest first reads as a story
        actor = str(event.get("actor", ""))
        who = names.get(actor, actor[:12])
        output(
            f"   height {event.get('height')}: {event.get('kind')} by {who}"
            f" ({event.get('actor_organization')}), basis {event.get('basis')}"
        )
    output(f"   {trail.get('total')} event(s) in total; the refused read left none")
    return StoryOutcome(
        record_id=record_id,
        patient_id=patient_id,
        grant_id=grant.tx_id,
        plaintext_read_by_grantee=read.plaintext,
        refusal_after_revoke=denied,
        trail=trail,
        members={
            "clinician": clinician.member_key,
            "patient": patient.member_key,
            "auditor": auditor.member_key,
            "grantee": b_clinician.member_key,
        },
        auditor=auditor,
    )
