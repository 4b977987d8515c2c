"""Custody routes (`docs/spec/records.md` §9): the custody set a new record will have, the
custody of an anchored record, and handing a custodian its wrap after the anchor."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from emrchain.records.service import AnchoredCustody, CustodyError, HandedWraps
from emrchain.rpc.auth import Authenticator, Caller
from emrchain.rpc.errors import RpcError, hex_argument
from emrchain.rpc.guard import defer_continue, read_body
from emrchain.rpc.node_view import NodeView
from emrchain.schema import GrantScope, Role
from emrchain.state.emr import list_decision, queries, read_decision
from emrchain.state.emr.custody import (
    RecordCustody,
    custody_set_for,
    read_erasure_receipts,
    read_record_custody,
)
from emrchain.state.emr.records import EmrRecord
from emrchain.state.emr.tables import patient_member, read_grant, read_organization
from emrchain.state.progress import read_progress
from emrchain.state.view import StateView
from emrchain.storage.interfaces import StorageUnavailableError

_AUTHOR_ROLES = (Role.CLINICIAN, Role.ADMIN)


def custodian_urls(entries: tuple[str, ...]) -> dict[str, str]:
    """`[records] custodian_rpc_urls` as organisation id → base URL."""
    return dict(entry.split("=", 1) for entry in entries)


class CustodyRoutes:
    def __init__(self, node: NodeView, authenticator: Authenticator) -> None:
        self._node = node
        self._auth = authenticator
        self._urls = custodian_urls(node.config.records.custodian_rpc_urls)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/custody-set", self.custody_set),
            web.get("/records/{record_id}/custody", self.record_custody),
            web.put("/records/{record_id}/custody", self.accept, expect_handler=defer_continue),
            web.put("/records/{record_id}/grant-wraps/{grant_id}", self.accept_grantee_wrap),
        ]

    def _view(self) -> StateView:
        return self._node.chain.state_view()

    def _custodian_json(
        self, request: web.Request, view: StateView, organization_id: str
    ) -> dict[str, Any]:
        organization = read_organization(view, organization_id)
        address = self._urls.get(organization_id)
        if address is None and organization_id == self._node.records.organization_id:
            # This node serves that organisation: the address the caller reached it at (a
            # node does not know the URL it is reached by; [records] custodian_rpc_urls need
            # not list the node's own organisation).
            address = str(request.url.origin())
        return {
            "organization_id": organization_id,
            "custody_key": organization.encryption_key.hex() if organization else None,
            "node_address": address,
        }

    async def custody_set(self, request: web.Request) -> web.Response:
        """The custody set the policy gives a record the caller would anchor now, with each
        custodian's custody key and node address, and the patient's encryption key."""
        caller = await self._auth.authenticate(request)
        if caller.member.role not in _AUTHOR_ROLES:
            raise RpcError(403, "role_not_permitted", "only clinicians and admins anchor records")
        record_id = hex_argument(request.query.get("record_id"), 32, "record_id")
        patient_id = hex_argument(request.query.get("patient_id"), 32, "patient_id")
        view = self._view()
        patient = patient_member(view, patient_id)
        if patient is None:
            raise RpcError(404, "patient_not_registered", "no patient with this id")
        organizations = custody_set_for(view, record_id, caller.member.organization_id, patient_id)
        return web.json_response(
            {
                "record_id": record_id.hex(),
                "patient_id": patient_id.hex(),
                "patient_encryption_key": patient.encryption_key.hex(),
                "custodians": [
                    self._custodian_json(request, view, item) for item in organizations
                ],
                "height": read_progress(view)[0],
            }
        )

    def _custody_or_404(self, view: StateView, record_id: bytes) -> tuple[EmrRecord, RecordCustody]:
        record = queries.record(view, record_id)
        custody = read_record_custody(view, record_id)
        if record is None or custody is None:
            raise RpcError(404, "not_found", "no record with this id that you may see")
        return record, custody

    def _may_see(self, view: StateView, caller: Caller, record_id: bytes) -> bool:
        """Those who may list the record's trail, or read it now."""
        return (
            list_decision(view, caller.key, record_id=record_id).allowed
            or read_decision(view, record_id, caller.key, read_progress(view)[1]).allowed
        )

    async def record_custody(self, request: web.Request) -> web.Response:
        """An anchored record's custodians (in set order, with node addresses and wrap
        digests) and, once erased, which custodians posted their erasure receipt."""
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        caller = await self._auth.authenticate(request)
        view = self._view()
        record, custody = self._custody_or_404(view, record_id)
        if not self._may_see(view, caller, record_id):
            raise RpcError(404, "not_found", "no record with this id that you may see")
        receipts = read_erasure_receipts(view, record_id)
        custodians = []
        for entry in custody.custodians:
            item = self._custodian_json(request, view, entry.organization_id)
            item["wrap_sha256"] = entry.wrap_sha256.hex()
            item["erasure_confirmed"] = entry.organization_id in receipts
            custodians.append(item)
        return web.json_response(
            {
                "record_id": record_id.hex(),
                "erased": record.is_erased,
                "patient_wrap_sha256": custody.patient_wrap_sha256.hex(),
                "custodians": custodians,
                "erasure_complete": record.is_erased and len(receipts) == len(custody.custodians),
            }
        )

    async def accept(self, request: web.Request) -> web.Response:
        """A client hands this node its organisation's wrap of an anchored record (with the
        ciphertext and the patient's wrap): checked against the chain, then kept."""
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        await self._auth.authenticate(request)
        body = await read_body(request)
        records = self._node.records
        custody_wrap = hex_argument(request.query.get("custody_wrap"), 80, "custody_wrap")
        patient_wrap = hex_argument(request.query.get("patient_wrap"), 80, "patient_wrap")
        if not body or len(body) > records.max_record_bytes:
            raise RpcError(413, "record_too_large", f"1..{records.max_record_bytes} bytes")
        view = self._view()
        record = queries.record(view, record_id)
        custody = read_record_custody(view, record_id)
        if record is None or custody is None:
            raise RpcError(404, "not_anchored", "anchor the record before handing out its wraps")
        if record.is_erased:
            raise RpcError(410, "erased", "this record was erased")
        organization_id = records.organization_id
        digest = custody.wrap_digest_of(organization_id) if organization_id else None
        if digest is None:
            raise RpcError(
                409,
                "not_custodian",
                f"this node's organisation is not a custodian of the record; its custodians: "
                f"{','.join(custody.organization_ids)}",
            )
        anchored = AnchoredCustody(
            record_id,
            record.patient_id,
            record.ciphertext_sha256,
            digest,
            custody.patient_wrap_sha256,
        )
        try:
            stored = await records.accept_custody(
                anchored, HandedWraps(body, custody_wrap, patient_wrap)
            )
        except CustodyError as error:
            raise RpcError(400, "bad_custody_wrap", str(error)) from None
        except StorageUnavailableError as error:
            raise RpcError(503, "storage_unavailable", str(error)) from None
        return web.json_response(
            {
                "record_id": record_id.hex(),
                "organization_id": organization_id,
                "cid": stored.cid,
                "ciphertext_sha256": stored.ciphertext_sha256.hex(),
                "size": stored.size,
            }
        )

    async def accept_grantee_wrap(self, request: web.Request) -> web.Response:
        """A record grant's wrap for its grantee, whose SHA-256 the grant on chain holds: a
        custodian keeps it beside its custody copy (and deletes it at erasure)."""
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        grant_id = hex_argument(request.match_info["grant_id"], 32, "grant id")
        await self._auth.authenticate(request)
        wrap = hex_argument(request.query.get("wrap"), 80, "wrap")
        view = self._view()
        grant = read_grant(view, grant_id)
        if grant is None or grant.scope != GrantScope.RECORD or grant.target != record_id:
            raise RpcError(404, "not_found", "no record grant in force with this id")
        custody = read_record_custody(view, record_id)
        organization_id = self._node.records.organization_id
        if custody is None or organization_id not in custody.organization_ids:
            raise RpcError(409, "not_custodian", "this node's organisation is not a custodian")
        try:
            self._node.records.keep_member_wrap(record_id, grant.wrapped_key_sha256, wrap)
        except CustodyError as error:
            raise RpcError(400, "bad_wrap", str(error)) from None
        return web.json_response(
            {"record_id": record_id.hex(), "grant_id": grant_id.hex(), "kept": True}
        )
