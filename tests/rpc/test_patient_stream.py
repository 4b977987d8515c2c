"""WebSocket /ws/patients/{id} on a real node: the patient follows committed blocks and sees a
clinician's read of their record arrive as an event; strangers are refused."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

import aiohttp
import pytest

from emrchain.api.signing import sign_request
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import RecordType, Role

NO_PATIENT = bytes(32)


def signed_headers(
    identity: MemberIdentity, chain_id: bytes, node_id: bytes, path: str
) -> dict[str, str]:
    now_ms = time.time_ns() // 10**6
    return sign_request(identity.signer, chain_id, node_id, "GET", path, b"", now_ms).as_dict()


async def scenario(url: str, home: Path) -> tuple[list[dict], int]:
    hospital = Hospital.from_home(url, home)
    clinician, patient, stranger = (MemberIdentity.generate() for _ in range(3))
    patient_id = secrets.token_bytes(32)
    await _register(
        hospital,
        [
            (clinician, Role.CLINICIAN, NO_PATIENT),
            (patient, Role.PATIENT, patient_id),
            (stranger, Role.CLINICIAN, NO_PATIENT),
        ],
    )
    async with EmrClient(url, clinician) as author:
        chain_id, node_id = await author.chain_id(), await author.node_id()
        stored = await author.put_record(
            b"hemoglobin 14 g/dL",
            patient_id,
            RecordType.LAB_RESULT
        )
        path = f"/ws/patients/{patient_id.hex()}"
        async with aiohttp.ClientSession() as session:
            refused = await session.get(
                url + path, headers=signed_headers(stranger, chain_id, node_id, path)
            )
            refused_status = refused.status
            async with session.ws_connect(
                url + path, headers=signed_headers(patient, chain_id, node_id, path)
            ) as socket:
                await author.get_record(stored.record_id)  # the read goes on chain
                frames: list[dict] = []
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    message = await asyncio.wait_for(socket.receive(), timeout=30)
                    frames.append(json.loads(message.data))
                    if any(frame["events"] for frame in frames):
                        break
    return frames, refused_status


@pytest.mark.slow
def test_patient_sees_reads_of_their_records_as_they_commit(tmp_path: Path) -> None:
    network = Devnet(tmp_path / "net", 1)
    try:
        network.start_all()
        network.wait_for_height(1, [0], timeout_s=60)
        frames, refused_status = asyncio.run(scenario(network.rpc_urls[0], network.homes[0]))
    finally:
        network.stop_all()
    assert refused_status == 404  # a clinician of the hospital may not follow a patient
    heights = [frame["height"] for frame in frames]
    assert heights == sorted(heights) and len(set(heights)) == len(heights)
    events = [event for frame in frames for event in frame["events"]]
    assert len(events) == 1
    assert events[0]["kind"] == "access" and events[0]["basis"] == "author"
