"""Issue 15's exhaustion probes against a real node process (`emrchain start`, 127.0.0.1 only):
oversized anonymous bodies, 1,100 slow sockets, one member filling the replay cache, one client
taking every stream slot, one address flooding. After each, the node serves members and
commits, and its memory stays within `RSS_GROWTH_BOUND_BYTES` of what it was before.

Hostile clients connect from other loopback addresses (127.0.0.2 and up; Linux routes all of
127/8 to the loopback interface), so per-address limits tell them from the members, who use
127.0.0.1. The node's limits are small (`SETTINGS`) so each probe takes seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from emrchain.api.signing import sign_request
from emrchain.client import transactions
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import Role
from tests.rpc.bounded import run

MIB = 1024 * 1024
RSS_GROWTH_BOUND_BYTES = 48 * MIB
"""What a probe may add to the node's resident memory. The buffers it may fill: the probe's
own bodies are never read (0), a streamed body is cut at 8 MiB, at most 200 connections hold
aiohttp's 64 KiB read buffer each (~13 MiB); the rest is allocator noise. Before the fixes,
eight 60 MiB anonymous bodies took the node from 95 to 495 MiB."""
MAX_CONNECTIONS = 300
PER_ADDRESS = 50
HEADER_TIMEOUT_MS = 1_000
REPLAY_PER_MEMBER = 100
SETTINGS = {
    "rpc": {
        "max_connections": MAX_CONNECTIONS,
        "max_connections_per_address": PER_ADDRESS,
        "header_timeout_ms": HEADER_TIMEOUT_MS,
        # Longer than a probe waits: only the header timeout can close a slow socket in time.
        "idle_timeout_ms": 60_000,
        "max_stream_subscribers": 8,
        "max_stream_subscribers_per_address": 2,
        "max_stream_subscribers_per_member": 2,
        "address_requests_per_second": 100,
        "address_request_burst": 300,
        # High, so that the replay cache's per-member share is what stops the flooder.
        "member_requests_per_second": 10_000,
        "member_request_burst": 10_000,
    },
    "records": {
        "replay_cache_entries": 1_000,
        "replay_cache_entries_per_member": REPLAY_PER_MEMBER,
    },
}
NO_PATIENT = transactions.NO_KEY


@dataclass(frozen=True, slots=True)
class HostileNode:
    devnet: Devnet
    hospital: Hospital
    patient: MemberIdentity
    patient_id: bytes
    auditor: MemberIdentity

    @property
    def url(self) -> str:
        return self.devnet.rpc_urls[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.devnet.processes[0].pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log_text(self) -> str:
        return self.devnet.log_path(0).read_text(errors="replace")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileNode]:
    devnet = Devnet(tmp_path_factory.mktemp("hostile") / "net", 1, settings=SETTINGS)
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        hospital = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
        patient, auditor = MemberIdentity.generate(), MemberIdentity.generate()
        patient_id = secrets.token_bytes(32)
        asyncio.run(
            _register(
                hospital,
                [(patient, Role.PATIENT, patient_id), (auditor, Role.AUDITOR, NO_PATIENT)],
            )
        )
        yield HostileNode(devnet, hospital, patient, patient_id, auditor)
    finally:
        devnet.stop_all()


def report_growth(node: HostileNode, probe: str, rss_before: int) -> None:
    """Assert the bound, and print the figure (`pytest -s`) for docs/spec/rpc.md."""
    growth = node.rss_bytes() - rss_before
    print(f"{probe}: RSS {rss_before / MIB:.1f} MiB, growth {growth / MIB:+.1f} MiB")
    assert growth < RSS_GROWTH_BOUND_BYTES


async def members_are_served_and_the_chain_commits(
    node: HostileNode, reader: MemberIdentity | None = None
) -> None:
    """A signed listing (by `reader`, default the patient) answers 200, and a member's
    transaction commits."""
    async with EmrClient(node.url, reader or node.patient) as client:
        grants = await client.grants(patient_id=node.patient_id)
        assert grants["grants"] == []
    async with EmrClient(node.url, node.hospital.admin) as admin:
        tx = transactions.register_identity(
            node.hospital.admin,
            await admin.chain_id(),
            await admin.next_nonce(),
            organization_id=node.hospital.organization_id,
            member=MemberIdentity.generate(),
            role=Role.CLINICIAN,
            patient_id=NO_PATIENT,
        )
        committed = await admin.submit_and_wait(tx, timeout_s=60)
        assert committed.result_code == 0


async def raw_exchange(
    node: HostileNode, source: str, head: bytes, body_part: bytes = b""
) -> tuple[int, dict[str, str], bytes, bool]:
    """Send a request head and part of its body from `source`; the status, headers and body of
    the answer, and whether the node then closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port, local_addr=(source, 0))
    try:
        writer.write(head + body_part)
        await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = await reader.readexactly(int(headers.get("content-length", "0")))
        closed = await asyncio.wait_for(reader.read(1), 5) == b""
        return int(status_line.split()[1]), headers, answer, closed
    finally:
        writer.close()


