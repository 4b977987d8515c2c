"""Issue #21 on a real node, through the client library: a patient's records and consent
history, and access trails paged back to the first event; who may list them; forged cursors.

State-level tests (tests/state/emr/test_history.py) cover the big counts; here a few items
per listing, paged one or a few at a time, so every page and cursor passes the real route.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest

from emrchain.client import transactions
from emrchain.client.replies import BadRequest, NotFound
from emrchain.keystore.member import MemberIdentity
from emrchain.rpc import openapi_schemas as replies
from emrchain.rpc.errors import RpcError
from emrchain.rpc.pagination import cursor, cursor_sequence
from emrchain.rpc.records import PATIENT_CONSENTS, PATIENT_RECORDS
from emrchain.schema import ErasureReason
from tests.rpc.bounded import run
from tests.rpc.listing_cast import Cast, as_member, running_cast

READS = 7


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    yield from running_cast(tmp_path_factory, "history")


def test_the_patient_lists_its_records_page_by_page_oldest_first(cast: Cast) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with as_member(cast, cast.patient) as owner:
            first = await owner.patient_records(cast.patient_id, limit=2)
            jsonschema_rs.validate(replies.PATIENT_RECORDS, first)  # the OpenAPI document's
            assert first["next"] is not None
            second = await owner.patient_records(cast.patient_id, after=first["next"], limit=2)
            assert second["next"] is None
            walked = [
                item async for item in owner.all_patient_records(cast.patient_id, page_limit=1)
            ]
            return first["records"] + second["records"], walked

    paged, walked = run(scenario())
    assert paged == walked
    assert [item["record_id"] for item in paged] == [r.record_id.hex() for r in cast.records]
    first = paged[0]
    assert first["author"] == cast.clinician.member_key.hex()
    assert first["record_type"] == "CLINICAL_NOTE"
    assert first["erased"] is False and first["cid"] == cast.records[0].cid_text
    assert first["anchored_height"] == cast.records[0].height
    assert first["size_bytes"] == cast.records[0].size_bytes
    assert first["author_organization"] and first["anchored_time_ms"] > 0


def test_an_admin_lists_the_records_its_organisation_authored(cast: Cast) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with as_member(cast, cast.admin) as admin:
            return [item async for item in admin.all_patient_records(cast.patient_id)]

    listed = run(scenario())
    assert [item["record_id"] for item in listed] == [r.record_id.hex() for r in cast.records]
    assert {item["author_organization"] for item in listed} == {cast.organization_id}


def test_cursors_are_bound_to_their_listing_target_and_sequence() -> None:
    target, other = bytes(32), b"\x01" * 32
    made = cursor(PATIENT_RECORDS, target, 41)
    assert cursor_sequence(made, PATIENT_RECORDS, target) == 41
    assert cursor_sequence(None, PATIENT_RECORDS, target) is None
    tag = made.split(".")[1]
    for forged, listing, on in (
        (made, PATIENT_CONSENTS, target),  # another listing
        (made, PATIENT_RECORDS, other),  # another patient
        (f"42.{tag}", PATIENT_RECORDS, target),  # another position
        (made.upper(), PATIENT_RECORDS, target),
        (f"{'9' * 21}.{tag}", PATIENT_RECORDS, target),
        ("41", PATIENT_RECORDS, target),
        ("", PATIENT_RECORDS, target),
    ):
        with pytest.raises(RpcError) as refused:
            cursor_sequence(forged, listing, on)
        assert (refused.value.status, refused.value.code) == (400, "bad_cursor")


def test_another_patient_and_a_clinician_without_consent_are_refused(cast: Cast) -> None:
    async def refused(member: MemberIdentity) -> NotFound:
        async with as_member(cast, member) as client:
            with pytest.raises(NotFound) as caught:
                await client.patient_records(cast.patient_id)
            return caught.value

    for member in (cast.other_patient, cast.clinician, cast.colleague):
        assert run(refused(member)).code == "not_found"

    async def other_patient_consents() -> None:
        async with as_member(cast, cast.other_patient) as client:
            with pytest.raises(NotFound):
                await client.patient_consents(cast.patient_id)

    run(other_patient_consents())


def test_forged_and_foreign_cursors_and_bad_limits_are_refused(cast: Cast) -> None:
    async def scenario() -> list[str]:
        codes = []
        async with as_member(cast, cast.patient) as owner:
            page = await owner.patient_records(cast.patient_id, limit=1)
            sequence, tag = page["next"].split(".")
            attempts: list[Any] = [
                owner.patient_records(cast.patient_id, after=f"{int(sequence) + 1}.{tag}"),
                owner.patient_records(cast.patient_id, after="0.zz"),
                owner.patient_consents(cast.patient_id, after=page["next"]),  # another listing's
                owner.access_events(patient_id=cast.patient_id, before=page["next"]),
                owner._request(  # limit 0: the client refuses it, so ask the route directly
                    "GET", f"/patients/{cast.patient_id.hex()}/records?limit=0", signed=True
                ),
            ]
            for attempt in attempts:
                try:
                    await attempt
                except BadRequest as error:
                    codes.append(error.code)
        return codes

    assert run(scenario()) == ["bad_cursor"] * 4 + ["bad_limit"]


def test_the_access_trail_pages_back_to_the_first_event(cast: Cast) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], list[bytes]]:
        async with as_member(cast, cast.patient) as owner:
            chain_id = await owner.chain_id()
            txs = [
                transactions.access_event(
                    cast.patient,
                    chain_id,
                    await owner.next_nonce(),
                    record_id=cast.records[number % 3].record_id,
                )
                for number in range(READS)
            ]
            await owner.submit_batch(txs)
            for tx in txs:
                await owner.wait_committed(tx.tx_id)
        async with as_member(cast, cast.auditor) as auditor:
            walked = [
                event
                async for event in auditor.all_access_events(
                    patient_id=cast.patient_id, page_limit=3
                )
            ]
            first_page = await auditor.access_events(patient_id=cast.patient_id, limit=3)
            jsonschema_rs.validate(replies.EVENTS, first_page)
        return walked, first_page, [tx.tx_id for tx in txs]

    walked, first_page, sent = run(scenario())
    reads = [event for event in walked if event["kind"] == "access"]
    assert [event["event_id"] for event in reads] == [tx_id.hex() for tx_id in reversed(sent)]
    assert len(walked) == first_page["total"] >= READS
    assert first_page["next"] is not None and first_page["dropped"] == 0
    assert walked[:3] == first_page["events"]


def test_the_consent_history_shows_active_revoked_and_expired_grants(cast: Cast) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], dict[str, bytes], int, int]:
        async with as_member(cast, cast.patient) as owner:
            expires_at_ms = int(time.time() * 1000) + 6_000
            expiring = await owner.grant(
                patient_id=cast.patient_id,
                grantee_member=cast.colleague.member_key,
                expires_at_ms=expires_at_ms,
            )
            revoked = await owner.grant(
                patient_id=cast.patient_id, grantee_member=cast.clinician.member_key
            )
            async with as_member(cast, cast.clinician) as clinician:
                # A patient-scope grant in force lets the clinician list the records.
                listed = await clinician.patient_records(cast.patient_id)
                assert len(listed["records"]) == 3
                revocation = await owner.revoke(revoked.tx_id)
                with pytest.raises(NotFound):
                    await clinician.patient_records(cast.patient_id)
            active = await owner.grant(
                record_id=cast.records[0].record_id, grantee_member=cast.clinician.member_key
            )
            # Consent time is max(last block time, the node's clock): poll until the expiry.
            deadline = time.monotonic() + 60
            while True:
                history = [
                    item async for item in owner.all_patient_consents(cast.patient_id, page_limit=1)
                ]
                if history[0]["status"] == "expired" or time.monotonic() > deadline:
                    page = await owner.patient_consents(cast.patient_id)
                    jsonschema_rs.validate(replies.CONSENTS, page)
                    break
                await asyncio.sleep(0.2)
            ids = {"expiring": expiring.tx_id, "revoked": revoked.tx_id, "active": active.tx_id}
            return history, ids, revocation.height, expires_at_ms

    history, ids, revoked_height, expires_at_ms = run(scenario())
    by_id = {item["grant_id"]: item for item in history}
    assert [item["grant_id"] for item in history] == [
        ids["expiring"].hex(),
        ids["revoked"].hex(),
        ids["active"].hex(),
    ]
    expired = by_id[ids["expiring"].hex()]
    assert (expired["status"], expired["expires_time_ms"]) == ("expired", expires_at_ms)
    assert expired["revoked_height"] is None and expired["scope"] == "patient"
    revoked = by_id[ids["revoked"].hex()]
    assert (revoked["status"], revoked["revoked_height"]) == ("revoked", revoked_height)
    assert revoked["revoked_time_ms"] > 0 and revoked["revoked_by"] == cast.patient.member_key.hex()
    active = by_id[ids["active"].hex()]
    assert (active["status"], active["scope"]) == ("active", "record")
    assert active["record_id"] == cast.records[0].record_id.hex()
    assert active["grantee"] == cast.clinician.member_key.hex()
    assert active["grantee_kind"] == "member" and active["expires_time_ms"] is None


def test_an_erased_record_stays_listed_as_erased(cast: Cast) -> None:
    async def scenario() -> dict[str, Any]:
        async with as_member(cast, cast.patient) as owner:
            await owner.erase(cast.records[2].record_id, ErasureReason.PATIENT_REQUEST)
        async with as_member(cast, cast.auditor) as auditor:
            reply = await auditor.patient_records(cast.patient_id)
            jsonschema_rs.validate(replies.PATIENT_RECORDS, reply)  # an erased one's nulls too
            return reply

    listed = run(scenario())["records"]
    assert [item["erased"] for item in listed] == [False, False, True]
    assert listed[2]["cid"] is None and listed[2]["erasure_reason"] == "patient_request"
