"""Served implies recorded, step by step, on a real in-process node whose blocks the test commits
itself: the read's reply does not leave the node while its access event is only admitted, and
leaves the moment the block that commits the event is durable (`docs/spec/access-control.md`
§6). On a running devnet the same order is checked end to end (tests/node/test_read_audit.py);
here it is deterministic, because nothing commits until the test says so.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from emrchain.api.signing import HEADER_ACCESS_EVENT, sign_request
from emrchain.client import transactions
from emrchain.client.envelope import new_record_id, open_record, seal_record
from emrchain.client.replies import PATIENT_RECIPIENT
from emrchain.config.homes import ADMIN_IDENTITY_FILE
from emrchain.keystore.member import MemberIdentity, load_member_identity
from emrchain.node.node import Node
from emrchain.rpc.commit_waits import CommitWaits, TxDropped, WaitLimitError, WaitsClosedError
from emrchain.schema import RecordType, Role
from emrchain.state.emr import queries
from emrchain.types import Transaction
from tests.node.in_process import commit_own_block, single_validator_node

PLAINTEXT = b"creatinine 71 umol/L"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with single_validator_node(tmp_path, records={"access_event_timeout_ms": 1_000}) as opened:
        yield opened


def commit(node: Node, *txs: Transaction) -> None:
    """Admit `txs` and commit them in this validator's next block, all with result OK."""
    admissions = node.mempool.admit_batch([tx.encode() for tx in txs])
    assert all(admission.accepted for admission in admissions), admissions
    block = commit_own_block(node)
    results = node.chain.store.tx_results(block.height)
    assert results is not None and [result.code for result in results] == [0] * len(txs)


def signed(node: Node, member: MemberIdentity, method: str, path: str, body: bytes = b"") -> dict:
    now_ms = time.time_ns() // 1_000_000
    node_id = node.node_key.public_key
    return sign_request(member.signer, node.chain_id, node_id, method, path, body, now_ms).as_dict()


async def stored_record(node: Node, client: TestClient) -> tuple[MemberIdentity, bytes]:
    """A clinician of the node's organisation stores and anchors a record; (clinician, id)."""
    admin = load_member_identity(node.config.resolve(ADMIN_IDENTITY_FILE))
    clinician, patient = MemberIdentity.generate(), MemberIdentity.generate()
    patient_id = secrets.token_bytes(32)
    organization = node.config.node.organization_id
    chain_id = node.chain_id
    commit(
        node,
        *(
            transactions.register_identity(
                admin, chain_id, nonce, organization_id=organization, member=member, role=role,
                patient_id=patient,
            )
            for nonce, (member, role, patient) in enumerate(
                [(clinician, Role.CLINICIAN, bytes(32)), (patient, Role.PATIENT, patient_id)],
                start=1,
            )
        ),
    )  # fmt: skip
    assert node.records.organization_key is not None
    sealed = seal_record(
        PLAINTEXT,
        new_record_id(),
        patient_id,
        {
            organization: node.records.organization_key.public_key,
            PATIENT_RECIPIENT: patient.encryption_public_key,
        },
    )
    # Anchored first (the custody set is this one organisation), then its wrap handed over.
    anchor = transactions.anchor_record(
        clinician,
        chain_id,
        1,
        sealed=sealed,
        record_type=RecordType.LAB_RESULT,
        custodians=[organization],
    )
    commit(node, anchor)
    path = (
        f"/records/{sealed.record_id.hex()}/custody?custody_wrap={sealed.wraps[organization].hex()}"
        f"&patient_wrap={sealed.wraps[PATIENT_RECIPIENT].hex()}"
    )
    upload = await client.put(
        path,
        data=sealed.ciphertext,
        headers={
            **signed(node, clinician, "PUT", path, sealed.ciphertext),
            "Content-Type": "application/octet-stream",
        },
    )
    assert upload.status == 200, await upload.text()
    return clinician, sealed.record_id


