"""Erasure that finishes (issue 24, `docs/spec/records.md` §9) on a real 4-hospital devnet.

A record is kept by a custody set of three organisations. One custodian's node is down when
the patient erases the record: the two others delete their copies and post their receipts at
once; the third does when its node comes back (it learns of the erasure while catching up,
from its durable queue). Then every file of every node's home (chain LevelDB, vault LevelDB,
KEK files, blob store, logs) is scanned for the data key, for every wrap of it the client made
(raw and hex) and for each custodian's KEK-wrapped custody copy: none is left. The same scan
run before the erasure finds them, so it can fail.

A record grant is made first: only its wrap's digest goes on chain, the wrap to every
custodian; the scan looks for it too.

Also: a receipt from a non-custodian, a second receipt from one custodian, and a receipt for
a record that is not erased are refused by the chain.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey, SealedBox

from emrchain.client import transactions
from emrchain.client.envelope import SealedRecord, new_record_id, seal_record
from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import (
    PATIENT_RECIPIENT,
    TransactionRefusedError,
    parse_custody_plan,
)
from emrchain.client.rpc import EmrClient
from emrchain.config.node import load_node_config
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.records.key_rings import open_key_ring
from emrchain.schema import ErasureReason, RecordType, Role, TxKind
from emrchain.state.codes import ResultCode
from emrchain.types.transaction import Transaction
from tests.records.test_custody import set_custody_set_size

pytestmark = pytest.mark.slow

HOSPITALS = 4
NO_PATIENT = bytes(32)
TIMEOUT_S = 120.0
SETTINGS = {"records": {"erasure_retry_initial_ms": 200, "erasure_retry_max_ms": 5_000}}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@dataclass
class ErasureNet:
    devnet: Devnet
    hospitals: list[Hospital]
    clinician: MemberIdentity
    patient: MemberIdentity
    patient_id: bytes
    grantee: MemberIdentity


def start_erasure_net(devnet: Devnet) -> ErasureNet:
    """Start `devnet` with custody sets of three and register the cast: a clinician of
    hospital-0, a patient of hospital-1 and a grantee clinician of hospital-3."""
    set_custody_set_size(devnet, 3)
    devnet.start_all()
    devnet.wait_for_height(1, list(range(HOSPITALS)), timeout_s=TIMEOUT_S)
    hospitals = [
        Hospital.from_home(devnet.rpc_urls[index], devnet.homes[index])
        for index in range(HOSPITALS)
    ]
    clinician, patient = MemberIdentity.generate(), MemberIdentity.generate()
    grantee = MemberIdentity.generate()
    patient_id = secrets.token_bytes(32)
    run(_register(hospitals[0], [(clinician, Role.CLINICIAN, NO_PATIENT)]))
    run(_register(hospitals[1], [(patient, Role.PATIENT, patient_id)]))
    run(_register(hospitals[3], [(grantee, Role.CLINICIAN, NO_PATIENT)]))
    return ErasureNet(devnet, hospitals, clinician, patient, patient_id, grantee)


@pytest.fixture(scope="module")
def erasure_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErasureNet]:
    devnet = Devnet(tmp_path_factory.mktemp("erasure") / "net", HOSPITALS, settings=SETTINGS)
    try:
        yield start_erasure_net(devnet)
    finally:
        devnet.stop_all()


async def put_keeping_the_wraps(net: ErasureNet) -> tuple[SealedRecord, list[str]]:
    """`put_record`'s steps, keeping the sealed record (every wrap) for the scan."""
    record_id = new_record_id()
    async with EmrClient(net.hospitals[0].rpc_url, net.clinician) as client:
        plan = parse_custody_plan(
            await client._request(
                "GET",
                f"/custody-set?record_id={record_id.hex()}&patient_id={net.patient_id.hex()}",
                signed=True,
            ),
            record_id,
            net.patient_id,
        )
        recipients = {PATIENT_RECIPIENT: plan.patient_encryption_key}
        for custodian in plan.custodians:
            recipients[custodian.organization_id] = custodian.custody_key
        sealed = seal_record(
            b"HIV viral load " + secrets.token_bytes(16), record_id, net.patient_id, recipients
        )
        custodians = [custodian.organization_id for custodian in plan.custodians]
        tx = transactions.anchor_record(
            net.clinician,
            await client.chain_id(),
            await client.next_nonce(),
            sealed=sealed,
            record_type=RecordType.LAB_RESULT,
            custodians=custodians,
        )
        await client.submit_and_wait(tx)
        for custodian in plan.custodians:
            await client.hand_custody(sealed, custodian.organization_id, custodian.node_address)
    return sealed, custodians


async def grant_keeping_the_wrap(net: ErasureNet, sealed: SealedRecord) -> bytes:
    """`grant`'s steps for a record grant, keeping the grantee's wrap: only its digest goes on
    chain, the wrap to every custodian."""
    async with EmrClient(net.hospitals[1].rpc_url, net.patient) as patient:
        wrap = transactions.grantee_wrap(
            net.patient, sealed.wraps[PATIENT_RECIPIENT], net.grantee.encryption_public_key
        )
        tx = transactions.grant_record(
            net.patient,
            await patient.chain_id(),
            await patient.next_nonce(),
            record_id=sealed.record_id,
            grantee_wrap=wrap,
            grantee_member=net.grantee.member_key,
        )
        await patient.submit_and_wait(tx)
        await patient.hand_grantee_wrap(sealed.record_id, tx.tx_id, wrap)
    return wrap


