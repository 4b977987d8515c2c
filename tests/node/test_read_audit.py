"""Issue #15 acceptance, as an attacker with a legitimate member key would try it, on a real
4-validator devnet (separate processes, `create_empty_blocks = false` so an idle chain's clock
stops): no read is served without a committed access event, and none without consent.

Each test is one attack the security review carried out against the old read path, which served
a read as soon as its access event was admitted to the mempool:

- an access event naming a random grant id (execution then refused it: nothing audited);
- a pending key rotation, a nonce spent through another node, a pending revocation;
- an expired record grant, an expired patient grant, a finished break-glass session, on an idle
  chain;
- the serving node killed right after the read;
- many reads racing a revocation;
- an admin reading its organisation's records without the patient: a grant to itself with a
  random wrapped key, a clinician it registers itself, a patient id it re-enrols.

The invariant checked throughout (`served_reads_are_recorded`): every read the node served has
its access event committed with result OK, in the record's trail, on the basis it was served
under; and no read is served after a revocation's block.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from emrchain.api.signing import HEADER_ACCESS_EVENT
from emrchain.client import transactions
from emrchain.client.replies import EmrClientError, RequestFailedError
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import RecordType, Role

pytestmark = pytest.mark.slow

NO_PATIENT = transactions.NO_KEY
PLAINTEXT = b"haemoglobin 13.9 g/dL"
START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Network:
    devnet: Devnet
    a: Hospital
    """hospital-0 on node 0: the custodian of every record the tests store."""
    b: Hospital
    """hospital-1 on node 1."""


@dataclass(frozen=True, slots=True)
class Cast:
    clinician: MemberIdentity
    patient: MemberIdentity
    patient_id: bytes
    auditor: MemberIdentity
    reader: MemberIdentity
    """A clinician of hospital-1: no right to hospital-0's records without consent."""


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    devnet = Devnet(
        tmp_path_factory.mktemp("read-audit") / "net", 4, consensus={"create_empty_blocks": False}
    )
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


def cast_of(network: Network) -> Cast:
    cast = Cast(
        clinician=MemberIdentity.generate(),
        patient=MemberIdentity.generate(),
        patient_id=secrets.token_bytes(32),
        auditor=MemberIdentity.generate(),
        reader=MemberIdentity.generate(),
    )

    async def both() -> None:
        await _register(
            network.a,
            [
                (cast.clinician, Role.CLINICIAN, NO_PATIENT),
                (cast.patient, Role.PATIENT, cast.patient_id),
                (cast.auditor, Role.AUDITOR, NO_PATIENT),
            ],
        )
        await _register(network.b, [(cast.reader, Role.CLINICIAN, NO_PATIENT)])

    asyncio.run(both())
    return cast


async def store(network: Network, cast: Cast) -> bytes:
    async with EmrClient(network.a.rpc_url, cast.clinician) as author:
        stored = await author.put_record(
            PLAINTEXT, cast.patient_id, RecordType.LAB_RESULT)
    return stored.record_id


@dataclass(frozen=True, slots=True)
class Attempt:
    """One read as the attacker sent it: the access event's id, and what the node answered."""

    event_id: bytes
    served: bool
    status: int
    code: str


async def read_with(client: EmrClient, record_id: bytes, event: Any) -> Attempt:
    """GET the record with exactly this access event (the attacker crafts it)."""
    try:
        reply = await client._request(
            "GET",
            f"/records/{record_id.hex()}",
            signed=True,
            headers={HEADER_ACCESS_EVENT: event.encode().hex()},
            limit=1 << 20,
        )
    except RequestFailedError as refusal:
        return Attempt(event.tx_id, False, refusal.status, refusal.code)
    assert reply["access_event_tx_id"] == event.tx_id.hex()
    return Attempt(event.tx_id, True, 200, "")


async def event_for(
    client: EmrClient, record_id: bytes, *, nonce: int | None = None, grant_id: bytes = NO_PATIENT
) -> Any:
    return transactions.access_event(
        client.identity,
        await client.chain_id(),
        nonce if nonce is not None else await client.next_nonce(),
        record_id=record_id,
        grant_id=grant_id,
    )


async def trail_of(network: Network, auditor: MemberIdentity, record_id: bytes) -> list[dict]:
    async with EmrClient(network.devnet.rpc_urls[3], auditor) as client:
        return (await client.access_events(record_id=record_id, limit=1000))["events"]


