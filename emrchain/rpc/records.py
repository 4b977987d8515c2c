"""Record routes (`docs/spec/rpc.md`): upload ciphertext, consented reads that leave an on-chain
access event, grant and access-trail listings, member accounts."""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emrchain._core.schema import AccessAction, Role, TxKind
from emrchain.records.service import CustodyError
from emrchain.rpc.auth import Authenticator, Caller
from emrchain.rpc.errors import RpcError, hex_argument
from emrchain.rpc.guard import defer_continue, read_body
from emrchain.rpc.openapi import MAX_EVENTS_LIMIT, DocumentLimits
from emrchain.rpc.parse import decimal, lower_hex
from emrchain.rpc.signing import HEADER_ACCESS_EVENT
from emrchain.state.emr import list_decision, queries, read_decision
from emrchain.state.emr.audit import AccessEvent
from emrchain.state.emr.records import EmrRecord, Grant
from emrchain.state.keys import nonce_key
from emrchain.state.nonce_anchor import read_progress
from emrchain.storage.cid import cid_bytes_to_text
from emrchain.storage.interfaces import (
    BlobCorruptedError,
    BlobNotFoundError,
    StorageUnavailableError,
)
from emrchain.types import Transaction
from emrchain.types.codec import DecodeError

if TYPE_CHECKING:
    from emrchain.node.node import Node


def grant_json(grant: Grant) -> dict[str, Any]:
    return {
        "grant_id": grant.grant_id.hex(),
        "scope": grant.scope.name.lower(),
        "target": grant.target.hex(),
        "patient_id": grant.patient_id.hex(),
        "grantee_kind": grant.grantee_kind.name.lower(),
        "grantee_member": grant.grantee_member.hex(),
        "grantee_organization": grant.grantee_organization,
        "grantor": grant.grantor.hex(),
        "expires_at_ms": grant.expires_at_ms,
        "height": grant.height,
        "time_ms": grant.time_ms,
    }


def event_json(event: AccessEvent) -> dict[str, Any]:
    return {
        "kind": event.event_kind.name.lower(),
        "event_id": event.event_id.hex(),
        "patient_id": event.patient_id.hex(),
        "record_id": event.record_id.hex(),
        "actor": event.actor.hex(),
        "actor_organization": event.actor_organization,
        "action": event.action,
        "basis": event.basis.name.lower(),
        "grant_id": event.grant_id.hex(),
        "reason": event.reason,
        "expires_at_ms": event.expires_at_ms,
        "flagged_for_review": event.flagged_for_review,
        "height": event.height,
        "time_ms": event.time_ms,
    }