def needles(
    net: ErasureNet, sealed: SealedRecord, custodians: list[str], grantee_wrap: bytes
) -> dict[str, bytes]:
    """Every form of the record's key a node could keep: the data key, each wrap (raw and
    hex), each custodian's KEK-wrapped custody copy."""
    data_key = SealedBox(PrivateKey(net.patient.encryption_private_key)).decrypt(
        sealed.wraps[PATIENT_RECIPIENT]
    )
    found = {"data key": data_key, "data key (hex)": data_key.hex().encode()}
    found["grantee wrap"] = grantee_wrap
    found["grantee wrap (hex)"] = grantee_wrap.hex().encode()
    for name, wrap in sealed.wraps.items():
        found[f"wrap for {name}"] = wrap
        found[f"wrap for {name} (hex)"] = wrap.hex().encode()
    for index, hospital in enumerate(net.hospitals):
        if hospital.organization_id in custodians:
            ring = open_key_ring(load_node_config(net.devnet.homes[index]))
            found[f"custody copy at {hospital.organization_id}"] = ring.wrap(
                sealed.record_id, data_key
            ).wrapped_key
    return found


def scan(homes: list[Path], wanted: dict[str, bytes]) -> list[str]:
    """(needle, file) pairs found in any file under the homes."""
    hits = []
    for home in homes:
        for path in home.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            content = path.read_bytes()
            hits += [f"{name} in {path}" for name, needle in wanted.items() if needle in content]
    return hits


async def custody_listing(net: ErasureNet, record_id: bytes) -> dict[str, Any]:
    async with EmrClient(net.hospitals[1].rpc_url, net.patient) as patient:
        return await patient.custody(record_id)


def confirmed(net: ErasureNet, record_id: bytes) -> list[str]:
    listing = run(custody_listing(net, record_id))
    return [item["organization_id"] for item in listing["custodians"] if item["erasure_confirmed"]]


def post_receipt(net: ErasureNet, index: int, record_id: bytes) -> int:
    """Hospital `index`'s admin posts a receipt; the chain's result code."""

    async def scenario() -> int:
        admin = net.hospitals[index].admin
        async with EmrClient(net.hospitals[index].rpc_url, admin) as client:
            tx = Transaction.create(
                admin.signer,
                await client.chain_id(),
                TxKind.ERASURE_RECEIPT,
                await client.next_nonce(),
                {"record_id": record_id},
            )
            try:
                await client.submit_and_wait(tx)
            except TransactionRefusedError as error:
                client.forget_nonce()
                return error.code
            return 0

    return run(scenario())


def test_erasure_finishes_after_a_custodian_returns_and_leaves_no_key(
    erasure_net: ErasureNet,
) -> None:
    net = erasure_net
    devnet = net.devnet
    sealed, custodians = run(put_keeping_the_wraps(net))
    assert custodians[:2] == ["hospital-0", "hospital-1"]
    grantee_wrap = run(grant_keeping_the_wrap(net, sealed))
    wanted = needles(net, sealed, custodians, grantee_wrap)
    before = scan(devnet.homes, wanted)
    # The scan can fail: it finds the custody copies and the grantee's wrap in the vaults.
    assert any("custody copy at" in hit for hit in before), before
    assert any(hit.startswith("grantee wrap in") for hit in before), before
    # A receipt for a record that is not erased is refused.
    assert post_receipt(net, 0, sealed.record_id) == ResultCode.RECORD_NOT_ERASED

    down = [h.organization_id for h in net.hospitals].index(custodians[2])
    devnet.stop(down)
    live = [index for index in range(HOSPITALS) if index != down]

    async def erase() -> None:
        async with EmrClient(net.hospitals[1].rpc_url, net.patient) as patient:
            await patient.erase(sealed.record_id, ErasureReason.PATIENT_REQUEST)

    run(erase())
    devnet.wait_for(
        lambda: confirmed(net, sealed.record_id) == custodians[:2],
        timeout_s=TIMEOUT_S,
        what="the two live custodians' erasure receipts",
    )
    listing = run(custody_listing(net, sealed.record_id))
    assert listing["erased"] and not listing["erasure_complete"]

    devnet.start(down)
    devnet.wait_for(
        lambda: confirmed(net, sealed.record_id) == custodians,
        timeout_s=TIMEOUT_S,
        what="the returning custodian's erasure receipt",
    )
    assert run(custody_listing(net, sealed.record_id))["erasure_complete"]
    # A second receipt from a custodian, and one from a non-custodian, are refused.
    assert post_receipt(net, 0, sealed.record_id) == ResultCode.DUPLICATE_RECEIPT
    outsider = next(
        index
        for index, hospital in enumerate(net.hospitals)
        if hospital.organization_id not in custodians
    )
    assert post_receipt(net, outsider, sealed.record_id) == ResultCode.NOT_A_CUSTODIAN
    assert live  # every node, the returned one included, is scanned
    assert scan(devnet.homes, wanted) == []