async def position(network: Network, identity: MemberIdentity, tx_id: bytes) -> tuple[int, int]:
    """(height, index) of a committed transaction, as node 3 reports it."""
    async with EmrClient(network.devnet.rpc_urls[3], identity) as client:
        committed = await client._request("GET", f"/txs/{tx_id.hex()}", signed=True)
    assert committed["status"] == "committed", committed
    return committed["height"], committed["index"]


async def served_reads_are_recorded(
    network: Network, cast: Cast, record_id: bytes, attempts: list[Attempt]
) -> list[dict]:
    """The invariant: each served read's event is committed OK and in the record's trail as an
    access by its reader. Returns the trail (newest first)."""
    events = await trail_of(network, cast.auditor, record_id)
    recorded = {event["event_id"]: event for event in events if event["kind"] == "access"}
    for attempt in attempts:
        if attempt.served:
            assert attempt.event_id.hex() in recorded, "a served read left no access event"
    return events


def test_an_access_event_with_a_random_grant_id_is_not_served(network: Network) -> None:
    cast = cast_of(network)

    async def scenario() -> tuple[list[Attempt], int, int]:
        record_id = await store(network, cast)
        async with EmrClient(network.a.rpc_url, cast.reader) as reader:
            before = (await reader.account())["next_nonce"]
            attempts = []
            for _ in range(6):
                bogus = secrets.token_bytes(32)
                event = await event_for(reader, record_id, nonce=before, grant_id=bogus)
                attempts.append(await read_with(reader, record_id, event))
            after = (await reader.account())["next_nonce"]
        await served_reads_are_recorded(network, cast, record_id, attempts)
        return attempts, before, after

    attempts, before, after = asyncio.run(scenario())
    assert [(attempt.served, attempt.status) for attempt in attempts] == [(False, 404)] * 6
    assert after == before  # nothing reached the chain: the nonce is still free


def test_a_grant_id_that_is_not_the_readers_is_not_served(network: Network) -> None:
    """Entitled by one grant, naming another (someone else's): the event as named would fail."""
    cast, other = cast_of(network), cast_of(network)

    async def scenario() -> Attempt:
        record_id = await store(network, cast)
        async with EmrClient(network.a.rpc_url, cast.patient) as patient:
            await patient.grant(record_id=record_id, grantee_member=cast.reader.member_key)
        other_record = await store(network, other)
        async with EmrClient(network.a.rpc_url, other.patient) as patient:
            foreign = await patient.grant(
                record_id=other_record, grantee_member=other.reader.member_key
            )
        async with EmrClient(network.a.rpc_url, cast.reader) as reader:
            event = await event_for(reader, record_id, grant_id=foreign.tx_id)
            attempt = await read_with(reader, record_id, event)
        await served_reads_are_recorded(network, cast, record_id, [attempt])
        return attempt

    attempt = asyncio.run(scenario())
    assert (attempt.served, attempt.status) == (False, 404)


def test_a_read_behind_a_pending_key_rotation_is_not_served(network: Network) -> None:
    cast = cast_of(network)

    async def scenario() -> tuple[Attempt, list[dict]]:
        record_id = await store(network, cast)
        async with EmrClient(network.a.rpc_url, cast.patient) as patient:
            await patient.grant(record_id=record_id, grantee_member=cast.reader.member_key)
        async with EmrClient(network.a.rpc_url, cast.reader) as reader:
            chain_id = await reader.chain_id()
            rotation = transactions.rotate_key(
                cast.reader,
                chain_id,
                await reader.next_nonce(),
                new_identity=MemberIdentity.generate(),
            )
            event = await event_for(reader, record_id)  # the nonce after the rotation's
            assert (await reader.submit(rotation)).accepted
            attempt = await read_with(reader, record_id, event)
        events = await served_reads_are_recorded(network, cast, record_id, [attempt])
        return attempt, events

    attempt, events = asyncio.run(scenario())
    assert not attempt.served, "a read signed with a key being rotated away was served"
    assert attempt.event_id.hex() not in {event["event_id"] for event in events}


async def nonce_committed(client: EmrClient, nonce: int, timeout_s: float = 30.0) -> None:
    """Poll until the client's committed nonce reaches `nonce`."""
    deadline = time.monotonic() + timeout_s
    while (await client.account())["committed_nonce"] < nonce:
        assert time.monotonic() < deadline, f"nonce {nonce} not committed in {timeout_s} s"
        await asyncio.sleep(0.05)