def test_the_reply_waits_for_the_block_that_commits_the_access_event(node: Node) -> None:
    async def main() -> None:
        async with TestClient(TestServer(node.rpc.app)) as client:
            clinician, record_id = await stored_record(node, client)
            event = transactions.access_event(
                clinician, node.chain_id, 2, record_id=record_id
            )
            path = f"/records/{record_id.hex()}"
            headers = {
                **signed(node, clinician, "GET", path),
                HEADER_ACCESS_EVENT: event.encode().hex(),
            }
            reading = asyncio.create_task(client.get(path, headers=headers))
            while event.tx_id not in node.mempool:  # admitted: the read now waits
                assert not reading.done(), await reading.result().text()
                await asyncio.sleep(0.005)
            for _ in range(20):  # the loop runs freely; nothing is committed, nothing served
                await asyncio.sleep(0.005)
                assert not reading.done(), "the read was served before its event committed"
            assert len(node.commit_waits) == 1
            block = commit_own_block(node)  # the event's block, durable
            reply = await reading
            assert reply.status == 200, await reply.text()
            body = await reply.json()
            assert body["access_event_height"] == block.height
            assert body["access_event_tx_id"] == event.tx_id.hex()
            assert body["via"] == "author"
            recorded = queries.recorded_access(node.store.state_view(), record_id, event.tx_id)
            assert recorded is not None and recorded.basis.label == "author"
            plaintext = open_record(
                base64.b64decode(body["ciphertext"]),
                bytes.fromhex(body["wrapped_key"]),
                clinician.encryption_private_key,
                record_id,
                bytes.fromhex(body["patient_id"]),
            )
            assert plaintext == PLAINTEXT
            assert len(node.commit_waits) == 0  # the waiter is gone with its read

    asyncio.run(main())


def test_a_read_whose_event_is_not_committed_in_time_is_not_served(node: Node) -> None:
    async def main() -> None:
        async with TestClient(TestServer(node.rpc.app)) as client:
            clinician, record_id = await stored_record(node, client)
            event = transactions.access_event(clinician, node.chain_id, 2, record_id=record_id)
            path = f"/records/{record_id.hex()}"
            reply = await client.get(
                path,
                headers={
                    **signed(node, clinician, "GET", path),
                    HEADER_ACCESS_EVENT: event.encode().hex(),
                },
            )
            assert reply.status == 504
            body = await reply.json()
            assert body["error"]["code"] == "access_event_not_committed"
            assert "ciphertext" not in body and "wrapped_key" not in body
            assert len(node.commit_waits) == 0
            # The event may still commit later; then it stays in the trail (over-recording a
            # read that was not served is the safe side).
            commit_own_block(node)
            view = node.store.state_view()
            assert queries.recorded_access(view, record_id, event.tx_id) is not None

    asyncio.run(main())


def test_commit_waits_are_bounded_and_resolved_by_commits_and_drops() -> None:
    async def main() -> None:
        waits = CommitWaits(2)
        first, second = waits.expect(b"\x01" * 32), waits.expect(b"\x02" * 32)
        with pytest.raises(WaitLimitError):
            waits.expect(b"\x03" * 32)
        with pytest.raises(ValueError, match="already waited for"):
            waits.expect(b"\x01" * 32)
        waits.forget(b"\x02" * 32)
        waits.on_dropped([b"\x01" * 32])
        with pytest.raises(TxDropped):
            await first
        assert second.cancelled()  # forgotten above
        waits.forget(b"\x01" * 32)
        assert len(waits) == 0

    asyncio.run(main())


def test_shared_commit_waits_serve_several_waiters_and_close_fails_them_all() -> None:
    async def main() -> None:
        waits = CommitWaits(1, shared=True)  # POST /txs?wait=commit's
        one, other = waits.expect(b"\x01" * 32), waits.expect(b"\x01" * 32)
        assert one is other and len(waits) == 1  # one future, counted once against the bound
        waits.forget(b"\x01" * 32)
        assert not one.cancelled()  # the other request still waits for it
        waits.close()  # the node stops: nobody waits out a timeout
        with pytest.raises(WaitsClosedError):
            await other
        with pytest.raises(WaitsClosedError):
            waits.expect(b"\x02" * 32)
        waits.forget(b"\x01" * 32)
        assert len(waits) == 0

    asyncio.run(main())
