"""Custody redundancy (issue 24, `docs/spec/records.md` §9) on a real 4-hospital devnet.

Every node is its own process with its own vault (LevelDB), KEK file and blob store. The
genesis sets a custody set of k = 3. Hospital A's clinician stores records for a patient that
hospital B registered, so every record's set is [A, B, one of C/D by rendezvous hashing].

- Disaster: A's node (the author's) is killed and its home deleted; the patient, a
  record-scope grantee and a patient-scope grantee still read every record, through another
  custodian's node (their clients point at A's dead node and fail over).
- Adversarial: an anchor naming another custodian list is refused by the chain; a wrap whose
  digest is not on chain, a wrap of another key whose digest *is* on chain (a dishonest
  author), and a wrap handed to a non-custodian's node are all refused by the nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from emrchain.client import transactions
from emrchain.client.envelope import new_record_id, seal_record
from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import (
    PATIENT_RECIPIENT,
    BadRequest,
    Conflict,
    StoredRecord,
    TransactionRefusedError,
)
from emrchain.client.rpc import EmrClient
from emrchain.config.node import load_node_config
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.schema import RecordType, Role
from emrchain.state.codes import ResultCode
from emrchain.state.emr.custody import custody_policy

pytestmark = pytest.mark.slow

HOSPITALS = 4
CUSTODY_SET_SIZE = 3
RECORDS = 3
NO_PATIENT = bytes(32)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@dataclass
class CustodyNet:
    devnet: Devnet
    hospitals: list[Hospital]
    clinician: MemberIdentity
    patient: MemberIdentity
    patient_id: bytes
    record_grantee: MemberIdentity
    patient_grantee: MemberIdentity
    records: list[tuple[StoredRecord, bytes]]


def set_custody_set_size(devnet: Devnet, size: int) -> None:
    """The same `emr_params.custody_set_size` in every home's genesis (before any start)."""
    for home in devnet.homes:
        path = load_node_config(home).genesis_path
        document = json.loads(path.read_text())
        document["emr_params"] = {"custody_set_size": size}
        path.write_text(json.dumps(document, indent=2))


async def _store_and_grant(net: CustodyNet) -> None:
    a = net.hospitals[0]
    async with EmrClient(a.rpc_url, net.clinician) as clinician:
        for index in range(RECORDS):
            plaintext = b"ferritin %d ug/L " % (40 + index) + secrets.token_bytes(32)
            stored = await clinician.put_record(plaintext, net.patient_id, RecordType.LAB_RESULT)
            net.records.append((stored, plaintext))
    # The patient reads through its own organisation's node (B, a custodian of every record).
    async with EmrClient(net.hospitals[1].rpc_url, net.patient) as patient:
        await patient.grant(
            record_id=net.records[0][0].record_id,
            grantee_member=net.record_grantee.member_key,
        )
        await patient.grant(
            patient_id=net.patient_id, grantee_member=net.patient_grantee.member_key
        )


@pytest.fixture(scope="module")
def custody_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CustodyNet]:
    devnet = Devnet(tmp_path_factory.mktemp("custody") / "net", HOSPITALS)
    try:
        set_custody_set_size(devnet, CUSTODY_SET_SIZE)
        devnet.start_all()
        devnet.wait_for_height(1, list(range(HOSPITALS)), timeout_s=120)
        hospitals = [
            Hospital.from_home(devnet.rpc_urls[index], devnet.homes[index])
            for index in range(HOSPITALS)
        ]
        clinician, patient = MemberIdentity.generate(), MemberIdentity.generate()
        record_grantee, patient_grantee = MemberIdentity.generate(), MemberIdentity.generate()
        patient_id = secrets.token_bytes(32)
        run(_register(hospitals[0], [(clinician, Role.CLINICIAN, NO_PATIENT)]))
        run(_register(hospitals[1], [(patient, Role.PATIENT, patient_id)]))
        run(_register(hospitals[2], [(record_grantee, Role.CLINICIAN, NO_PATIENT)]))
        run(_register(hospitals[3], [(patient_grantee, Role.CLINICIAN, NO_PATIENT)]))
        net = CustodyNet(
            devnet, hospitals, clinician, patient, patient_id, record_grantee, patient_grantee, []
        )
        run(_store_and_grant(net))
        yield net
    finally:
        devnet.stop_all()


def _expected_set(net: CustodyNet, record_id: bytes) -> list[str]:
    organizations = [hospital.organization_id for hospital in net.hospitals]
    return custody_policy(
        record_id, organizations[0], organizations[1], organizations, CUSTODY_SET_SIZE
    )


def test_every_record_is_kept_by_its_whole_custody_set(custody_net: CustodyNet) -> None:
    net = custody_net
    for stored, _ in net.records:
        expected = _expected_set(net, stored.record_id)
        assert list(stored.custodians) == expected and not stored.custody_failures
        assert expected[:2] == ["hospital-0", "hospital-1"]

    async def custody_listing() -> dict[str, Any]:
        async with EmrClient(net.hospitals[1].rpc_url, net.patient) as patient:
            return await patient.custody(net.records[0][0].record_id)

    listing = run(custody_listing())
    assert [item["organization_id"] for item in listing["custodians"]] == _expected_set(
        net, net.records[0][0].record_id
    )
    assert all(len(item["wrap_sha256"]) == 64 for item in listing["custodians"])