class RecordRoutes:
    def __init__(self, node: Node, authenticator: Authenticator) -> None:
        self._node = node
        self._auth = authenticator
        self._max_tx_bytes = node.config.limits.max_tx_bytes
        self._max_access_event_hex = DocumentLimits(
            max_tx_bytes=self._max_tx_bytes, max_header_bytes=node.config.rpc.max_header_bytes
        ).max_access_event_hex

    def routes(self) -> list[web.RouteDef]:
        return [
            web.put("/records/{record_id}/ciphertext", self.upload, expect_handler=defer_continue),
            web.get("/records/{record_id}", self.read),
            web.get("/records/{record_id}/grants", self.record_grants),
            web.get("/records/{record_id}/access-events", self.record_events),
            web.get("/patients/{patient_id}/grants", self.patient_grants),
            web.get("/patients/{patient_id}/access-events", self.patient_events),
            web.get("/accounts/{member_key}", self.account),
        ]

    def _view(self):
        return self._node.store.state_view()

    # ------------------------------------------------------------------ upload

    async def upload(self, request: web.Request) -> web.Response:
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        caller = await self._auth.authenticate(request)
        body = await read_body(request)
        records = self._node.records
        if caller.member.role not in (Role.CLINICIAN, Role.ADMIN):
            raise RpcError(403, "role_not_permitted", "only clinicians and admins store records")
        if caller.member.organization_id != records.organization_id:
            raise RpcError(
                403, "not_this_organization", "store records through your organisation's node"
            )
        hex_argument(request.query.get("patient_id"), 32, "patient_id")
        custody_wrap = hex_argument(request.query.get("custody_wrap"), 80, "custody_wrap")
        if not body or len(body) > records.max_record_bytes:
            raise RpcError(413, "record_too_large", f"1..{records.max_record_bytes} bytes")
        if queries.record(self._view(), record_id) is not None:
            raise RpcError(409, "record_exists", "a record with this id is already anchored")
        try:
            stored = await records.store(record_id, body, custody_wrap)
        except CustodyError as error:
            raise RpcError(400, "bad_custody_wrap", str(error)) from None
        except StorageUnavailableError as error:
            raise RpcError(503, "storage_unavailable", str(error)) from None
        return web.json_response(
            {
                "record_id": record_id.hex(),
                "cid": stored.cid,
                "cid_bytes": stored.cid_bytes.hex(),
                "ciphertext_sha256": stored.ciphertext_sha256.hex(),
                "size": stored.size,
            }
        )

    # -------------------------------------------------------------------- read

    async def read(self, request: web.Request) -> web.Response:
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        caller = await self._auth.authenticate(request)
        view = self._view()
        record = queries.record(view, record_id)
        if record is None:
            raise RpcError(404, "unknown_record", "no record with this id is anchored")
        if record.erasure_reason:
            raise RpcError(410, "erased", "this record was erased; only its tombstone remains")
        _, time_ms = read_progress(view)
        decision = read_decision(view, record_id, caller.key, time_ms)
        if not decision.allowed:
            raise RpcError(403, decision.reason_code.lower(), "consent does not allow this read")
        wrapped_key = self._wrapped_key_for(caller, record, decision.via, decision.grant_id)
        access_event = self._checked_access_event(request, caller, record_id)
        try:
            ciphertext = await self._node.records.ciphertext(
                cid_bytes_to_text(record.cid), record.ciphertext_sha256
            )
        except BlobCorruptedError:
            raise RpcError(
                503, "storage_corrupted", "the stored copy failed its hash check; not served"
            ) from None
        except BlobNotFoundError:
            raise RpcError(404, "ciphertext_unavailable", "no reachable store holds it") from None
        except StorageUnavailableError as error:
            raise RpcError(503, "storage_unavailable", str(error)) from None
        # Only now, with the ciphertext in hand, does the read go on chain: a read that fails
        # above leaves no access event and costs the reader no nonce.
        event_id = self._admit_access_event(access_event)
        return web.json_response(
            {
                "record_id": record_id.hex(),
                "patient_id": record.patient_id.hex(),
                "record_type": int(record.record_type),
                "ciphertext_sha256": record.ciphertext_sha256.hex(),
                "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
                "wrapped_key": wrapped_key.hex(),
                "via": decision.via,
                "access_event_tx_id": event_id.hex(),
            }
        )

    def _wrapped_key_for(
        self, caller: Caller, record: EmrRecord, via: str, grant_id: bytes
    ) -> bytes:
        records = self._node.records
        sealed = records.seal_data_key_for(record.record_id, caller.member.encryption_key)
        if sealed is not None:
            return sealed
        if via == "grant":
            grant = next(
                (
                    item
                    for item in queries.grants_for(self._view(), record_id=record.record_id)
                    if item.grant_id == grant_id
                ),
                None,
            )
            if grant is not None and grant.wrapped_key:
                if grant.grantee_member == caller.member.member_id:
                    return grant.wrapped_key
                try:
                    return records.reseal_with_organization_key(
                        grant.wrapped_key, caller.member.encryption_key
                    )
                except CustodyError:
                    pass
        raise RpcError(
            409,
            "not_custodian",
            f"ask a node of {record.author_organization}: it holds this record's key custody",
        )

    def _checked_access_event(
        self, request: web.Request, caller: Caller, record_id: bytes
    ) -> bytes:
        """The raw ACCESS_EVENT tx of the header, checked to be the caller's read of this
        record (admission to the mempool comes later, once the read can be served)."""
        text = request.headers.get(HEADER_ACCESS_EVENT)
        if text is None or len(text) > self._max_access_event_hex:
            raise RpcError(
                400, "missing_access_event", f"header {HEADER_ACCESS_EVENT} with the signed tx"
            )
        try:
            raw = lower_hex(text)
            tx = Transaction.decode(raw, self._node.chain_id, self._max_tx_bytes)
        except (ValueError, DecodeError) as error:
            raise RpcError(400, "bad_access_event", f"access event tx: {error}") from None
        if (
            tx.kind != TxKind.ACCESS_EVENT
            or tx.sender != caller.key
            or tx.fields["record_id"] != record_id
            or tx.fields["action"] != AccessAction.READ
        ):
            raise RpcError(
                400, "bad_access_event", "must be the caller's READ access event for this record"
            )
        return raw

    def _admit_access_event(self, raw: bytes) -> bytes:
        admission = self._node.mempool.admit_batch([raw])[0]
        if not admission.accepted:
            raise RpcError(409, "access_event_refused", f"{admission.code}: {admission.reason}")
        return admission.tx_id

    # ------------------------------------------------------------------- lists

    async def _listing(self, request: web.Request, **target: bytes) -> Caller:
        caller = await self._auth.authenticate(request)
        decision = list_decision(self._view(), caller.key, **target)
        if decision.reason_code == "RECORD_NOT_FOUND":
            raise RpcError(404, "unknown_record", "no record with this id is anchored")
        if not decision.allowed:
            raise RpcError(403, decision.reason_code.lower(), "not allowed to list this")
        return caller

    async def record_grants(self, request: web.Request) -> web.Response:
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        await self._listing(request, record_id=record_id)
        grants = queries.grants_for(self._view(), record_id=record_id)
        return web.json_response({"grants": [grant_json(grant) for grant in grants]})

    async def patient_grants(self, request: web.Request) -> web.Response:
        patient_id = hex_argument(request.match_info["patient_id"], 32, "patient id")
        await self._listing(request, patient_id=patient_id)
        grants = queries.grants_for(self._view(), patient_id=patient_id)
        return web.json_response({"grants": [grant_json(grant) for grant in grants]})

    async def _events(self, request: web.Request, **target: bytes) -> web.Response:
        limit = decimal(request.query.get("limit", "100"), MAX_EVENTS_LIMIT)
        if not limit:
            raise RpcError(400, "bad_limit", f"limit must be 1..{MAX_EVENTS_LIMIT}")
        await self._listing(request, **target)
        trail = queries.access_events_for(self._view(), limit=limit, **target)
        return web.json_response(
            {
                "events": [event_json(event) for event in trail.events],
                "total": trail.total,
                "dropped": trail.dropped,
            }
        )

    async def record_events(self, request: web.Request) -> web.Response:
        return await self._events(
            request, record_id=hex_argument(request.match_info["record_id"], 32, "record id")
        )

    async def patient_events(self, request: web.Request) -> web.Response:
        return await self._events(
            request, patient_id=hex_argument(request.match_info["patient_id"], 32, "patient id")
        )

    # ----------------------------------------------------------------- account

    async def account(self, request: web.Request) -> web.Response:
        key = hex_argument(request.match_info["member_key"], 32, "member key")
        view = self._view()
        raw = view.get(nonce_key(key))
        committed = struct.unpack(">Q", raw)[0] if raw else 0
        pending = self._node.mempool.pending_nonces(key)
        found = queries.member(view, key)
        member = None
        if found is not None:
            member = {
                "member_id": found.member.member_id.hex(),
                "organization_id": found.member.organization_id,
                "role": found.member.role.name.lower(),
                "patient_id": found.member.patient_id.hex(),
                "encryption_key": found.member.encryption_key.hex(),
                "active": found.member.status.name == "ACTIVE",
                "is_current_key": found.is_current_key,
            }
        return web.json_response(
            {
                "member_key": key.hex(),
                "member": member,
                "committed_nonce": committed,
                "next_nonce": (pending[1] if pending else committed) + 1,
            }
        )