def request_head(method: str, path: str, length: int, **extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: node", f"Content-Length: {length}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_oversized_anonymous_bodies_are_refused_unread(hostile: HostileNode) -> None:
    rss_before = hostile.rss_bytes()
    record_path = f"/records/{'ab' * 32}/custody?custody_wrap={'00' * 80}&patient_wrap={'00' * 80}"
    sixty_mib = 60 * MIB
    # A forger claims a real member's key: refused on the headers, the 60 MiB never read.
    now_ms = time.time_ns() // 1_000_000
    forged = sign_request(
        hostile.patient.signer, b"some-other-chain", bytes(32), "PUT", record_path, b"", now_ms
    ).as_dict()

    async def probe() -> list[tuple[int, dict[str, str], bytes, bool]]:
        binary = request_head("POST", "/txs", 9 * MIB, Content_Type="application/octet-stream")
        json_body = request_head("POST", "/txs", sixty_mib, Content_Type="application/json")
        unsigned_upload = request_head("PUT", record_path, sixty_mib)
        forged_upload = request_head("PUT", record_path, sixty_mib, **forged)
        heads = [binary, json_body, unsigned_upload, forged_upload] * 2
        return await asyncio.gather(
            *(raw_exchange(hostile, "127.0.0.2", head, b"\0" * 65_536) for head in heads)
        )

    started = time.monotonic()
    answers = run(probe())
    assert time.monotonic() - started < 5  # answered on the headers, not after 60 MiB
    expected = [
        (413, "body_too_large"),
        (413, "body_too_large"),
        (401, "unsigned_request"),
        (401, "bad_signature"),
    ]
    for (status, headers, body, closed), (code_status, code) in zip(
        answers, expected * 2, strict=True
    ):
        assert (status, json.loads(body)["error"]["code"]) == (code_status, code)
        assert headers["connection"] == "close" and closed
    run(members_are_served_and_the_chain_commits(hostile))
    report_growth(hostile, "8 oversized anonymous bodies", rss_before)


def test_a_body_streamed_past_the_cap_is_cut_off(hostile: HostileNode) -> None:
    rss_before = hostile.rss_bytes()

    async def probe() -> tuple[int, str, bool]:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
        ) as session:

            async def endless() -> object:
                for _ in range(16 * 16):  # 16 MiB in 64 KiB chunks, twice the cap
                    yield b"\0" * 65_536

            async with session.post(
                hostile.url + "/txs",
                data=endless(),
                headers={"Content-Type": "application/octet-stream"},
            ) as response:
                document = await response.json()
                return (
                    response.status,
                    document["error"]["code"],
                    response.headers.get("Connection") == "close",
                )

    status, code, closed = run(probe())
    assert (status, code, closed) == (413, "body_too_large", True)
    run(members_are_served_and_the_chain_commits(hostile))
    report_growth(hostile, "16 MiB streamed to an 8 MiB cap", rss_before)


async def slow_socket(node: HostileNode, source: str) -> tuple[asyncio.StreamReader, object]:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port, local_addr=(source, 0))
    writer.write(b"GET /status HTTP/1.1\r\nHost: node\r\n")  # and never the end of the headers
    return reader, writer


def test_slow_sockets_do_not_take_the_rpc_away(hostile: HostileNode) -> None:
    """1,100 sockets from 4 addresses trickle headers (the review's attack): each address gets
    its 50 connections, the others are refused at once, the 200 are closed after the header
    timeout, and members are served all along."""
    rss_before, files_before = hostile.rss_bytes(), hostile.open_files()
    log_before = len(hostile.log_text())
    sources = [f"127.0.0.{index}" for index in range(2, 6)]

    async def probe() -> tuple[int, int]:
        sockets = await asyncio.gather(
            *(slow_socket(hostile, sources[index % 4]) for index in range(1_100))
        )
        files_during = hostile.open_files()
        await members_are_served_and_the_chain_commits(hostile)

        async def closed_by_node(reader: asyncio.StreamReader) -> bool:
            try:
                await asyncio.wait_for(reader.read(), HEADER_TIMEOUT_MS / 1000 + 7)
            except ConnectionResetError:
                pass  # the header timeout aborts the connection
            except TimeoutError:
                return False
            return True

        # Refused sockets get a 429 and EOF at once; admitted ones EOF after the timeout.
        ended = await asyncio.gather(*(closed_by_node(reader) for reader, _ in sockets))
        for _, writer in sockets:
            writer.close()  # type: ignore[attr-defined]
        return files_during, sum(ended)

    started = time.monotonic()
    files_during, ended = run(probe())
    assert ended == 1_100
    assert time.monotonic() - started < HEADER_TIMEOUT_MS / 1000 + 20
    assert files_during - files_before <= 4 * PER_ADDRESS + 5
    run(members_are_served_and_the_chain_commits(hostile))
    report_growth(hostile, "1,100 slow sockets", rss_before)
    written = hostile.log_text()[log_before:]
    assert "Traceback" not in written and len(written) < 4_096, written[-2_000:]


