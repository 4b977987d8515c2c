"""`EmrClient` against a real node: signed requests, nonces, records, consent, typed errors.

The node is the session's single-validator devnet (tests/client/conftest.py); every test
registers its own members. Replies a healthy node never gives (HTML, oversized or lying
replies) come from a scripted HTTP server at the end of the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from emrchain.api.signing import (
    HEADER_KEY,
    HEADER_TIMESTAMP,
    parse_headers,
    sign_request,
    verify_request,
)
from emrchain.client import transactions
from emrchain.client.envelope import new_record_id, seal_record
from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import (
    PATIENT_RECIPIENT,
    BadReplyError,
    BadRequest,
    CommitTimeoutError,
    Gone,
    NodeUnreachableError,
    NotFound,
    RateLimited,
    SubmissionRefusedError,
    TransactionRefusedError,
    Unauthenticated,
    Unavailable,
)
from emrchain.client.rpc import EmrClient, check_base_url
from emrchain.config.node import load_node_config
from emrchain.crypto.encryption_keys import derive_member_key_pair
from emrchain.rpc.server import REPLAY_HORIZON_FILE
from emrchain.schema import ErasureReason, RecordType
from emrchain.state.codes import ResultCode
from tests.client.conftest import Cast, RealNode

PLAINTEXT = b"HbA1c 6.1 % (2026-11-24), fasting glucose 5.9 mmol/l"
BREAK_GLASS_REASON = "unconscious patient in the emergency room"
TEST_DEADLINE_S = 60.0
Result = TypeVar("Result")


def run(scenario: Awaitable[Result]) -> Result:
    async def bounded() -> Result:
        async with asyncio.timeout(TEST_DEADLINE_S):
            return await scenario

    return asyncio.run(bounded())


async def store(node: RealNode, cast: Cast, plaintext: bytes = PLAINTEXT) -> bytes:
    """The cast's clinician stores a lab result of the cast's patient; its record id."""
    async with EmrClient(node.url, cast.clinician) as client:
        stored = await client.put_record(
            plaintext, cast.patient_id, RecordType.LAB_RESULT)
    assert stored.patient_id == cast.patient_id and stored.height >= 1
    return stored.record_id


def test_put_then_get_round_trip_and_no_plaintext_at_rest_on_the_node(real_node: RealNode) -> None:
    cast = real_node.cast()
    marker = b"EMRCHAIN-CLIENT-MARKER-" + secrets.token_hex(16).encode()
    plaintext = marker + b" " + PLAINTEXT

    async def scenario() -> tuple[bytes, Any]:
        # The PUT carries its query string (patient id, custody wrap) in the signed path: the
        # node verifies the signature over the path and query as it received them.
        record_id = await store(real_node, cast, plaintext)
        async with EmrClient(real_node.url, cast.patient) as client:
            read = await client.get_record(record_id)
            assert read.plaintext == plaintext and read.patient_id == cast.patient_id
            # The read is on the ledger: the access event executed with result OK.
            ledger = await client._request("GET", f"/txs/{read.access_event_tx_id.hex()}")
        return record_id, ledger

    record_id, ledger = run(scenario())
    assert ledger["status"] == "committed" and ledger["result_code"] == ResultCode.OK
    # Nothing the node wrote (chain and vault databases, blob store, keys, log) holds the
    # plaintext; the same scan finds what the node did write for this record.
    assert real_node.files_containing(marker) == []
    assert real_node.files_containing(record_id) != []


def test_a_request_signed_for_another_chain_is_refused_401(real_node: RealNode) -> None:
    cast = real_node.cast()

    async def scenario() -> None:
        async with EmrClient(real_node.url, cast.patient, chain_id=b"another-chain") as client:
            with pytest.raises(Unauthenticated) as refused:
                await client.access_events(patient_id=cast.patient_id)
        assert refused.value.status == 401 and refused.value.code == "bad_signature"

    run(scenario())


def test_forged_stale_replayed_and_unknown_key_requests_get_the_401_codes(
    real_node: RealNode,
) -> None:
    """Requests made by hand (aiohttp), headers tampered after signing."""
    cast = real_node.cast()
    stranger = MemberIdentity.generate()  # never registered
    path = f"/patients/{cast.patient_id.hex()}/grants"

    async def scenario() -> list[tuple[int, str]]:
        async with EmrClient(real_node.url, cast.patient) as client:
            chain_id = await client.chain_id()
            node_id = await client.node_id()

        def signed(
            identity: MemberIdentity, signed_path: str = path, skew_ms: int = 0
        ) -> dict[str, str]:
            now_ms = time.time_ns() // 1_000_000 + skew_ms
            return sign_request(
                identity.signer, chain_id, node_id, "GET", signed_path, b"", now_ms
            ).as_dict()

        async with aiohttp.ClientSession(real_node.url) as session:

            async def answer(headers: dict[str, str]) -> tuple[int, str]:
                async with session.get(path, headers=headers) as response:
                    document = await response.json()
                    code = document["error"]["code"] if response.status >= 400 else "ok"
                    return response.status, code

            good = signed(cast.patient)
            other = signed(cast.patient)
            later = {**other, HEADER_TIMESTAMP: str(int(other[HEADER_TIMESTAMP]) + 1)}
            stolen = {**signed(cast.clinician), HEADER_KEY: cast.patient.member_key.hex()}
            return [
                await answer(good),
                await answer(good),  # replayed
                await answer({}),  # unsigned
                await answer(signed(cast.patient, skew_ms=-10 * 60 * 1000)),  # stale
                await answer(later),  # a header changed after signing
                await answer(signed(cast.patient, path + "?limit=1")),  # signed another path
                await answer(stolen),  # another member's signature on the patient's key
                await answer(signed(stranger)),  # not a member
            ]

    assert run(scenario()) == [
        (200, "ok"),
        (401, "replayed_request"),
        (401, "unsigned_request"),
        (401, "stale_request"),
        (401, "bad_signature"),
        (401, "bad_signature"),
        (401, "bad_signature"),
        (401, "unknown_key"),
    ]


def test_a_request_behind_the_replay_horizon_is_signed_again_after_retry_after(
    real_node: RealNode,
) -> None:
    """After a quick restart the node refuses requests timestamped at or before its replay
    horizon (they may be replays of requests it accepted) and says when a request signed anew
    will pass; the client waits that long, signs again and succeeds."""
    cast = real_node.cast()
    horizon_path = load_node_config(real_node.home).data_path / REPLAY_HORIZON_FILE
    devnet = real_node.devnet
    devnet.stop(0)
    # As if the node had accepted, just before it stopped, a request signed 6 s from now: a
    # window the node's start-up fits in even on a loaded machine (1.5 s did not, at load 15).
    floor_ms = time.time_ns() // 1_000_000 + 6_000
    horizon_path.write_bytes(struct.pack(">Q", floor_ms))
    devnet.start(0)
    devnet.wait_for(lambda: devnet.try_status(0) is not None, timeout_s=60, what="node0 up")
    path = f"/accounts/{cast.patient.member_key.hex()}"

    async def scenario() -> tuple[int, str, str, int, int]:
        async with EmrClient(real_node.url, cast.patient) as client:
            chain_id, node_id = await client.chain_id(), await client.node_id()
            now_ms = time.time_ns() // 1_000_000
            assert now_ms < floor_ms, "the node took longer to start than the test allows"
            headers = sign_request(
                cast.patient.signer, chain_id, node_id, "GET", path, b"", now_ms
            ).as_dict()
            async with (
                aiohttp.ClientSession(real_node.url) as session,
                session.get(path, headers=headers) as response,
            ):
                refused = (response.status, (await response.json())["error"]["code"])
                retry_after = response.headers["Retry-After"]
            account = await client.account()  # signed before the horizon too, then again
            assert account["member_key"] == cast.patient.member_key.hex()
            return *refused, retry_after, time.time_ns() // 1_000_000 - floor_ms, now_ms

    status, code, retry_after, served_after_ms, signed_ms = run(scenario())
    assert (status, code) == (401, "stale_request")
    # Whole seconds until the horizon passes, as the node saw it when the request arrived.
    wait_s = -(-(floor_ms - signed_ms) // 1000)
    assert int(retry_after) in {wait_s - 1, wait_s, wait_s + 1}, (retry_after, wait_s)
    assert served_after_ms > 0  # it could only pass once the node's clock passed the horizon


def test_nonces_go_out_back_to_back_after_one_account_lookup(real_node: RealNode) -> None:
    cast = real_node.cast()

    async def scenario() -> None:
        async with EmrClient(real_node.url, cast.clinician) as client:
            chain = await client.chain_id()
            assert (await client.account())["next_nonce"] == 1
            # Nothing is submitted while the three are built: asked each time, the node would
            # answer 1 three times. The local counter hands out 1, 2, 3.
            txs = [
                transactions.break_glass(
                    cast.clinician,
                    chain,
                    await client.next_nonce(),
                    patient_id=cast.patient_id,
                    reason=f"emergency number {index}",
                    duration_ms=60_000,
                )
                for index in range(3)
            ]
            verdicts = await client.submit_batch(txs)
            assert [tx.nonce for tx in txs] == [1, 2, 3]
            assert all(verdict.accepted for verdict in verdicts), verdicts
            for tx in txs:
                assert (await client.wait_committed(tx.tx_id)).result_code == ResultCode.OK
            assert (await client.account())["committed_nonce"] == 3

    run(scenario())


def test_execution_refusal_names_the_code_and_the_nonce_is_asked_again(
    real_node: RealNode,
) -> None:
    cast = real_node.cast()
    unregistered_patient = secrets.token_bytes(32)

    async def scenario() -> None:
        async with EmrClient(real_node.url, cast.clinician) as client:
            with pytest.raises(TransactionRefusedError) as refused:
                await client.break_glass(unregistered_patient, BREAK_GLASS_REASON, 60_000)
            assert refused.value.code == ResultCode.PATIENT_NOT_REGISTERED
            assert refused.value.code_name == "PATIENT_NOT_REGISTERED"
            assert "PATIENT_NOT_REGISTERED" in str(refused.value)
            account = await client.account()
            assert account["committed_nonce"] == 1  # the refused transaction used nonce 1
            # Behind this client's back the same member uses nonce 2: only a client that asks
            # the node again (rather than counting on locally) gets 3 next.
            async with EmrClient(real_node.url, cast.clinician) as elsewhere:
                await elsewhere.break_glass(cast.patient_id, BREAK_GLASS_REASON, 60_000)
            assert await client.next_nonce() == 3

    run(scenario())


def test_mempool_refusal_raises_and_forgets_the_local_counter(real_node: RealNode) -> None:
    cast = real_node.cast()

    async def scenario() -> None:
        async with EmrClient(real_node.url, cast.patient) as client:
            chain = await client.chain_id()
            assert await client.next_nonce() == 1  # the local counter is at 2 now
            wrong = transactions.erase_record(
                cast.patient,
                chain,
                5,
                record_id=cast.patient_id,
                reason=ErasureReason.PATIENT_REQUEST,
            )
            with pytest.raises(SubmissionRefusedError, match="nonce_gap"):
                await client.submit_and_wait(wrong)
            assert await client.next_nonce() == 1  # asked again: nonce 1 is still free

    run(scenario())


def test_consent_grant_read_revoke_and_the_access_trail(real_node: RealNode) -> None:
    cast = real_node.cast()

    async def scenario() -> None:
        record_id = await store(real_node, cast)
        async with (
            EmrClient(real_node.url, cast.outsider) as reader,
            EmrClient(real_node.url, cast.patient) as patient,
        ):
            with pytest.raises(NotFound) as denied:
                await reader.get_record(record_id)
            assert denied.value.status == 404 and denied.value.code == "not_found"
            grant = await patient.grant(
                record_id=record_id, grantee_member=cast.outsider.member_key
            )
            listed = await patient.grants(patient_id=cast.patient_id)
            assert [item["grant_id"] for item in listed["grants"]] == [grant.tx_id.hex()]
            assert listed["grants"][0]["grantee_member"] == cast.outsider.member_key.hex()
            assert (await reader.get_record(record_id)).plaintext == PLAINTEXT
            await patient.revoke(grant.tx_id)
            assert (await patient.grants(record_id=record_id))["grants"] == []
            with pytest.raises(NotFound):
                await reader.get_record(record_id)
            # A refused read put nothing on the ledger: the reader's nonce 2 is still free.
            assert await reader.next_nonce() == 2
            assert (await reader.account())["committed_nonce"] == 1
        async with EmrClient(real_node.url, cast.auditor) as auditor:
            trail = await auditor.access_events(record_id=record_id)
            newest = await auditor.access_events(record_id=record_id, limit=1)
        # Newest first: the grantee's read under the grant, the patient's read (to re-wrap).
        assert [(event["actor"], event["basis"]) for event in trail["events"]] == [
            (cast.outsider.member_key.hex(), "grant"),
            (cast.patient.member_key.hex(), "patient"),
        ]
        assert trail["total"] == 2
        assert newest["events"] == trail["events"][:1] and newest["total"] == 2
        with pytest.raises(ValueError, match="exactly one"):
            await auditor.grants(patient_id=cast.patient_id, record_id=record_id)

    run(scenario())


def test_break_glass_opens_a_flagged_read_with_its_reason(real_node: RealNode) -> None:
    cast = real_node.cast()

    async def scenario() -> dict[str, Any]:
        record_id = await store(real_node, cast)
        async with EmrClient(real_node.url, cast.outsider) as responder:
            with pytest.raises(NotFound):
                await responder.get_record(record_id)
            await responder.break_glass(cast.patient_id, BREAK_GLASS_REASON, 3_600_000)
            assert (await responder.get_record(record_id)).plaintext == PLAINTEXT
        async with EmrClient(real_node.url, cast.patient) as patient:
            return await patient.access_events(patient_id=cast.patient_id)

    events = run(scenario())["events"]
    assert [(event["kind"], event["basis"]) for event in events] == [
        ("access", "break_glass"),
        ("break_glass", "break_glass"),
    ]
    assert events[1]["reason"] == BREAK_GLASS_REASON
    assert all(event["flagged_for_review"] for event in events)
    assert {event["actor"] for event in events} == {cast.outsider.member_key.hex()}


def test_refusals_map_to_typed_errors_404_409_410_401(real_node: RealNode) -> None:
    cast = real_node.cast()

    async def scenario() -> None:
        record_id = await store(real_node, cast)
        async with EmrClient(real_node.url, cast.clinician) as clinician:
            with pytest.raises(NotFound) as unknown:
                await clinician.get_record(new_record_id())
            assert unknown.value.status == 404 and unknown.value.code == "not_found"
            # A genuine wrap of another key for the anchored record: its digest is not on chain.
            sealed = seal_record(
                b"another note", record_id, cast.patient_id, {"custody": real_node.custody_key}
            )
            wrap = sealed.wraps["custody"].hex()
            with pytest.raises(BadRequest) as substituted:
                await clinician._request(
                    "PUT",
                    f"/records/{record_id.hex()}/custody?custody_wrap={wrap}&patient_wrap={wrap}",
                    body=sealed.ciphertext,
                    signed=True,
                    headers={"Content-Type": "application/octet-stream"},
                )
            assert substituted.value.status == 400
            assert substituted.value.code == "bad_custody_wrap"
        async with EmrClient(real_node.url, cast.patient) as patient:
            await patient.erase(record_id, ErasureReason.PATIENT_REQUEST)
            with pytest.raises(Gone) as gone:
                await patient.get_record(record_id)
            assert gone.value.status == 410 and gone.value.code == "erased"
        async with EmrClient(real_node.url, MemberIdentity.generate()) as stranger:
            with pytest.raises(Unauthenticated) as unknown_key:
                await stranger.grants(record_id=record_id)
            assert unknown_key.value.status == 401 and unknown_key.value.code == "unknown_key"

    run(scenario())


def test_commit_timeout_for_a_transaction_the_node_does_not_know(real_node: RealNode) -> None:
    async def scenario() -> None:
        async with EmrClient(real_node.url, MemberIdentity.generate()) as client:
            with pytest.raises(CommitTimeoutError, match=r"not committed after 0\.3 s"):
                await client.wait_committed(bytes(range(32)), timeout_s=0.3)

    run(scenario())


def test_unreachable_node() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    async def unreachable() -> None:
        async with EmrClient(
            f"http://127.0.0.1:{closed_port}", MemberIdentity.generate()
        ) as client:
            with pytest.raises(NodeUnreachableError, match="cannot reach"):
                await client.status()

    run(unreachable())


# ---- replies a healthy node never gives: a scripted HTTP server ------------------------------

SCRIPTED_CHAIN_ID = b"scripted-chain"
SCRIPTED_NODE_ID = bytes(range(32))
SCRIPTED_STATUS = {"chain_id": SCRIPTED_CHAIN_ID.decode(), "node_id": SCRIPTED_NODE_ID.hex()}
PATIENT = MemberIdentity.from_seed(hashlib.sha256(b"rpc-client/patient").digest())
CLINICIAN = MemberIdentity.from_seed(hashlib.sha256(b"rpc-client/clinician").digest())
PATIENT_ID = hashlib.sha256(b"patient pseudonym").digest()
ORGANIZATION = derive_member_key_pair(hashlib.sha256(b"scripted organisation").digest())


async def scripted(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """A server answering every request with `handler`; returns (runner, url)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("reply", "expected", "message"),
    [
        (web.Response(text="<html>oops</html>"), BadReplyError, "not JSON"),
        (web.json_response([1, 2]), BadReplyError, "not a JSON object"),
        (web.json_response({"chain_id": 7}), BadReplyError, "chain_id is missing"),
        (web.Response(body=b" " * (5 * 1024 * 1024)), BadReplyError, "exceeds"),
        (web.Response(status=503, text="down"), Unavailable, "503 http_error"),
        (
            web.json_response(
                {"error": {"code": "blob_store", "message": "ipfs\ndown"}}, status=503
            ),
            Unavailable,
            "HTTP 503 blob_store: ipfs down",
        ),
    ],
)
def test_bad_or_failed_replies_become_one_line_errors(
    reply: web.Response, expected: type[Exception], message: str
) -> None:
    async def main() -> None:
        async def handler(request: web.Request) -> web.Response:
            return reply

        runner, url = await scripted(handler)
        try:
            async with EmrClient(url, PATIENT) as client:
                with pytest.raises(expected, match=message) as raised:
                    await client.chain_id()
        finally:
            await runner.cleanup()
        assert "\n" not in str(raised.value)

    asyncio.run(main())