def test_an_anchor_naming_another_custody_set_is_refused(custody_net: CustodyNet) -> None:
    net = custody_net
    a = net.hospitals[0]

    async def anchor(custodians: list[str]) -> int:
        recipients = {PATIENT_RECIPIENT: net.patient.encryption_public_key}
        for hospital in net.hospitals:
            recipients[hospital.organization_id] = hospital.organization_key.public_key
        sealed = seal_record(b"x" * 64, new_record_id(), net.patient_id, recipients)
        async with EmrClient(a.rpc_url, net.clinician) as client:
            tx = transactions.anchor_record(
                net.clinician,
                await client.chain_id(),
                await client.next_nonce(),
                sealed=sealed,
                record_type=RecordType.LAB_RESULT,
                custodians=custodians,
            )
            with pytest.raises(TransactionRefusedError) as refused:
                await client.submit_and_wait(tx)
            client.forget_nonce()
            return refused.value.code

    # Only the author's organisation, and the right organisations in the wrong order.
    assert run(anchor(["hospital-0"])) == ResultCode.CUSTODY_SET_MISMATCH
    record_set = ["hospital-0", "hospital-2", "hospital-1"]
    assert run(anchor(record_set)) == ResultCode.CUSTODY_SET_MISMATCH


def test_wraps_that_do_not_match_the_chain_are_refused(custody_net: CustodyNet) -> None:
    net = custody_net
    stored, _ = net.records[1]
    custodians = _expected_set(net, stored.record_id)
    outsider = next(h for h in net.hospitals if h.organization_id not in custodians)
    b = net.hospitals[1]

    async def hand(url: str, query: str, body: bytes) -> tuple[int, str]:
        async with EmrClient(url, net.clinician) as client:
            try:
                await client._request(
                    "PUT",
                    f"/records/{stored.record_id.hex()}/custody?{query}",
                    body=body,
                    signed=True,
                    headers={"Content-Type": "application/octet-stream"},
                )
            except (BadRequest, Conflict) as error:
                return error.status, error.code
        return 200, "stored"

    # A wrap of another key for the anchored record: its digest is not the anchored one.
    forged = seal_record(
        b"forged", stored.record_id, net.patient_id, {"b": b.organization_key.public_key}
    )
    wrap = forged.wraps["b"].hex()
    assert run(hand(b.rpc_url, f"custody_wrap={wrap}&patient_wrap={wrap}", forged.ciphertext)) == (
        400,
        "bad_custody_wrap",
    )
    # A non-custodian's node keeps nothing.
    assert run(
        hand(outsider.rpc_url, f"custody_wrap={wrap}&patient_wrap={wrap}", forged.ciphertext)
    ) == (409, "not_custodian")


def test_a_wrap_of_a_wrong_key_is_refused_although_its_digest_is_anchored(
    custody_net: CustodyNet,
) -> None:
    """A dishonest author anchors the digest of a wrap of a key that does not open the
    envelope: the custodian opens the wrap, checks the key against the envelope's key
    commitment, and refuses (the record is then kept by no one, which the author's client
    sees at once in `custody_failures`)."""
    net = custody_net
    a = net.hospitals[0]

    async def scenario() -> list[tuple[int, str]]:
        record_id = new_record_id()
        recipients = {PATIENT_RECIPIENT: net.patient.encryption_public_key}
        for hospital in net.hospitals:
            recipients[hospital.organization_id] = hospital.organization_key.public_key
        honest = seal_record(b"the record", record_id, net.patient_id, recipients)
        other = seal_record(b"another key", record_id, net.patient_id, recipients)
        # The anchor binds the honest envelope but the wraps of the other data key.
        mixed = type(honest)(**{**_fields(honest), "wraps": other.wraps})
        async with EmrClient(a.rpc_url, net.clinician) as client:
            tx = transactions.anchor_record(
                net.clinician,
                await client.chain_id(),
                await client.next_nonce(),
                sealed=mixed,
                record_type=RecordType.LAB_RESULT,
                custodians=_expected_set(net, record_id),
            )
            await client.submit_and_wait(tx)  # raises unless the anchor applied
            refusals = []
            for organization_id in _expected_set(net, record_id):
                url = next(h.rpc_url for h in net.hospitals if h.organization_id == organization_id)
                try:
                    await client.hand_custody(mixed, organization_id, url)
                    refusals.append((200, "stored"))
                except BadRequest as error:
                    refusals.append((error.status, error.code))
            return refusals

    assert run(scenario()) == [(400, "bad_custody_wrap")] * CUSTODY_SET_SIZE


def _fields(sealed: Any) -> dict[str, Any]:
    return {name: getattr(sealed, name) for name in sealed.__dataclass_fields__}


def test_the_records_survive_the_loss_of_the_authors_node(custody_net: CustodyNet) -> None:
    """Runs last in this module: it kills node 0 and deletes its home."""
    net = custody_net
    devnet = net.devnet
    devnet.kill(0)
    shutil.rmtree(devnet.homes[0])
    height = max(devnet.height(index) for index in (1, 2, 3))
    devnet.wait_for_height(height + 1, [1, 2, 3], timeout_s=60)
    dead_url = net.hospitals[0].rpc_url
    survivors = tuple(hospital.rpc_url for hospital in net.hospitals[1:])

    async def read_all(reader: MemberIdentity, indexes: list[int]) -> list[bytes]:
        # Pointed at the dead node: the client learns the custodians from another node and
        # tries them in custody order (hospital-0 first, which is gone).
        async with EmrClient(dead_url, reader, fallback_addresses=survivors) as client:
            return [
                (await client.get_record(net.records[index][0].record_id)).plaintext
                for index in indexes
            ]

    everything = list(range(RECORDS))
    plaintexts = [plaintext for _, plaintext in net.records]
    assert run(read_all(net.patient, everything)) == plaintexts
    assert run(read_all(net.patient_grantee, everything)) == plaintexts
    assert run(read_all(net.record_grantee, [0])) == plaintexts[:1]
    digests = {hashlib.sha256(p).hexdigest() for p in plaintexts}
    assert len(digests) == RECORDS