def test_a_read_whose_nonce_is_spent_through_another_node(network: Network) -> None:
    """The reader spends the event's nonce on another transaction sent to node 2 at the same
    moment: whichever the chain orders first wins. A served read must be the recorded one."""
    cast = cast_of(network)

    async def scenario() -> list[Attempt]:
        record_id = await store(network, cast)
        async with EmrClient(network.a.rpc_url, cast.patient) as patient:
            await patient.grant(record_id=record_id, grantee_member=cast.reader.member_key)
        attempts = []
        async with (
            EmrClient(network.a.rpc_url, cast.reader) as reader,
            EmrClient(network.devnet.rpc_urls[2], cast.reader) as elsewhere,
        ):
            for round_number in range(4):
                nonce = (await reader.account())["next_nonce"]
                spend = transactions.break_glass(
                    cast.reader,
                    await reader.chain_id(),
                    nonce,
                    patient_id=cast.patient_id,
                    reason=f"spending the nonce, round {round_number}",
                    duration_ms=1_000,
                )
                event = await event_for(reader, record_id, nonce=nonce)
                spent, attempt = await asyncio.gather(
                    elsewhere.submit(spend), read_with(reader, record_id, event)
                )
                attempts.append(attempt)
                if spent.accepted:  # whichever of the two won, the nonce is used once committed
                    await nonce_committed(reader, nonce)
                reader.forget_nonce()
        await served_reads_are_recorded(network, cast, record_id, attempts)
        return attempts

    attempts = asyncio.run(scenario())
    for attempt in attempts:
        assert attempt.served or attempt.status in (404, 409), attempt


def test_reads_racing_a_revocation(network: Network) -> None:
    """Three of hospital-1's clinicians read again and again under the patient's organisation
    grant while the patient revokes it. Every served read is recorded, and ordered before the
    revocation; after the revocation's block nothing is served."""
    cast = cast_of(network)
    readers = [cast.reader, MemberIdentity.generate(), MemberIdentity.generate()]
    asyncio.run(
        _register(network.b, [(reader, Role.CLINICIAN, NO_PATIENT) for reader in readers[1:]])
    )

    first_read = asyncio.Event()

    async def read_until_refused(reader: MemberIdentity, record_id: bytes) -> list[Attempt]:
        attempts: list[Attempt] = []
        async with EmrClient(network.a.rpc_url, reader) as client:
            for _ in range(40):
                attempt = await read_with(client, record_id, await event_for(client, record_id))
                attempts.append(attempt)
                client.forget_nonce()
                if attempt.served:
                    first_read.set()
                elif attempt.status == 404:
                    break  # the revocation is committed: refused before anything went on chain
        return attempts

    async def revoke_during_the_reads(grant_id: bytes) -> bytes:
        async with EmrClient(network.a.rpc_url, cast.patient) as patient:
            await first_read.wait()
            return (await patient.revoke(grant_id)).tx_id

    async def scenario() -> tuple[list[Attempt], tuple[int, int], dict[bytes, tuple[int, int]]]:
        record_id = await store(network, cast)
        async with EmrClient(network.a.rpc_url, cast.patient) as patient:
            grant = await patient.grant(
                patient_id=cast.patient_id, grantee_organization=network.b.organization_id
            )
        *per_reader, revoke_id = await asyncio.gather(
            *(read_until_refused(reader, record_id) for reader in readers),
            revoke_during_the_reads(grant.tx_id),
        )
        attempts = [attempt for batch in per_reader for attempt in batch]
        await served_reads_are_recorded(network, cast, record_id, attempts)
        revoked_at = await position(network, cast.patient, revoke_id)
        served_at = {
            attempt.event_id: await position(network, cast.auditor, attempt.event_id)
            for attempt in attempts
            if attempt.served
        }
        return attempts, revoked_at, served_at

    attempts, revoked_at, served_at = asyncio.run(scenario())
    assert served_at, "no read raced the revocation"
    assert all(at < revoked_at for at in served_at.values()), "a read ordered after the revocation"
    # Every reader ended refused: no read is served once the revocation is committed.
    assert all(not attempt.served for attempt in attempts if attempt.status == 404)