def signed_get(identity: MemberIdentity, chain_id: bytes, node_id: bytes, path: str) -> dict:
    now_ms = time.time_ns() // 1_000_000
    return sign_request(identity.signer, chain_id, node_id, "GET", path, b"", now_ms).as_dict()


def test_one_member_cannot_fill_the_replay_cache(hostile: HostileNode) -> None:
    path = f"/patients/{hostile.patient_id.hex()}/grants"
    rss_before = hostile.rss_bytes()
    flooder = MemberIdentity.generate()  # an auditor: it may list any patient's grants
    run(_register(hostile.hospital, [(flooder, Role.AUDITOR, NO_PATIENT)]))

    async def probe() -> tuple[list[int], str | None, int]:
        async with EmrClient(hostile.url, flooder) as client:
            chain_id, node_id = await client.chain_id(), await client.node_id()
        async with aiohttp.ClientSession(hostile.url) as session:
            statuses, retry_after = [], None
            for _ in range(REPLAY_PER_MEMBER + 20):
                headers = signed_get(flooder, chain_id, node_id, path)
                async with session.get(path, headers=headers) as response:
                    statuses.append(response.status)
                    retry_after = response.headers.get("Retry-After", retry_after)
            headers = signed_get(hostile.auditor, chain_id, node_id, path)
            async with session.get(path, headers=headers) as response:
                return statuses, retry_after, response.status

    statuses, retry_after, other_member = run(probe())
    assert statuses == [200] * REPLAY_PER_MEMBER + [429] * 20
    assert retry_after is not None and 1 <= int(retry_after) <= 60
    assert other_member == 200  # before the fix: 503 for everyone once one member filled it
    run(members_are_served_and_the_chain_commits(hostile))
    report_growth(hostile, "one member filling the replay cache", rss_before)


def test_one_client_cannot_take_every_stream_slot(hostile: HostileNode) -> None:
    rss_before = hostile.rss_bytes()
    patient_path = f"/ws/patients/{hostile.patient_id.hex()}"

    async def probe() -> dict[str, list[int]]:
        async with EmrClient(hostile.url, hostile.patient) as client:
            chain_id, node_id = await client.chain_id(), await client.node_id()
        outcomes: dict[str, list[int]] = {}
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=("127.0.0.7", 0))
            ) as hog,
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=("127.0.0.8", 0))
            ) as other,
        ):
            held = []

            async def subscribe(session: aiohttp.ClientSession, path: str, **headers: str) -> int:
                try:
                    held.append(await session.ws_connect(hostile.url + path, headers=headers))
                    return 101
                except aiohttp.WSServerHandshakeError as error:
                    return error.status

            outcomes["blocks_hog"] = [await subscribe(hog, "/ws/blocks") for _ in range(4)]
            outcomes["blocks_other"] = [await subscribe(other, "/ws/blocks")]
            outcomes["patients_auditor"] = [
                await subscribe(
                    hog,
                    patient_path,
                    **signed_get(hostile.auditor, chain_id, node_id, patient_path),
                )
                for _ in range(3)
            ]
            outcomes["patients_patient"] = [
                await subscribe(
                    other,
                    patient_path,
                    **signed_get(hostile.patient, chain_id, node_id, patient_path),
                )
            ]
            for socket_ in held:
                await socket_.close()
        return outcomes

    assert run(probe()) == {
        "blocks_hog": [101, 101, 429, 429],
        "blocks_other": [101],
        "patients_auditor": [101, 101, 429],
        "patients_patient": [101],
    }
    run(members_are_served_and_the_chain_commits(hostile))
    report_growth(hostile, "one client taking the stream slots", rss_before)


def test_one_address_flooding_is_rate_limited_alone(hostile: HostileNode) -> None:
    rss_before = hostile.rss_bytes()

    async def probe() -> tuple[int, dict[str, str], int]:
        async with (
            aiohttp.ClientSession(
                hostile.url, connector=aiohttp.TCPConnector(local_addr=("127.0.0.9", 0))
            ) as flood,
            aiohttp.ClientSession(hostile.url) as member,
        ):
            served, refused = 0, {}
            for _ in range(5_000):  # far more than the burst of 300 and 100 per second
                async with flood.get("/health") as response:
                    if response.status == 429:
                        refused = {**(await response.json())["error"], **response.headers}
                        break
                    served += 1
            async with member.get("/health") as response:
                return served, refused, response.status

    served, refused, member_status = run(probe())
    assert 300 <= served < 5_000
    assert refused["code"] == "rate_limited" and refused["Retry-After"] == "1"
    assert member_status == 200
    run(members_are_served_and_the_chain_commits(hostile))
    report_growth(hostile, "one address flooding", rss_before)
