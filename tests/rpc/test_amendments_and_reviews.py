"""Issue #21 parts 4 and 5 on a real 4-validator devnet (separate processes):

- amendments: a record corrected by a colleague of its author's organisation shows its history
  through `GET /records/{id}/history`, and a read of the superseded record is served and says
  so (field and header); the patient and a clinician of another organisation cannot amend;
- break-glass review: a clinician of another organisation breaks the glass and reads; every
  node's webhook POSTs the opening (HMAC checked by the receiver); an auditor lists it open,
  closes it; it is closed on every node; the receiver gets the closing; closing twice is
  refused; a forged signature is refused by the receiver's check; a node stopped meanwhile
  delivers what it missed after its restart, and sends nothing twice.

The webhook receiver is a real aiohttp server on a free loopback port, in its own thread.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientSession, web

from emrchain.api.signing import HEADER_ACCESS_EVENT, HEADER_RECORD_STATUS, sign_request
from emrchain.api.webhooks import webhook_signature
from emrchain.client import transactions
from emrchain.client.envelope import new_record_id, seal_record
from emrchain.client.replies import AccessDenied, NotFound, TransactionRefusedError
from emrchain.client.rpc import EmrClient
from emrchain.client.webhooks import (
    HEADER_WEBHOOK_EVENT_ID,
    HEADER_WEBHOOK_SIGNATURE,
    HEADER_WEBHOOK_TIMESTAMP,
    verify_webhook,
)
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import AmendmentReason, RecordType, ReviewOutcome, Role
from emrchain.state.codes import ResultCode

pytestmark = pytest.mark.slow

NO_KEY = transactions.NO_KEY
START_TIMEOUT_S = 90.0
WAIT_S = 60.0
SECRET = secrets.token_bytes(32)


@dataclass
class Receiver:
    """The webhook receiver: keeps each request that passes `verify_webhook`."""

    port: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        valid = verify_webhook(
            SECRET,
            body,
            request.headers.get(HEADER_WEBHOOK_TIMESTAMP),
            request.headers.get(HEADER_WEBHOOK_SIGNATURE),
            now_ms=int(time.time() * 1000),
        )
        with self.lock:
            if not valid:
                self.refused += 1
                return web.Response(status=401)
            event = json.loads(body)
            assert request.headers[HEADER_WEBHOOK_EVENT_ID] == event["event_id"]
            self.accepted.append(event)
        return web.Response(status=204)

    def copies(self, event: str, review_id: bytes) -> list[dict[str, Any]]:
        with self.lock:
            return [
                item
                for item in self.accepted
                if item["event"] == event and item["review_id"] == review_id.hex()
            ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver(port=_free_port())
    ready = threading.Event()
    stopping: list[asyncio.Event] = []

    def serve() -> None:
        async def main() -> None:
            app = web.Application()
            app.router.add_post("/hook", found.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", found.port).start()
            stop = asyncio.Event()
            stopping.append(stop)
            found.loop = asyncio.get_running_loop()
            ready.set()
            await stop.wait()
            await runner.cleanup()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield found
    assert found.loop is not None
    found.loop.call_soon_threadsafe(stopping[0].set)
    thread.join(10)


@dataclass(frozen=True)
class Network:
    devnet: Devnet
    a: Hospital
    b: Hospital


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("amend-review") / "net"
    devnet = Devnet(
        root,
        4,
        consensus={"create_empty_blocks": False},
        settings={
            "notifications": {
                "webhook_urls": (receiver.url,),
                "retry_initial_ms": 50,
                "retry_max_ms": 500,
            }
        },
    )
    for home in devnet.homes:
        (home / "config" / "notifications.secret").write_bytes(SECRET)
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0, 1, 2, 3], timeout_s=START_TIMEOUT_S)
        yield Network(
            devnet,
            Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0]),
            Hospital.from_home(devnet.rpc_urls[1], devnet.homes[1]),
        )
    finally:
        devnet.stop_all()


@dataclass(frozen=True)
class Cast:
    clinician: MemberIdentity
    colleague: MemberIdentity
    patient: MemberIdentity
    patient_id: bytes
    auditor: MemberIdentity
    other_clinician: MemberIdentity
    """A clinician of hospital-1."""


@pytest.fixture(scope="module")
def cast(network: Network) -> Cast:
    found = Cast(
        clinician=MemberIdentity.generate(),
        colleague=MemberIdentity.generate(),
        patient=MemberIdentity.generate(),
        patient_id=secrets.token_bytes(32),
        auditor=MemberIdentity.generate(),
        other_clinician=MemberIdentity.generate(),
    )

    async def register() -> None:
        await _register(
            network.a,
            [
                (found.clinician, Role.CLINICIAN, NO_KEY),
                (found.colleague, Role.CLINICIAN, NO_KEY),
                (found.patient, Role.PATIENT, found.patient_id),
                (found.auditor, Role.AUDITOR, NO_KEY),
            ],
        )
        await _register(network.b, [(found.other_clinician, Role.CLINICIAN, NO_KEY)])

    asyncio.run(register())
    return found


def wait_until(predicate: Any, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# ----------------------------------------------------------------------------- amendments


def test_a_correction_shows_its_history_and_the_superseded_read_says_so(
    network: Network, cast: Cast
) -> None:
    async def scenario() -> None:
        url = network.a.rpc_url
        async with EmrClient(url, cast.clinician) as author:
            original = await author.put_record(
                b"potassium 41 mmol/L", cast.patient_id, RecordType.LAB_RESULT
            )
        async with EmrClient(url, cast.colleague) as colleague:
            correction = await colleague.amend_record(
                b"potassium 4.1 mmol/L",
                cast.patient_id,
                RecordType.LAB_RESULT,
                original.record_id,
                AmendmentReason.CORRECTION,
                "decimal point",
            )
        async with EmrClient(url, cast.patient) as patient:
            old = await patient.record_history(original.record_id)
            new = await patient.record_history(correction.record_id)
            read = await patient.get_record(original.record_id)
            # The raw reply carries the status header too.
            event = transactions.access_event(
                cast.patient, await patient.chain_id(), await patient.next_nonce(),
                record_id=original.record_id,
            )  # fmt: skip
            path = f"/records/{original.record_id.hex()}"
            signature = sign_request(
                cast.patient.signer,
                await patient.chain_id(),
                await patient.node_id(),
                "GET",
                path,
                b"",
                time.time_ns() // 1_000_000,
            )
            headers = {**signature.as_dict(), HEADER_ACCESS_EVENT: event.encode().hex()}
            async with (
                ClientSession() as session,
                session.get(url + path, headers=headers) as response,
            ):
                assert response.status == 200, await response.text()
                assert response.headers[HEADER_RECORD_STATUS] == "superseded"
                assert (await response.json())["status"] == "superseded"
        assert old == {
            "record_id": original.record_id.hex(),
            "status": "superseded",
            "supersedes": [],
            "superseded_by": [
                {
                    "record_id": correction.record_id.hex(),
                    "reason": "correction",
                    "note": "decimal point",
                    "height": correction.height,
                }
            ],
        }
        assert new["status"] == "current" and new["superseded_by"] == []
        # Listed as the grants are: not for a clinician (404, like an unknown record), for an
        # auditor, but an unknown id is 404 for the auditor too.
        async with EmrClient(url, cast.clinician) as clinician:
            with pytest.raises(NotFound):
                await clinician.record_history(original.record_id)
        async with EmrClient(url, cast.auditor) as auditor:
            assert (await auditor.record_history(original.record_id))["status"] == "superseded"
            with pytest.raises(NotFound):
                await auditor.record_history(secrets.token_bytes(32))
            with pytest.raises(NotFound):
                await auditor.review(secrets.token_bytes(32))
        async with EmrClient(url, cast.patient) as patient:
            with pytest.raises(AccessDenied):
                await patient.reviews("open")
        assert [item["record_id"] for item in new["supersedes"]] == [original.record_id.hex()]
        # The superseded record is still served, and says what superseded it.
        assert read.plaintext == b"potassium 41 mmol/L"
        assert read.status == "superseded"
        assert read.superseded_by == ((correction.record_id, "correction"),)

    asyncio.run(scenario())


def test_the_patient_and_another_organisation_cannot_amend(network: Network, cast: Cast) -> None:
    async def scenario() -> None:
        async with EmrClient(network.a.rpc_url, cast.clinician) as author:
            original = await author.put_record(
                b"x-ray: no fracture", cast.patient_id, RecordType.IMAGING
            )
        # The patient: the node does not even plan custody for it, so it signs the amendment
        # itself; the chain refuses it by role.
        async with EmrClient(network.a.rpc_url, cast.patient) as patient:
            recipients = {
                "<patient>": cast.patient.encryption_public_key,
                network.a.organization_id: cast.patient.encryption_public_key,
            }
            sealed = seal_record(b"forged", new_record_id(), cast.patient_id, recipients)
            tx = transactions.anchor_record(
                cast.patient,
                await patient.chain_id(),
                await patient.next_nonce(),
                sealed=sealed,
                record_type=RecordType.IMAGING,
                custodians=[network.a.organization_id],
                amendment={"supersedes": original.record_id, "reason": 2, "note": ""},
            )
            with pytest.raises(TransactionRefusedError) as by_patient:
                await patient.submit_and_wait(tx)
            assert by_patient.value.code == ResultCode.ROLE_NOT_PERMITTED
        # A clinician of another organisation, through the client's own amendment path.
        async with EmrClient(network.b.rpc_url, cast.other_clinician) as other:
            with pytest.raises(TransactionRefusedError) as by_other:
                await other.amend_record(
                    b"forged correction",
                    cast.patient_id,
                    RecordType.IMAGING,
                    original.record_id,
                    AmendmentReason.ENTERED_IN_ERROR,
                )
            assert by_other.value.code == ResultCode.NOT_AUTHOR_ORGANIZATION
        async with EmrClient(network.a.rpc_url, cast.patient) as patient:
            history = await patient.record_history(original.record_id)
        assert history["status"] == "current" and history["superseded_by"] == []

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- reviews


def _reviews_on(network: Network, auditor: MemberIdentity, index: int, status: str) -> list[str]:
    async def listing() -> list[str]:
        async with EmrClient(network.devnet.rpc_urls[index], auditor) as client:
            reply = await client.reviews(status, limit=1000)
        return [item["review_id"] for item in reply["reviews"]]

    return asyncio.run(listing())


def test_break_glass_is_notified_listed_closed_everywhere_and_notified_again(
    network: Network, cast: Cast, receiver: Receiver
) -> None:
    async def store_and_break_glass() -> tuple[bytes, bytes, bytes]:
        async with EmrClient(network.a.rpc_url, cast.clinician) as author:
            stored = await author.put_record(
                b"allergy: penicillin", cast.patient_id, RecordType.CLINICAL_NOTE
            )
        # A clinician of hospital-1 breaks the glass and reads at the custodian's node.
        async with EmrClient(network.a.rpc_url, cast.other_clinician) as reader:
            opened = await reader.break_glass(
                cast.patient_id, "unconscious on arrival, allergies unknown", 600_000
            )
            read = await reader.get_record(stored.record_id)
        assert read.plaintext == b"allergy: penicillin"
        return stored.record_id, opened.tx_id, read.access_event_tx_id

    _record_id, review_id, _ = asyncio.run(store_and_break_glass())
    # Every node's webhook delivers the opening, signed (the receiver checked the HMAC).
    wait_until(lambda: len(receiver.copies("review_opened", review_id)) == 4, "4 openings")
    opened = receiver.copies("review_opened", review_id)[0]
    assert opened["patient_id"] == cast.patient_id.hex()
    assert opened["patient_organization"] == network.a.organization_id
    assert opened["reader"] == cast.other_clinician.member_key.hex()
    assert opened["reader_organization"] == network.b.organization_id
    assert opened["reason"] == "unconscious on arrival, allergies unknown"
    assert opened["review_kind"] == "break_glass" and opened["outcome"] is None
    # An auditor lists it open (on another node than the clinician's), then closes it.
    assert review_id.hex() in _reviews_on(network, cast.auditor, 2, "open")

    closed_at: list[float] = []

    async def close() -> None:
        async with EmrClient(network.devnet.rpc_urls[2], cast.auditor) as auditor:
            await auditor.close_review(review_id, ReviewOutcome.JUSTIFIED, "allergy check needed")
            closed_at.append(time.monotonic())
            with pytest.raises(TransactionRefusedError) as twice:
                await auditor.close_review(review_id, ReviewOutcome.UNJUSTIFIED)
            assert twice.value.code == ResultCode.REVIEW_ALREADY_CLOSED
            review = await auditor.review(review_id)
            assert (review["status"], review["outcome"]) == ("closed", "justified")
        async with EmrClient(network.a.rpc_url, cast.clinician) as clinician:
            with pytest.raises(TransactionRefusedError) as not_auditor:
                await clinician.close_review(review_id, ReviewOutcome.JUSTIFIED)
            assert not_auditor.value.code == ResultCode.ROLE_NOT_PERMITTED
            # Neither the review's reader nor any member but auditors and the patient sees it.
            with pytest.raises(AccessDenied):
                await clinician.review(review_id)
        # The patient it concerns is told the outcome.
        async with EmrClient(network.a.rpc_url, cast.patient) as patient:
            told = await patient.review(review_id)
            assert (told["status"], told["outcome"]) == ("closed", "justified")
            assert told["patient_id"] == cast.patient_id.hex()

    asyncio.run(close())
    for index in range(4):
        wait_until(
            lambda index=index: (
                review_id.hex() in _reviews_on(network, cast.auditor, index, "closed")
            ),
            f"the review closed on node {index}",
        )
        assert review_id.hex() not in _reviews_on(network, cast.auditor, index, "open")
    wait_until(lambda: receiver.copies("review_closed", review_id), "a closing")
    first_s = time.monotonic() - closed_at[0]
    wait_until(lambda: len(receiver.copies("review_closed", review_id)) == 4, "4 closings")
    print(
        f"closing notified {first_s:.2f} s after its commit (first node), all 4 by "
        f"{time.monotonic() - closed_at[0]:.2f} s"
    )
    closing = receiver.copies("review_closed", review_id)[0]
    assert (closing["outcome"], closing["note"]) == ("justified", "allergy check needed")
    assert closing["closed_by"] == cast.auditor.member_key.hex()
    # At-least-once per node, and no more here: each event once per node.
    assert len(receiver.copies("review_opened", review_id)) == 4


def test_a_forged_webhook_signature_is_refused_by_the_receiver(receiver: Receiver) -> None:
    body = json.dumps({"event": "review_opened", "event_id": "00" * 32}).encode()
    timestamp = str(int(time.time() * 1000))
    forged = {
        HEADER_WEBHOOK_TIMESTAMP: timestamp,
        HEADER_WEBHOOK_SIGNATURE: "sha256=" + "0" * 64,
        HEADER_WEBHOOK_EVENT_ID: "00" * 32,
    }

    async def post(headers: dict[str, str], data: bytes) -> int:
        async with (
            ClientSession() as session,
            session.post(receiver.url, data=data, headers=headers) as response,
        ):
            return response.status

    before = receiver.refused
    assert asyncio.run(post(forged, body)) == 401
    # A real signature over another body does not pass either.
    signed = verify_webhook(SECRET, body, timestamp, webhook_signature(SECRET, timestamp, body))
    assert signed
    tampered = {**forged, HEADER_WEBHOOK_SIGNATURE: webhook_signature(SECRET, timestamp, body)}
    assert asyncio.run(post(tampered, body + b" ")) == 401
    assert receiver.refused == before + 2


def test_a_stopped_node_delivers_what_it_missed_after_restart_and_nothing_twice(
    network: Network, cast: Cast, receiver: Receiver
) -> None:
    devnet = network.devnet

    async def break_glass(index: int) -> bytes:
        async with EmrClient(devnet.rpc_urls[index], cast.other_clinician) as reader:
            return (
                await reader.break_glass(cast.patient_id, "second emergency visit", 60_000)
            ).tx_id

    first = asyncio.run(break_glass(1))
    wait_until(lambda: len(receiver.copies("review_opened", first)) == 4, "4 openings")
    time.sleep(0.5)  # node 3 writes its cursor right after its delivery
    devnet.stop(3)
    missed = asyncio.run(break_glass(1))
    wait_until(lambda: len(receiver.copies("review_opened", missed)) == 3, "3 openings")
    devnet.start(3)
    wait_until(lambda: len(receiver.copies("review_opened", missed)) == 4, "node 3's opening")
    time.sleep(1.0)  # give a wrong re-send of older events the chance to show
    assert len(receiver.copies("review_opened", first)) == 4
    assert len(receiver.copies("review_opened", missed)) == 4