def idle_height(network: Network) -> int:
    """Wait until the chain stops making blocks (create_empty_blocks = false); its height."""
    devnet = network.devnet
    last = [devnet.height(0), time.monotonic()]

    def settled() -> bool:
        height = devnet.height(0)
        if height != last[0]:
            last[:] = [height, time.monotonic()]
        return time.monotonic() - last[1] > 1.0

    devnet.wait_for(settled, 30, "the chain to go idle", poll_s=0.1)
    return last[0]


def wait_past(deadline_ms: int, network: Network) -> None:
    network.devnet.wait_for(
        lambda: time.time_ns() // 1_000_000 > deadline_ms + 50, 30, "the wall clock", poll_s=0.05
    )


@pytest.mark.parametrize("basis", ["record grant", "patient grant", "break-glass"])
def test_expired_consent_on_an_idle_chain_is_not_served(network: Network, basis: str) -> None:
    """The chain's last block is older than the expiry: the node judges consent at its own clock
    too, so the expired grant or session serves nothing, and nothing goes on chain."""
    cast = cast_of(network)
    lifetime_ms = 3_000

    async def prepare() -> tuple[bytes, int]:
        record_id = await store(network, cast)
        expires_at_ms = time.time_ns() // 1_000_000 + lifetime_ms
        if basis == "break-glass":
            async with EmrClient(network.a.rpc_url, cast.reader) as reader:
                await reader.break_glass(cast.patient_id, "unconscious, no consent", lifetime_ms)
            # The session ends at its block's time + lifetime; that block is committed by now.
            expires_at_ms = time.time_ns() // 1_000_000 + lifetime_ms
        else:
            scope: dict[str, bytes] = (
                {"record_id": record_id}
                if basis == "record grant"
                else {"patient_id": cast.patient_id}
            )
            async with EmrClient(network.a.rpc_url, cast.patient) as patient:
                await patient.grant(
                    **scope, grantee_member=cast.reader.member_key, expires_at_ms=expires_at_ms
                )
        async with EmrClient(network.a.rpc_url, cast.reader) as reader:
            assert (await reader.get_record(record_id)).plaintext == PLAINTEXT  # in force
        return record_id, expires_at_ms

    record_id, expires_at_ms = asyncio.run(prepare())
    height = idle_height(network)
    wait_past(expires_at_ms, network)
    assert network.devnet.height(0) == height  # no block since: the chain's clock stopped

    async def attack() -> tuple[Attempt, list[dict]]:
        async with EmrClient(network.a.rpc_url, cast.reader) as reader:
            attempt = await read_with(reader, record_id, await event_for(reader, record_id))
        return attempt, await served_reads_are_recorded(network, cast, record_id, [attempt])

    attempt, events = asyncio.run(attack())
    assert (attempt.served, attempt.status) == (False, 404)
    assert network.devnet.height(0) == height  # refused before anything went on chain
    assert attempt.event_id.hex() not in {event["event_id"] for event in events}


def test_a_node_killed_right_after_serving_keeps_the_event(network: Network) -> None:
    """kill -9 the serving node as soon as the read's reply is in: its event was committed
    before the reply left, so the restarted node (and every other) has it. On four validators
    a node that served at admission could still lose this race to its own gossip (20 ms);
    tests/rpc/test_read_waits_for_commit.py pins the order deterministically."""
    cast = cast_of(network)
    devnet = network.devnet

    async def read_once(record_id: bytes) -> Attempt:
        async with EmrClient(network.a.rpc_url, cast.reader) as reader:
            return await read_with(reader, record_id, await event_for(reader, record_id))

    record_id = asyncio.run(store(network, cast))

    async def grant() -> None:
        async with EmrClient(network.a.rpc_url, cast.patient) as patient:
            await patient.grant(record_id=record_id, grantee_member=cast.reader.member_key)

    asyncio.run(grant())
    served = []
    for _ in range(3):
        attempt = asyncio.run(read_once(record_id))
        devnet.kill(0)  # no shutdown code runs
        assert attempt.served, attempt
        served.append(attempt)
        devnet.start(0)
        devnet.wait_for(lambda: devnet.try_status(0) is not None, 60, "node 0 to restart")

    async def trail_on_node0() -> list[str]:
        async with EmrClient(network.a.rpc_url, cast.auditor) as auditor:
            events = (await auditor.access_events(record_id=record_id))["events"]
        return [event["event_id"] for event in events]

    on_node0 = asyncio.run(trail_on_node0())
    elsewhere = asyncio.run(served_reads_are_recorded(network, cast, record_id, served))
    for attempt in served:
        assert attempt.event_id.hex() in on_node0
        assert attempt.event_id.hex() in {event["event_id"] for event in elsewhere}


