"""Issue #23 "shared with me" on a real node, through the client library: the grants in force
naming a member (or a clinician's organisation), paged by the grantee index (state key 0x45);
only the member itself may list them; forged cursors are refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest

from emrchain.client.replies import BadRequest, NotFound
from emrchain.rpc import openapi_schemas as replies
from tests.rpc.bounded import run
from tests.rpc.listing_cast import Cast, as_member, running_cast


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    yield from running_cast(tmp_path_factory, "shared")


def test_record_grants_are_listed_page_by_page_until_revoked(cast: Cast) -> None:
    async def scenario() -> tuple[list[bytes], list[dict[str, Any]], dict[str, Any], list[str]]:
        async with as_member(cast, cast.patient) as owner:
            grants = [
                (
                    await owner.grant(
                        record_id=record.record_id, grantee_member=cast.colleague.member_key
                    )
                ).tx_id
                for record in cast.records
            ]
            async with as_member(cast, cast.colleague) as colleague:
                first = await colleague.shared_with_me(limit=2)
                jsonschema_rs.validate(replies.SHARED, first)  # the OpenAPI document's
                walked = [item async for item in colleague.all_shared_with_me(page_limit=1)]
                await owner.revoke(grants[0])
                after = await colleague.shared_with_me()
                return grants, walked, after, [item["grant_id"] for item in first["shared"]]

    grants, walked, after, first_page = run(scenario())
    assert sorted(item["grant_id"] for item in walked) == sorted(g.hex() for g in grants)
    assert len(first_page) == 2 and set(first_page) <= {g.hex() for g in grants}
    by_record = {item["record_id"]: item for item in walked}
    assert set(by_record) == {record.record_id.hex() for record in cast.records}
    item = by_record[cast.records[0].record_id.hex()]
    assert (item["scope"], item["grantee_kind"]) == ("record", "member")
    assert item["patient_id"] == cast.patient_id.hex() and item["expires_time_ms"] is None
    assert item["granted_height"] > 0
    assert sorted(i["grant_id"] for i in after["shared"]) == sorted(g.hex() for g in grants[1:])
    assert after["next"] is None


def test_an_organisation_grant_is_listed_for_its_clinicians_only(cast: Cast) -> None:
    async def scenario() -> tuple[bytes, list[dict[str, Any]], list[dict[str, Any]]]:
        async with as_member(cast, cast.patient) as owner:
            grant = await owner.grant(
                patient_id=cast.patient_id, grantee_organization=cast.organization_id
            )
            own = await owner.grant(
                record_id=cast.records[1].record_id, grantee_member=cast.clinician.member_key
            )
        async with as_member(cast, cast.clinician) as clinician:
            # One a page: the walk crosses from the member's index to its organisation's.
            listed = [item async for item in clinician.all_shared_with_me(page_limit=1)]
            assert own.tx_id.hex() in {item["grant_id"] for item in listed}
        async with as_member(cast, cast.auditor) as auditor:
            not_for_auditors = [item async for item in auditor.all_shared_with_me()]
        return grant.tx_id, listed, not_for_auditors

    grant_id, listed, not_for_auditors = run(scenario())
    [item] = [item for item in listed if item["grant_id"] == grant_id.hex()]
    assert (item["scope"], item["record_id"], item["grantee_kind"]) == (
        "patient",
        None,
        "organization",
    )
    assert item["patient_id"] == cast.patient_id.hex()
    assert grant_id.hex() not in {item["grant_id"] for item in not_for_auditors}


def test_another_member_cannot_list_someone_elses(cast: Cast) -> None:
    async def scenario() -> list[str]:
        codes = []
        for member in (cast.clinician, cast.patient, cast.auditor):
            async with as_member(cast, member) as client:
                path = f"/members/{cast.colleague.member_key.hex()}/shared"
                with pytest.raises(NotFound) as caught:
                    await client._request("GET", path, signed=True)
                codes.append(caught.value.code)
        return codes

    assert run(scenario()) == ["not_found"] * 3


def test_forged_and_foreign_cursors_are_refused(cast: Cast) -> None:
    async def scenario() -> tuple[list[str], str | None]:
        async with as_member(cast, cast.patient) as owner:
            for record in cast.records[:2]:
                await owner.grant(
                    record_id=record.record_id, grantee_member=cast.auditor.member_key
                )
        async with as_member(cast, cast.auditor) as auditor:
            page = await auditor.shared_with_me(limit=1)
            own = page["next"]
        assert own is not None
        flipped = own[:-1] + ("0" if own[-1] != "0" else "1")  # still under the prefix: fine
        foreign = "45" + "01" + cast.colleague.member_key.hex() + "00" * 32 + "11" * 32
        codes = []
        async with as_member(cast, cast.auditor) as auditor:
            await auditor.shared_with_me(after=flipped)
            for forged in (foreign, own[:-2], "zz" * 98, own.upper(), "0" * 196):
                with pytest.raises(BadRequest) as caught:
                    await auditor.shared_with_me(after=forged)
                codes.append(caught.value.code)
        return codes, own

    codes, _ = run(scenario())
    assert codes == ["bad_cursor"] * 5


def test_an_expired_grant_not_yet_pruned_is_not_listed(cast: Cast) -> None:
    """Judged at max(last block time, the node's clock), like a read: on an idle chain the
    grant leaves the listing at its expiry while it is still in state, not yet pruned."""

    async def scenario() -> tuple[bytes, list[str], list[str], list[str]]:
        async with as_member(cast, cast.patient) as owner:
            expiring = await owner.grant(
                patient_id=cast.patient_id,
                grantee_member=cast.colleague.member_key,
                expires_at_ms=int(time.time() * 1000) + 8_000,
            )
            async with as_member(cast, cast.colleague) as colleague:
                before = [item["grant_id"] async for item in colleague.all_shared_with_me()]
                deadline = time.monotonic() + 60
                listed = before
                while expiring.tx_id.hex() in listed and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    listed = [item["grant_id"] async for item in colleague.all_shared_with_me()]
            stored = (await owner.grants(patient_id=cast.patient_id))["grants"]
        return expiring.tx_id, before, listed, [item["grant_id"] for item in stored]

    grant_id, before, listed, in_state = run(scenario())
    assert grant_id.hex() in before
    assert grant_id.hex() not in listed
    assert grant_id.hex() in in_state  # no grant for the patient was written since: not pruned