def test_a_rate_limited_reply_says_when_to_retry() -> None:
    async def main() -> RateLimited:
        async def handler(request: web.Request) -> web.Response:
            error = {"error": {"code": "rate_limited", "message": "more than 50 per second"}}
            return web.json_response(error, status=429, headers={"Retry-After": "3"})

        runner, url = await scripted(handler)
        try:
            async with EmrClient(url, PATIENT) as client:
                with pytest.raises(RateLimited) as raised:
                    await client.status()
        finally:
            await runner.cleanup()
        return raised.value

    refused = asyncio.run(main())
    assert (refused.status, refused.code, refused.retry_after_s) == (429, "rate_limited", 3)


def test_a_node_that_stores_other_bytes_is_caught() -> None:
    async def main() -> None:
        async def handler(request: web.Request) -> web.Response:
            if request.path == "/status":
                return web.json_response(SCRIPTED_STATUS)
            await request.read()
            return web.json_response(
                {"cid": "b", "cid_bytes": "00", "ciphertext_sha256": "00", "size": 1}
            )

        runner, url = await scripted(handler)
        sealed = seal_record(
            PLAINTEXT,
            new_record_id(),
            PATIENT_ID,
            {"org": ORGANIZATION.public_key, PATIENT_RECIPIENT: ORGANIZATION.public_key},
        )
        try:
            async with EmrClient(url, CLINICIAN) as client:
                with pytest.raises(BadReplyError, match="stored something else"):
                    await client.hand_custody(sealed, "org", url)
        finally:
            await runner.cleanup()

    asyncio.run(main())


