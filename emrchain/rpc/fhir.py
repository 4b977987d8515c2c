"""The `/fhir` facade (`docs/spec/fhir.md`): the chain's anchors, consent, access trail and
members as FHIR R4 resources (`application/fhir+json`), mapped by `emrchain/fhir`.

Same authentication and the same access rules as the JSON routes: every route but
`/fhir/metadata` is signed; a record is shown to who may list its trail or read it now (as
`GET /records/{id}/custody`), a patient's grants, trail and records to who may list them
(`list_decision`), a member's details to who may see its account. Unknown and not yours answer
alike (404). The facade serves metadata only: a DocumentReference points at the node's read
route, `GET /records/{id}`, which records an access event before it serves the ciphertext, so
no content leaves the node through `/fhir`. Errors are OperationOutcomes (`errors.py`).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from aiohttp import web

from emrchain.fhir import resources
from emrchain.fhir.capability import capability_statement
from emrchain.fhir.search import SEARCH_PARAMETERS, Search, SearchError, parse_search
from emrchain.rpc.auth import Authenticator, Caller
from emrchain.rpc.errors import RpcError
from emrchain.rpc.node_view import NodeView
from emrchain.rpc.records import consent_json, event_json, may_see_account
from emrchain.schema import ErasureReason, Role
from emrchain.state.emr import list_decision, queries, read_decision
from emrchain.state.emr.audit import AccessBasis, AccessEvent
from emrchain.state.emr.history import ConsentEntry, read_ended_grant
from emrchain.state.emr.records import EmrRecord
from emrchain.state.emr.tables import patient_member, read_grant
from emrchain.state.progress import read_progress
from emrchain.state.view import StateView
from emrchain.storage.cid import cid_bytes_to_text

T = TypeVar("T")
FHIR_PREFIX = "/fhir"
ORGANIZATION_ID = re.compile(r"^[a-z0-9._-]{1,64}$")


def fhir_response(resource: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(resource, separators=(",", ":")).encode(),
        status=status,
        content_type=resources.FHIR_JSON,
    )


def anchor_json(view: StateView, record: EmrRecord) -> dict[str, Any]:
    """A record's anchor as the patient record index answers it (field names of
    `GET /patients/{id}/records`) with its amendment status and the records it supersedes
    (as `GET /records/{id}/history`), for the mapping."""
    history = queries.record_history(view, record.record_id)
    return {
        "status": history.status,
        "supersedes": [{"record_id": item.record_id.hex()} for item in history.supersedes],
        "record_id": record.record_id.hex(),
        "patient_id": record.patient_id.hex(),
        "author": record.author.hex(),
        "author_organization": record.author_organization,
        "anchored_height": record.height,
        "anchored_time_ms": record.time_ms,
        "record_type": record.record_type.name.lower(),
        "content_sha256": record.ciphertext_sha256.hex(),
        "cid": cid_bytes_to_text(record.cid) if record.cid else None,
        "size_bytes": record.size_bytes,
        "erased": record.is_erased,
        "erasure_reason": ErasureReason(record.erasure_reason).name.lower()
        if record.is_erased
        else None,
        "erased_time_ms": record.erased_time_ms if record.is_erased else None,
    }


def _not_found(what: str) -> RpcError:
    return RpcError(404, "not_found", f"no {what} with this id that you may see")


def _hex_id(text: str, what: str) -> bytes:
    if len(text) != 64 or text.strip("0123456789abcdef"):
        raise _not_found(what)  # not an id this server ever issues
    return bytes.fromhex(text)


class FhirRoutes:
    def __init__(
        self, node: NodeView, authenticator: Authenticator, clock_ms: Callable[[], int]
    ) -> None:
        self._node = node
        self._auth = authenticator
        self._clock_ms = clock_ms
        self._max_count = node.config.rpc.fhir_max_count
        self._max_scan = node.config.rpc.fhir_max_scan

    def routes(self) -> list[web.RouteDef]:
        # The types of `capability.READABLE`, each with its handler.
        read = {
            "DocumentReference": self.document_reference,
            "Consent": self.consent,
            "Provenance": self.provenance,
            "Patient": self.patient,
            "Practitioner": self.practitioner,
            "Organization": self.organization,
        }
        return [
            web.get(f"{FHIR_PREFIX}/metadata", self.metadata),
            *(
                web.get(f"{FHIR_PREFIX}/{name}", self._search_of(name))
                for name in SEARCH_PARAMETERS
            ),
            *(web.get(f"{FHIR_PREFIX}/{name}/{{id}}", handler) for name, handler in read.items()),
        ]

    def _view(self) -> StateView:
        return self._node.chain.state_view()

    def _now_ms(self, view: StateView) -> int:
        """Consent is judged as the read route judges it: never before the last block."""
        return max(read_progress(view)[1], self._clock_ms())

    async def metadata(self, request: web.Request) -> web.Response:
        return fhir_response(capability_statement(self._max_count))

    # ------------------------------------------------------------------------- reads

    def _visible_record(self, view: StateView, caller: Caller, record_id: bytes) -> EmrRecord:
        """The record, to who may list its trail or read it now; else one 404 for both."""
        record = queries.record(view, record_id)
        if record is None or not (
            list_decision(view, caller.key, record_id=record_id).allowed
            or read_decision(view, record_id, caller.key, self._now_ms(view)).allowed
        ):
            raise _not_found("DocumentReference")
        return record

    def _document(self, request: web.Request, view: StateView, record: EmrRecord) -> dict[str, Any]:
        url = f"{request.url.origin()}/records/{record.record_id.hex()}"
        return resources.document_reference(anchor_json(view, record), url)

    async def document_reference(self, request: web.Request) -> web.Response:
        record_id = _hex_id(request.match_info["id"], "DocumentReference")
        caller = await self._auth.authenticate(request)
        view = self._view()
        record = self._visible_record(view, caller, record_id)
        return fhir_response(self._document(request, view, record))

    async def provenance(self, request: web.Request) -> web.Response:
        record_id = _hex_id(request.match_info["id"], "Provenance")
        caller = await self._auth.authenticate(request)
        view = self._view()
        record = self._visible_record(view, caller, record_id)
        return fhir_response(resources.provenance(anchor_json(view, record)))

    async def consent(self, request: web.Request) -> web.Response:
        grant_id = _hex_id(request.match_info["id"], "Consent")
        caller = await self._auth.authenticate(request)
        found = self._consent_by_id(self._view(), caller, grant_id)
        if found is None:
            raise _not_found("Consent")
        return fhir_response(found)

    async def patient(self, request: web.Request) -> web.Response:
        patient_id = _hex_id(request.match_info["id"], "Patient")
        caller = await self._auth.authenticate(request)
        view = self._view()
        holder = patient_member(view, patient_id)
        if holder is None or not list_decision(view, caller.key, patient_id=patient_id).allowed:
            raise _not_found("Patient")
        return fhir_response(
            resources.patient(
                patient_id.hex(), organization_id=holder.organization_id, active=holder.is_active
            )
        )

    async def practitioner(self, request: web.Request) -> web.Response:
        member_id = _hex_id(request.match_info["id"], "Practitioner")
        caller = await self._auth.authenticate(request)
        found = queries.member(self._view(), member_id)
        # A patient member is a Patient; any other member as its account shows it.
        if (
            found is None
            or found.member.member_id != member_id
            or found.member.role == Role.PATIENT
            or not may_see_account(caller, found.member)
        ):
            raise _not_found("Practitioner")
        member = found.member
        return fhir_response(
            resources.practitioner(
                {
                    "member_id": member.member_id.hex(),
                    "organization_id": member.organization_id,
                    "role": member.role.name.lower(),
                    "active": member.is_active,
                }
            )
        )

    async def organization(self, request: web.Request) -> web.Response:
        """Any member may see an organisation's id and name (they name custodians and
        grantees in every listing)."""
        organization_id = request.match_info["id"]
        await self._auth.authenticate(request)
        found = (
            queries.organisation(self._view(), organization_id)
            if ORGANIZATION_ID.match(organization_id)
            else None
        )
        if found is None:
            raise _not_found("Organization")
        return fhir_response(resources.organization(found.organization_id, found.name))

    # ----------------------------------------------------------------------- searches

    def _search_of(self, resource_type: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            # Authenticated first, as every signed route: an unsigned caller learns nothing,
            # not even which of its parameters the node would refuse.
            caller = await self._auth.authenticate(request)
            try:
                search = parse_search(resource_type, request.query.items(), self._max_count)
            except SearchError as error:
                raise RpcError(400, "bad_search", str(error)) from None
            page, total = self._found(request, caller, search)
            origin = str(request.url.origin())
            return fhir_response(resources.searchset(page, origin, total))

        return handler

    def _found(
        self, request: web.Request, caller: Caller, search: Search
    ) -> tuple[list[dict[str, Any]], int | None]:
        view = self._view()
        if search.resource_type == "Consent":
            return self._consents(view, caller, search)
        if search.resource_type == "AuditEvent":
            return self._events(view, caller, search)
        if search.resource_type == "Provenance":

            def mapped(record: EmrRecord) -> dict[str, Any]:
                return resources.provenance(anchor_json(view, record))

        else:

            def mapped(record: EmrRecord) -> dict[str, Any]:
                return self._document(request, view, record)

        wanted = {item for item in (search.resource_id, search.target_id) if item is not None}
        if wanted or search.patient_id is None:
            by_id = self._records_by_id(view, caller, search, wanted)
            return self._collect(search, iter(by_id), len(by_id), mapped)
        patient_id = bytes.fromhex(search.patient_id)
        decision = queries.patient_records_decision(
            view, caller.key, patient_id, self._now_ms(view)
        )
        if not decision.allowed:
            raise _not_found("Patient")
        total = queries.records_of(view, patient_id, None, 0).total
        records = _patient_records(view, patient_id)
        if decision.via == AccessBasis.AUTHOR_ORGANIZATION.label:
            # As GET /patients/{id}/records: an admin lists its organisation's records only.
            organization = caller.member.organization_id
            records = (item for item in records if item.author_organization == organization)
            return self._collect(search, records, None, mapped, filtered=True)
        return self._collect(search, records, total, mapped)

    def _collect(
        self,
        search: Search,
        items: Iterator[T],
        total: int | None,
        mapped: Callable[[T], dict[str, Any]],
        *,
        filtered: bool = False,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The first `_count` matches and how many matched. Without filters only the page is
        mapped and the total is the listing's; with filters at most `[rpc] fhir_max_scan`
        entries are read, and a search that stops there answers what it found, without a
        total (`docs/spec/fhir.md` §2)."""
        if not (search.filters or filtered):
            return [mapped(item) for item in itertools.islice(items, search.count)], total
        page: list[dict[str, Any]] = []
        matched = 0
        for scanned, item in enumerate(items):
            if scanned >= self._max_scan:
                return page, None
            resource = mapped(item)
            if search.matches(resource):
                matched += 1
                if len(page) < search.count:
                    page.append(resource)
        return page, matched

    def _patient_listed(self, view: StateView, caller: Caller, patient_id: str) -> bytes:
        """The patient id, if the caller may list the patient's grants and trail."""
        raw = bytes.fromhex(patient_id)
        if not list_decision(view, caller.key, patient_id=raw).allowed:
            raise _not_found("Patient")
        return raw

    def _records_by_id(
        self, view: StateView, caller: Caller, search: Search, wanted: set[str]
    ) -> list[EmrRecord]:
        """The one record `_id` or `target` names, if the caller may see it (and it is the
        patient's, when a patient is named too)."""
        if len(wanted) != 1:
            return []
        record = queries.record(view, bytes.fromhex(wanted.pop()))
        if record is None:
            return []
        try:
            visible = self._visible_record(view, caller, record.record_id)
        except RpcError:
            return []
        if search.patient_id is not None and visible.patient_id.hex() != search.patient_id:
            return []
        return [visible]

    def _consents(
        self, view: StateView, caller: Caller, search: Search
    ) -> tuple[list[dict[str, Any]], int | None]:
        now_ms = self._now_ms(view)
        if search.patient_id is None:
            assert search.resource_id is not None
            found = self._consent_by_id(view, caller, bytes.fromhex(search.resource_id))
            return self._collect(search, iter([found] if found else []), None, dict, filtered=True)
        patient_id = self._patient_listed(view, caller, search.patient_id)
        total = queries.consents_of(view, patient_id, None, 0).total
        patient_hex = patient_id.hex()

        def mapped(entry: ConsentEntry) -> dict[str, Any]:
            return resources.consent(consent_json(entry, now_ms), now_ms, patient_id=patient_hex)

        return self._collect(search, _consent_history(view, patient_id), total, mapped)

    def _consent_by_id(
        self, view: StateView, caller: Caller, grant_id: bytes
    ) -> dict[str, Any] | None:
        """A grant in force or ended (the consent history keeps it), for who may list the
        patient's grants."""
        grant = read_grant(view, grant_id)
        ended = None if grant is not None else read_ended_grant(view, grant_id)
        if ended is not None:
            grant = ended.grant
        if (
            grant is None
            or not list_decision(view, caller.key, patient_id=grant.patient_id).allowed
        ):
            return None
        now_ms = self._now_ms(view)
        entry = ConsentEntry(0, grant, ended)
        return resources.consent(
            consent_json(entry, now_ms), now_ms, patient_id=grant.patient_id.hex()
        )

    def _events(
        self, view: StateView, caller: Caller, search: Search
    ) -> tuple[list[dict[str, Any]], int | None]:
        assert search.patient_id is not None
        patient_id = self._patient_listed(view, caller, search.patient_id)
        total = queries.access_events_for(view, patient_id=patient_id, limit=0).total

        def mapped(event: AccessEvent) -> dict[str, Any]:
            return resources.audit_event(event_json(event))

        return self._collect(search, _trail(view, patient_id), total, mapped)


