"""`SyncEmrClient` against a real node: blocking calls on a private loop thread keep the client's
state."""

from __future__ import annotations

import asyncio
import threading

import pytest

from emrchain.client import transactions
from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import NotFound
from emrchain.client.sync import SyncEmrClient
from emrchain.schema import RecordType
from tests.client.conftest import RealNode


def test_blocking_calls_share_one_session_and_nonce_counter(real_node: RealNode) -> None:
    cast = real_node.cast()
    threads_before = threading.active_count()
    with SyncEmrClient(real_node.url, cast.clinician) as client:
        first = client.put_record(
            b"note 1", cast.patient_id, RecordType.CLINICAL_NOTE)
        second = client.put_record(
            b"note 2", cast.patient_id, RecordType.CLINICAL_NOTE)
        assert client.get_record(second.record_id).plaintext == b"note 2"
        # The counter survives between blocking calls: two nonces taken with nothing submitted
        # in between follow each other (a fresh client per call would get the same one twice).
        chain_id = client.chain_id()
        txs = [
            transactions.break_glass(
                cast.clinician,
                chain_id,
                client.next_nonce(),
                patient_id=cast.patient_id,
                reason=f"emergency number {index}",
                duration_ms=60_000,
            )
            for index in range(2)
        ]
        assert [tx.nonce for tx in txs] == [4, 5]  # after two anchors and one read
        assert all(verdict.accepted for verdict in client.submit_batch(txs))
        assert [client.wait_committed(tx.tx_id).result_code for tx in txs] == [0, 0]
    with SyncEmrClient(real_node.url, cast.outsider) as other, pytest.raises(NotFound):
        other.get_record(first.record_id)
    assert threading.active_count() <= threads_before  # every loop thread stopped


def test_usable_from_inside_a_running_event_loop_and_closed_once(real_node: RealNode) -> None:
    member = MemberIdentity.generate()  # /status needs no membership

    async def caller() -> str:
        with SyncEmrClient(real_node.url, member) as client:
            return client.status()["chain_id"]

    assert asyncio.run(caller()) == "emrchain-devnet"
    client = SyncEmrClient(real_node.url, member)
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.status()