def test_an_admin_does_not_read_without_the_patient(network: Network) -> None:
    """Hospital-0's admin tries every way to its organisation's record: a grant to itself with
    a random wrapped key, a grant to a clinician it registers, that clinician's read (as a
    colleague of the author). None serves the plaintext."""
    cast = cast_of(network)
    admin = network.a.admin
    puppet = MemberIdentity.generate()
    asyncio.run(_register(network.a, [(puppet, Role.CLINICIAN, NO_PATIENT)]))

    async def scenario() -> tuple[list[str], list[Attempt], list[dict]]:
        record_id = await store(network, cast)
        refusals = []
        async with EmrClient(network.a.rpc_url, admin) as client:
            chain_id = await client.chain_id()
            for grantee in (admin, puppet):
                grant = transactions._grant(
                    admin,
                    chain_id,
                    await client.next_nonce(),
                    scope=transactions.GrantScope.RECORD,
                    target=record_id,
                    grantee_member=grantee.member_key,
                    grantee_organization=None,
                    expires_at_ms=0,
                    wrapped_key_sha256=secrets.token_bytes(32),
                )
                try:
                    await client.submit_and_wait(grant)
                except EmrClientError as refusal:
                    refusals.append(str(refusal))
                client.forget_nonce()
            attempts = [await read_with(client, record_id, await event_for(client, record_id))]
        async with EmrClient(network.a.rpc_url, puppet) as client:
            attempts.append(await read_with(client, record_id, await event_for(client, record_id)))
        events = await served_reads_are_recorded(network, cast, record_id, attempts)
        return refusals, attempts, events

    refusals, attempts, events = asyncio.run(scenario())
    assert len(refusals) == 2 and all("ROLE_NOT_PERMITTED" in text for text in refusals)
    assert [(attempt.served, attempt.status) for attempt in attempts] == [(False, 404)] * 2
    assert events == []  # not even an attempt reached the chain


def test_an_admin_who_reenrols_a_patient_id_reads_only_on_a_flagged_basis(
    network: Network,
) -> None:
    """The one way left for an admin: revoke the patient and register a key it holds for the
    same patient id. The read is served — identity proofing is the admin's job — but on the
    basis `reenrolled_patient`, flagged, with the re-enrolment in the patient's trail and the
    auditors' review queue."""
    cast = cast_of(network)
    impostor = MemberIdentity.generate()

    async def scenario() -> tuple[dict, list[dict], list[dict]]:
        record_id = await store(network, cast)
        async with EmrClient(network.a.rpc_url, network.a.admin) as admin:
            chain_id = await admin.chain_id()
            await admin.submit_and_wait(
                transactions.revoke_member(
                    network.a.admin, chain_id, await admin.next_nonce(),
                    member_key=cast.patient.member_key, reason="lost device",
                )
            )  # fmt: skip
        await _register(network.a, [(impostor, Role.PATIENT, cast.patient_id)])
        async with EmrClient(network.a.rpc_url, impostor) as client:
            read = await client._request(
                "GET",
                f"/records/{record_id.hex()}",
                signed=True,
                headers={
                    HEADER_ACCESS_EVENT: (await event_for(client, record_id)).encode().hex()
                },
                limit=1 << 20,
            )
        async with EmrClient(network.a.rpc_url, cast.auditor) as auditor:
            patient_trail = (await auditor.access_events(patient_id=cast.patient_id))["events"]
        return read, patient_trail, await trail_of(network, cast.auditor, record_id)

    read, patient_trail, record_trail = asyncio.run(scenario())
    assert read["via"] == "reenrolled_patient"
    newest = record_trail[0]
    assert (newest["actor"], newest["basis"]) == (impostor.member_key.hex(), "reenrolled_patient")
    assert newest["flagged_for_review"]
    reenrolment = next(event for event in patient_trail if event["kind"] == "reenrolment")
    assert reenrolment["actor"] == network.a.admin.member_key.hex()
    assert reenrolment["flagged_for_review"]
