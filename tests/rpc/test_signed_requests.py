"""Signed requests on real node processes (issue 15 §5): bound to the node they were sent to,
not replayable after a restart, repeated headers refused, the path signed as sent, the body
checked against its signed hash, refusals before the body is sent, one throttled log line per
malformed request, and no internal address in a storage 503."""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
import yarl
from multidict import CIMultiDict

from emrchain.api.signing import (
    HEADER_ACCESS_EVENT,
    HEADER_CONTENT_SHA256,
    HEADER_SIGNATURE,
    sign_request,
)
from emrchain.client import transactions
from emrchain.client.envelope import new_record_id, seal_record
from emrchain.client.replies import CustodyFailedError
from emrchain.client.rpc import EXPECT_CONTINUE_BYTES, EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import RecordType, Role
from tests.rpc.bounded import run

NO_PATIENT = transactions.NO_KEY
SKEW_MS = 30_000


@dataclass(frozen=True, slots=True)
class Members:
    hospital: Hospital
    patient: MemberIdentity
    patient_id: bytes
    clinician: MemberIdentity


def register_members(devnet: Devnet) -> Members:
    hospital = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
    patient, clinician = MemberIdentity.generate(), MemberIdentity.generate()
    patient_id = secrets.token_bytes(32)
    run(
        _register(
            hospital,
            [(patient, Role.PATIENT, patient_id), (clinician, Role.CLINICIAN, NO_PATIENT)],
        )
    )
    return Members(hospital, patient, patient_id, clinician)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Devnet, Members]]:
    devnet = Devnet(tmp_path_factory.mktemp("signed") / "net", 1)
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        yield devnet, register_members(devnet)
    finally:
        devnet.stop_all()


async def identity_of(url: str, member: MemberIdentity) -> tuple[bytes, bytes]:
    async with EmrClient(url, member) as client:
        return await client.chain_id(), await client.node_id()


def signed(
    member: MemberIdentity,
    chain_id: bytes,
    node_id: bytes,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    skew_ms: int = 0,
) -> dict[str, str]:
    now_ms = time.time_ns() // 1_000_000 + skew_ms
    return sign_request(member.signer, chain_id, node_id, method, path, body, now_ms).as_dict()


async def answer(url: str, path: str, headers: object, method: str = "GET") -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, yarl.URL(url + path, encoded=True), headers=headers) as response,
    ):
        document = await response.json()
        return response.status, document["error"]["code"] if response.status >= 400 else "ok"


def test_a_request_signed_for_one_node_is_refused_by_another(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with Devnet(tmp_path_factory.mktemp("two") / "net", 2) as devnet:
        devnet.start_all()
        devnet.wait_for_height(1, [0, 1], timeout_s=60)
        members = register_members(devnet)
        devnet.wait_for_height(devnet.height(0), [1], timeout_s=60)
        first, second = devnet.rpc_urls
        path = f"/patients/{members.patient_id.hex()}/grants"

        async def scenario() -> list[tuple[int, str]]:
            chain_id, first_id = await identity_of(first, members.patient)
            _, second_id = await identity_of(second, members.patient)
            assert first_id != second_id
            for_first = signed(members.patient, chain_id, first_id, path)
            return [
                await answer(second, path, for_first),  # replayed on the other node
                await answer(first, path, for_first),
                await answer(second, path, signed(members.patient, chain_id, second_id, path)),
            ]

        assert run(scenario()) == [(401, "bad_signature"), (200, "ok"), (200, "ok")]


def test_a_request_accepted_before_a_restart_is_refused_after_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A node of its own: the clock-ahead request moves its replay horizon 20 s ahead.
    with Devnet(tmp_path_factory.mktemp("restart") / "net", 1) as devnet:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        members = register_members(devnet)
        url = devnet.rpc_urls[0]
        path = f"/patients/{members.patient_id.hex()}/grants"
        chain_id, node_id = run(identity_of(url, members.patient))
        on_time = signed(members.patient, chain_id, node_id, path)
        # From a client whose clock runs 20 s ahead: refusing only requests signed before the
        # restart would let this one through again.
        ahead = signed(members.patient, chain_id, node_id, path, skew_ms=20_000)

        async def both() -> list[tuple[int, str]]:
            return [await answer(url, path, on_time), await answer(url, path, ahead)]

        assert run(both()) == [(200, "ok"), (200, "ok")]
        devnet.kill(0)  # kill -9: the replay cache in memory is gone
        devnet.start(0)
        devnet.wait_for(lambda: devnet.try_status(0) is not None, 60, "the node to restart")
        assert run(both()) == [(401, "stale_request"), (401, "stale_request")]
        # Signed past the horizon (the newest accepted timestamp + 1 s): accepted.
        fresh = signed(members.patient, chain_id, node_id, path, skew_ms=21_500)
        assert run(answer(url, path, fresh)) == (200, "ok")


@pytest.mark.parametrize("repeated", [HEADER_SIGNATURE, HEADER_ACCESS_EVENT])
def test_a_repeated_signature_header_is_refused(
    single: tuple[Devnet, Members], repeated: str
) -> None:
    devnet, members = single
    url = devnet.rpc_urls[0]
    path = f"/patients/{members.patient_id.hex()}/grants"
    chain_id, node_id = run(identity_of(url, members.patient))
    headers = CIMultiDict(signed(members.patient, chain_id, node_id, path))
    headers.add(repeated, "00" * 64)  # first wins, or last? neither: refused
    if repeated == HEADER_ACCESS_EVENT:
        headers.add(repeated, "11" * 64)
    assert run(answer(url, path, headers)) == (400, "duplicate_header")


def test_the_signature_covers_the_path_as_sent(single: tuple[Devnet, Members]) -> None:
    """aiohttp's `path_qs` is the request target as sent, percent-encoding untouched."""
    devnet, members = single
    url = devnet.rpc_urls[0]
    sent = f"/patients/{members.patient_id.hex()}/access-events?limit=%35"  # limit=5
    decoded = sent.replace("%35", "5")
    chain_id, node_id = run(identity_of(url, members.patient))

    async def scenario() -> list[tuple[int, str]]:
        return [
            await answer(url, sent, signed(members.patient, chain_id, node_id, sent)),
            await answer(url, sent, signed(members.patient, chain_id, node_id, decoded)),
        ]

    assert run(scenario()) == [(200, "ok"), (401, "bad_signature")]


def upload_path(record_id: bytes, patient_wrap: bytes, custody_wrap: bytes) -> str:
    """Where a client hands a custodian its wrap of an anchored record (records.md §9)."""
    query = f"custody_wrap={custody_wrap.hex()}&patient_wrap={patient_wrap.hex()}"
    return f"/records/{record_id.hex()}/custody?{query}"


def test_an_upload_is_checked_against_its_signed_body_hash(
    single: tuple[Devnet, Members],
) -> None:
    devnet, members = single
    url = devnet.rpc_urls[0]
    custody_key = members.hospital.organization_key.public_key
    chain_id, node_id = run(identity_of(url, members.clinician))
    sealed = seal_record(b"x" * 1_000, new_record_id(), members.patient_id, {"c": custody_key})
    path = upload_path(sealed.record_id, sealed.wraps["c"], sealed.wraps["c"])
    headers = signed(
        members.clinician, chain_id, node_id, path, method="PUT", body=sealed.ciphertext
    )

    async def scenario() -> tuple[tuple[int, str], int]:
        async with aiohttp.ClientSession() as session:
            swapped = sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 1])
            async with session.put(
                yarl.URL(url + path, encoded=True), data=swapped, headers=headers
            ) as response:
                refused = (response.status, (await response.json())["error"]["code"])
        # A record past EXPECT_CONTINUE_BYTES goes out after the node's 100 Continue.
        async with EmrClient(url, members.clinician) as client:
            stored = await client.put_record(
                b"y" * (2 * EXPECT_CONTINUE_BYTES),
                members.patient_id,
                RecordType.LAB_RESULT,
            )
        return refused, stored.size_bytes

    refused, size = run(scenario())
    assert refused == (401, "body_mismatch")
    assert size > 2 * EXPECT_CONTINUE_BYTES