def _patient_records(view: StateView, patient_id: bytes) -> Iterator[EmrRecord]:
    """The patient's records from its index, oldest first, a page of state reads at a time."""
    after: int | None = None
    while True:
        page = queries.records_of(view, patient_id, after, queries.MAX_TRAIL_LIMIT)
        for item in page.items:
            yield item.record
        if not page.items or page.items[-1].sequence + 1 >= page.total:
            return
        after = page.items[-1].sequence


def _consent_history(view: StateView, patient_id: bytes) -> Iterator[ConsentEntry]:
    """Every grant ever made for the patient, oldest first, in force or ended."""
    after: int | None = None
    while True:
        page = queries.consents_of(view, patient_id, after, queries.MAX_TRAIL_LIMIT)
        yield from page.items
        if not page.items or page.items[-1].sequence + 1 >= page.total:
            return
        after = page.items[-1].sequence


def _trail(view: StateView, patient_id: bytes) -> Iterator[AccessEvent]:
    """The patient's whole access trail, newest first."""
    before: int | None = None
    while True:
        page = queries.access_events_for(
            view, patient_id=patient_id, limit=queries.MAX_TRAIL_LIMIT, before=before
        )
        yield from page.events
        if not page.events or not page.oldest_sequence:
            return
        before = page.oldest_sequence