@pytest.mark.parametrize(
    "url",
    ["ftp://node:1", "http://", "http://node:1/api", "http://node:1/?x=1", "node:1", "http://a:b"],
)
def test_rpc_urls_must_be_an_origin(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        check_base_url(url)
    assert check_base_url("http://127.0.0.1:26657/") == "http://127.0.0.1:26657"


def test_client_request_headers_verify_with_the_shared_signing_module() -> None:
    captured: list[tuple[str, str, bytes, dict[str, str]]] = []

    async def main() -> None:
        async def handler(request: web.Request) -> web.Response:
            if request.path == "/status":
                return web.json_response(SCRIPTED_STATUS)
            body = await request.read()
            captured.append((request.method, request.raw_path, body, dict(request.headers)))
            return web.json_response({"events": [], "total": 0, "dropped": 0})

        runner, url = await scripted(handler)
        try:
            async with EmrClient(url, PATIENT) as client:
                await client.access_events(patient_id=PATIENT_ID, limit=7)
        finally:
            await runner.cleanup()

    asyncio.run(main())
    [(method, path, body, headers)] = captured
    signed = parse_headers(headers)
    assert signed.key == PATIENT.member_key
    assert path == f"/patients/{PATIENT_ID.hex()}/access-events?limit=7"
    assert body == b"" and signed.body_sha256 == hashlib.sha256(b"").digest()
    assert verify_request(signed, SCRIPTED_CHAIN_ID, SCRIPTED_NODE_ID, method, path)
    assert not verify_request(
        signed, SCRIPTED_CHAIN_ID, SCRIPTED_NODE_ID, method, path.replace("=7", "=8")
    )
    assert not verify_request(signed, b"other-chain", SCRIPTED_NODE_ID, method, path)
    # Bound to the node it was sent to: the same request does not verify for another node.
    assert not verify_request(signed, SCRIPTED_CHAIN_ID, bytes(32), method, path)