def raw_exchange(port: int, head: bytes) -> bytes:
    """Send only `head` (no body) and return everything the node answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        chunks = []
        while chunk := connection.recv(65_536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_refused_upload_is_answered_before_its_body_is_sent(
    single: tuple[Devnet, Members],
) -> None:
    """`Expect: 100-continue`: a refusal is the first and only answer; the body (64 MiB
    declared) is never sent, and the node closes the connection."""
    devnet, members = single
    url = devnet.rpc_urls[0]
    port = int(url.rsplit(":", 1)[1])
    chain_id, _ = run(identity_of(url, members.clinician))
    path = upload_path(secrets.token_bytes(32), bytes(80), bytes(80))
    body_sha256 = hashlib.sha256(b"a body of 64 MiB that is never sent").hexdigest()
    headers = signed(members.clinician, chain_id, b"\x01" * 32, path, method="PUT")
    headers[HEADER_CONTENT_SHA256] = body_sha256
    lines = [f"PUT {path} HTTP/1.1", "Host: node", "Expect: 100-continue"]
    lines += [f"Content-Length: {64 * 1024 * 1024}", *(f"{k}: {v}" for k, v in headers.items())]
    started = time.monotonic()
    reply = raw_exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode())
    assert time.monotonic() - started < 5
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401") and b"100 Continue" not in reply
    assert b"Connection: close" in head
    assert json.loads(body)["error"]["code"] == "bad_signature"


def test_malformed_requests_are_logged_once_without_a_traceback(
    single: tuple[Devnet, Members],
) -> None:
    devnet, _ = single
    port = int(devnet.rpc_urls[0].rsplit(":", 1)[1])
    log = devnet.log_path(0)
    before = len(log.read_bytes())
    malformed = b"GET /status HTTP/1.1\r\nA header line without a colon\r\n\r\n"
    replies = [raw_exchange(port, malformed) for _ in range(200)]
    assert all(reply.split(b" ", 2)[1] == b"400" for reply in replies)
    assert devnet.try_status(0) is not None
    written = log.read_bytes()[before:].decode(errors="replace")
    assert "Traceback" not in written
    assert 1 <= written.count("Error handling request") <= 2, written[:3_000]


def test_a_storage_outage_does_not_reveal_the_ipfs_address(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    ipfs_url = f"http://127.0.0.1:{closed_port}"
    settings = {"records": {"blob_backend": "ipfs", "ipfs_api_url": ipfs_url}}
    with Devnet(tmp_path_factory.mktemp("ipfs-down") / "net", 1, settings=settings) as devnet:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        members = register_members(devnet)
        url = devnet.rpc_urls[0]

        async def upload() -> str:
            # The record is anchored, then its only custodian's node cannot store it.
            async with EmrClient(url, members.clinician) as client:
                with pytest.raises(CustodyFailedError) as refused:
                    await client.put_record(b"z" * 100, members.patient_id, RecordType.LAB_RESULT)
            return str(refused.value)

        text = run(upload())
        assert "storage_unavailable" in text, text
        assert str(closed_port) not in text, text
        assert ipfs_url in devnet.log_path(0).read_text()  # the operator still sees it
