"""End to end: the demo story on a real 4-validator devnet (separate processes, 127.0.0.1).

Hospital A stores a record, the patient grants hospital B's clinician, who reads the original
plaintext; after revocation B is refused with 404, and the auditor's trail holds exactly the
reads that were served. Everything goes through the client library and the nodes' RPC.
"""

from __future__ import annotations

import hashlib

import pytest

from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import Unauthenticated
from emrchain.client.sync import SyncEmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import LAB_RESULT, run_story

pytestmark = pytest.mark.slow


def test_story_on_a_four_validator_devnet(devnet: Devnet) -> None:
    lines: list[str] = []
    outcome = run_story(devnet, lines.append)

    assert outcome.plaintext_read_by_grantee == LAB_RESULT
    assert outcome.refusal_after_revoke.status == 404
    assert outcome.refusal_after_revoke.code == "not_found"

    events = outcome.trail["events"]
    reads = [(event["actor"], event["basis"], event["grant_id"]) for event in events]
    patient, grantee = outcome.members["patient"].hex(), outcome.members["grantee"].hex()
    # Newest first: B's read under the grant, then the patient's own read (made to re-wrap).
    assert reads == [(grantee, "grant", outcome.grant_id.hex()), (patient, "patient", "00" * 32)]
    assert all(event["kind"] == "access" for event in events)
    assert outcome.trail["total"] == 2  # the refused read left nothing on chain
    assert any("the plaintext equals the original" in line for line in lines)
    assert any("refused: HTTP 404 not_found" in line for line in lines)

    # Every node executed the same history: node 3, no part in the story, lists no grant left,
    # and the trail it serves the auditor is the one node 0 served.
    with SyncEmrClient(devnet.rpc_urls[3], outcome.auditor) as auditor:
        assert auditor.grants(record_id=outcome.record_id)["grants"] == []
        assert auditor.access_events(record_id=outcome.record_id)["events"] == events

    stranger = MemberIdentity.from_seed(hashlib.sha256(b"story stranger").digest())
    with (
        SyncEmrClient(devnet.rpc_urls[1], stranger) as client,
        pytest.raises(Unauthenticated) as refused,
    ):
        client.access_events(patient_id=outcome.patient_id)
    assert refused.value.code == "unknown_key"
