"""Record routes (`docs/spec/rpc.md`): upload ciphertext, consented reads that leave an on-chain
access event, grant and access-trail listings, a patient's records and consent history (paged
with cursors, `pagination.py`), member accounts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emrchain.api.parse import lower_hex
from emrchain.api.signing import HEADER_ACCESS_EVENT, HEADER_RECORD_STATUS
from emrchain.records.service import CustodyError
from emrchain.rpc.auth import Authenticator, Caller
from emrchain.rpc.commit_waits import TxDropped, WaitLimitError, WaitsClosedError
from emrchain.rpc.errors import RpcError, hex_argument
from emrchain.rpc.node_view import NodeView
from emrchain.rpc.openapi import DocumentLimits
from emrchain.rpc.pagination import cursor, cursor_sequence, out_of_range, page_limit
from emrchain.schema import AccessAction, ErasureReason, GranteeKind, GrantScope, Role, TxKind
from emrchain.state.codes import code_name
from emrchain.state.emr import Decision, list_decision, queries, read_decision
from emrchain.state.emr.amendments import AmendmentDetail
from emrchain.state.emr.audit import AccessBasis, AccessEvent
from emrchain.state.emr.custody import read_record_custody
from emrchain.state.emr.entities import Member, MemberStatus
from emrchain.state.emr.history import ConsentEntry
from emrchain.state.emr.records import EmrRecord, Grant, GrantEnd
from emrchain.state.keys import nonce_key
from emrchain.state.progress import read_progress
from emrchain.state.view import StateView
from emrchain.storage.cid import cid_bytes_to_text
from emrchain.storage.interfaces import (
    BlobCorruptedError,
    BlobNotFoundError,
    StorageUnavailableError,
)
from emrchain.types import Transaction
from emrchain.types.codec import DecodeError


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


def indexed_record_json(record: EmrRecord) -> dict[str, Any]:
    """A record of a patient's record index: its anchor, never its ciphertext or key."""
    erased = record.is_erased
    return {
        "record_id": record.record_id.hex(),
        "patient_id": record.patient_id.hex(),
        "author": record.author.hex(),
        "author_organization": record.author_organization,
        "anchored_height": record.height,
        "anchored_time_ms": record.time_ms,
        "record_type": record.record_type.name,
        "content_sha256": record.ciphertext_sha256.hex(),
        "cid": None if erased else cid_bytes_to_text(record.cid),
        "size_bytes": record.size_bytes,
        "erased": erased,
        "erasure_reason": ErasureReason(record.erasure_reason).name.lower() if erased else None,
        "erased_by": record.erased_by.hex() if erased else None,
        "erased_height": record.erased_height if erased else None,
        "erased_time_ms": record.erased_time_ms if erased else None,
    }


_ENDED_STATUS = {
    GrantEnd.REVOKED: "revoked",
    GrantEnd.RECORD_ERASED: "revoked",
    GrantEnd.EXPIRED: "expired",
}


def consent_json(entry: ConsentEntry, time_ms: int) -> dict[str, Any]:
    """A grant of a consent history with its status at consent time `time_ms`: `revoked`
    (by its grantor or patient, or with its record's erasure: `ended` says which), `expired`
    (pruned, or over at `time_ms` and not yet pruned), else `active`."""
    grant, ended = entry.grant, entry.ended
    if ended is not None:
        status = _ENDED_STATUS[ended.end]
    else:
        status = "active" if grant.in_force(time_ms) else "expired"
    revoked = ended is not None and status == "revoked"
    is_member = grant.grantee_kind == GranteeKind.MEMBER
    return {
        "grant_id": grant.grant_id.hex(),
        "scope": grant.scope.name.lower(),
        "record_id": grant.target.hex() if grant.scope == GrantScope.RECORD else None,
        "grantee": grant.grantee_member.hex() if is_member else grant.grantee_organization,
        "grantee_kind": grant.grantee_kind.name.lower(),
        "grantor": grant.grantor.hex(),
        "granted_height": grant.height,
        "granted_time_ms": grant.time_ms,
        "expires_time_ms": grant.expires_at_ms or None,
        "status": status,
        "revoked_height": ended.height if revoked and ended else None,
        "revoked_time_ms": ended.time_ms if revoked and ended else None,
        "revoked_by": ended.ended_by.hex() if revoked and ended else None,
        "ended": ended.end.name.lower() if ended else None,
        "ended_height": ended.height if ended else None,
        "ended_time_ms": ended.time_ms if ended else None,
    }


PATIENT_RECORDS = "patient-records"
PATIENT_CONSENTS = "patient-consents"
PATIENT_EVENTS = "patient-access-events"
RECORD_EVENTS = "record-access-events"
"""The listings' names in their cursors' tags: a cursor of one is refused by the others."""


@dataclass(frozen=True, slots=True)
class _CommittedEvent:
    tx_id: bytes
    height: int
    block_time_ms: int


def _not_found() -> RpcError:
    """One answer for "no such record" and "not yours": members do not learn which records
    exist from the status."""
    return RpcError(404, "not_found", "no record with this id that you may read")


def _knows_of_erasure(caller: Caller, record: EmrRecord) -> bool:
    """Who is told that a record was erased rather than "not found": its author, its patient,
    the member who erased it, and auditors."""
    member = caller.member
    return (
        member.member_id in (record.author, record.erased_by)
        or (member.role == Role.PATIENT and member.patient_id == record.patient_id)
        or member.role == Role.AUDITOR
    )


class RecordRoutes:
    def __init__(
        self, node: NodeView, authenticator: Authenticator, clock_ms: Callable[[], int]
    ) -> None:
        self._node = node
        self._auth = authenticator
        self._clock_ms = clock_ms
        self._access_event_timeout_s = node.config.records.access_event_timeout_ms / 1000
        self._max_tx_bytes = node.config.limits.max_tx_bytes
        self._max_access_event_hex = DocumentLimits(
            max_tx_bytes=self._max_tx_bytes, max_header_bytes=node.config.rpc.max_header_bytes
        ).max_access_event_hex
        self._page_limits = (node.config.rpc.page_limit_default, node.config.rpc.page_limit_max)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/records/{record_id}", self.read),
            web.get("/records/{record_id}/grants", self.record_grants),
            web.get("/records/{record_id}/history", self.record_history),
            web.get("/records/{record_id}/access-events", self.record_events),
            web.get("/patients/{patient_id}/grants", self.patient_grants),
            web.get("/patients/{patient_id}/access-events", self.patient_events),
            web.get("/patients/{patient_id}/records", self.patient_records),
            web.get("/patients/{patient_id}/consents", self.patient_consents),
            web.get("/accounts/{member_key}", self.account),
        ]

    def _view(self):
        return self._node.chain.state_view()

    # -------------------------------------------------------------------- read

    async def read(self, request: web.Request) -> web.Response:
        """Served implies recorded (`docs/spec/access-control.md` §6): everything that can
        refuse the read runs first, then the reader's access event is admitted, and the
        ciphertext and key wrap leave the node only once that event is committed with result
        OK and consent still holds after its block."""
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        caller = await self._auth.authenticate(request)
        access_event, grant_id = self._checked_access_event(request, caller, record_id)
        view = self._view()
        record = self._readable_record(view, caller, record_id)
        time_ms = self._consent_time_ms(view)
        decision = read_decision(view, record_id, caller.key, time_ms, grant_id)
        if not decision.allowed:
            raise _not_found()
        wrapped_key = self._wrapped_key_for(caller, record, decision.via, decision.grant_id)
        ciphertext = await self._ciphertext(record)
        committed = await self._commit_access_event(access_event)
        self._check_recorded_read(caller, record_id, grant_id, committed, decision)
        # Served, never refused, for being amended: the reply says what superseded it.
        amendments = queries.record_amendments(self._view(), record_id)
        return web.json_response(
            {
                "status": amendments.status,
                "superseded_by": [
                    {"record_id": item.record_id.hex(), "reason": item.reason}
                    for item in amendments.superseded_by
                ],
                "record_id": record_id.hex(),
                "patient_id": record.patient_id.hex(),
                "record_type": int(record.record_type),
                "ciphertext_sha256": record.ciphertext_sha256.hex(),
                "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
                "wrapped_key": wrapped_key.hex(),
                "via": decision.via,
                "access_event_tx_id": committed.tx_id.hex(),
                "access_event_height": committed.height,
            },
            headers={HEADER_RECORD_STATUS: amendments.status},
        )

    def _consent_time_ms(self, view: StateView) -> int:
        """The time consent is judged at: never before the last block, nor before now by this
        node's clock — an idle chain's clock must not keep an expired grant alive."""
        _, block_time_ms = read_progress(view)
        return max(block_time_ms, self._clock_ms())

    def _readable_record(self, view: StateView, caller: Caller, record_id: bytes) -> EmrRecord:
        """The record, if it exists and is not erased; a caller who could not read it either
        way learns neither (404), an entitled one learns that it is gone (410)."""
        record = queries.record(view, record_id)
        if record is None:
            raise _not_found()
        if record.is_erased:
            if not _knows_of_erasure(caller, record):
                raise _not_found()
            raise RpcError(410, "erased", "this record was erased; only its tombstone remains")
        return record

    async def _ciphertext(self, record: EmrRecord) -> bytes:
        try:
            return await self._node.records.ciphertext(
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

    async def _commit_access_event(self, raw: bytes) -> _CommittedEvent:
        """Admit the reader's access event and wait until a block commits it with result OK.
        Nothing is served otherwise: a refusal at admission (409), by execution (403), an
        event dropped from the mempool (409) or not committed in time (504)."""
        waits = self._node.commit_waits
        tx_id = hashlib.sha256(raw).digest()
        try:
            committed = waits.expect(tx_id)
        except WaitLimitError:
            raise RpcError(
                503,
                "too_many_reads_waiting",
                "too many reads wait for their access event",
                retry_after_s=1.0,
            ) from None
        except ValueError:
            raise RpcError(409, "access_event_refused", "this access event is in use") from None
        except WaitsClosedError:
            raise RpcError(
                503, "shutting_down", "the node is shutting down", retry_after_s=1.0
            ) from None
        try:
            admission = self._node.admit_now([raw])[0]
            if not admission.accepted:
                raise RpcError(
                    409, "access_event_refused", f"{admission.code}: {admission.reason}"
                )
            outcome = await asyncio.wait_for(committed, self._access_event_timeout_s)
        except TimeoutError:
            raise RpcError(
                504,
                "access_event_not_committed",
                "the access event was not committed in time; the read was not served (the "
                "event may still commit and then stays in the trail)",
            ) from None
        except WaitsClosedError:
            raise RpcError(
                503,
                "shutting_down",
                "the node shut down before the access event was committed; the read was not "
                "served (the event may still commit on the other validators)",
            ) from None
        except TxDropped:
            raise RpcError(
                409,
                "access_event_dropped",
                "the access event left the mempool uncommitted (its nonce was used by another "
                "transaction); the read was not served",
            ) from None
        finally:
            waits.forget(tx_id)
        if outcome.code != 0:
            raise RpcError(
                403,
                "access_event_refused",
                f"the chain refused the access event ({code_name(outcome.code)}: "
                f"{outcome.message}); the read was not served",
            )
        return _CommittedEvent(tx_id, outcome.height, outcome.block_time_ms)

    def _check_recorded_read(
        self,
        caller: Caller,
        record_id: bytes,
        grant_id: bytes,
        committed: _CommittedEvent,
        decision: Decision,
    ) -> None:
        """After the event's block: the trail holds the event on the basis this node is about
        to serve under, and consent still allows it now (a revocation or an expiry in that
        block or since wins; the read stays recorded, and is not served)."""
        view = self._view()
        recorded = queries.recorded_access(view, record_id, committed.tx_id)
        time_ms = max(committed.block_time_ms, self._consent_time_ms(view))
        now = read_decision(view, record_id, caller.key, time_ms, grant_id)
        if (
            recorded is None
            or (recorded.basis.label, recorded.grant_id) != (decision.via, decision.grant_id)
            or (now.via, now.grant_id) != (decision.via, decision.grant_id)
        ):
            raise RpcError(
                403,
                "consent_changed",
                "consent changed while the access event was committed; it is recorded, the "
                "read was not served",
            )

    def _wrapped_key_for(
        self, caller: Caller, record: EmrRecord, via: str, grant_id: bytes
    ) -> bytes:
        """The record's data key sealed to the caller, from this node's custody copy, or from
        the grant the read relies on. Made before the access event goes on chain (a node that
        cannot serve the read must not record it) and released only once it is committed."""
        records = self._node.records
        sealed = records.seal_data_key_for(record.record_id, caller.member.encryption_key)
        if sealed is not None:
            return sealed
        custody = read_record_custody(self._view(), record.record_id)
        if via in ("patient", "reenrolled_patient") and custody is not None:
            # The patient's own wrap, kept by every custodian: it opens with the patient's key
            # even where this node's custody copy is gone.
            patient_wrap = records.member_wrap(record.record_id, custody.patient_wrap_sha256)
            if patient_wrap is not None:
                return patient_wrap
        if via == "grant":
            grant = next(
                (
                    item
                    for item in queries.grants_for(self._view(), record_id=record.record_id)
                    if item.grant_id == grant_id
                ),
                None,
            )
            wrap = (
                records.member_wrap(record.record_id, grant.wrapped_key_sha256)
                if grant is not None and grant.scope == GrantScope.RECORD
                else None
            )
            if grant is not None and wrap is not None:
                if grant.grantee_member == caller.member.member_id:
                    return wrap
                try:
                    return records.reseal_with_organization_key(
                        wrap, caller.member.encryption_key
                    )
                except CustodyError:
                    pass
        holders = custody.organization_ids if custody else (record.author_organization,)
        raise RpcError(
            409,
            "not_custodian",
            f"ask a node of a custodian of this record: {','.join(holders)}",
        )

    def _checked_access_event(
        self, request: web.Request, caller: Caller, record_id: bytes
    ) -> tuple[bytes, bytes]:
        """The raw ACCESS_EVENT tx of the header, checked to be the caller's read of this
        record, and the grant id it names (admission to the mempool comes later, once the read
        can be served)."""
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
        return raw, tx.fields["grant_id"]

    # ------------------------------------------------------------------- lists

    async def _listing(self, request: web.Request, **target: bytes) -> Caller:
        caller = await self._auth.authenticate(request)
        decision = list_decision(self._view(), caller.key, **target)
        if not decision.allowed:
            # Unknown and not yours answer alike: a listing must not tell which records exist.
            raise RpcError(404, "not_found", "nothing here that you may list")
        return caller

    async def record_grants(self, request: web.Request) -> web.Response:
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        await self._listing(request, record_id=record_id)
        grants = queries.grants_for(self._view(), record_id=record_id)
        return web.json_response({"grants": [grant_json(grant) for grant in grants]})

    async def record_history(self, request: web.Request) -> web.Response:
        """The record's amendment history (`records.md` §11), for whoever may list its grants."""
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        await self._listing(request, record_id=record_id)
        view = self._view()
        if queries.record(view, record_id) is None:  # an auditor may list any id
            raise RpcError(404, "not_found", "nothing here that you may list")
        history = queries.record_history(view, record_id)
        return web.json_response(
            {
                "record_id": record_id.hex(),
                "status": history.status,
                "supersedes": [_link_json(item) for item in history.supersedes],
                "superseded_by": [_link_json(item) for item in history.superseded_by],
            }
        )

    async def patient_grants(self, request: web.Request) -> web.Response:
        patient_id = hex_argument(request.match_info["patient_id"], 32, "patient id")
        await self._listing(request, patient_id=patient_id)
        grants = queries.grants_for(self._view(), patient_id=patient_id)
        return web.json_response({"grants": [grant_json(grant) for grant in grants]})

    def _limit(self, request: web.Request) -> int:
        return page_limit(request, *self._page_limits)

    async def _events(
        self, request: web.Request, listing: str, target_id: bytes, **target: bytes
    ) -> web.Response:
        """A page of an access trail, newest first, from just before the `before` cursor back
        towards the first event ever; `next` continues it (null: the first event is in it)."""
        # Authenticated first: an unsigned request is a 401 whatever its parameters.
        await self._listing(request, **target)
        limit = self._limit(request)
        before = cursor_sequence(request.query.get("before"), listing, target_id)
        try:
            trail = queries.access_events_for(self._view(), limit=limit, before=before, **target)
        except ValueError as error:
            raise out_of_range(error) from None
        oldest = trail.oldest_sequence
        return web.json_response(
            {
                "events": [event_json(event) for event in trail.events],
                "total": trail.total,
                "dropped": trail.dropped,
                "next": cursor(listing, target_id, oldest) if oldest else None,
            }
        )

    async def record_events(self, request: web.Request) -> web.Response:
        record_id = hex_argument(request.match_info["record_id"], 32, "record id")
        return await self._events(request, RECORD_EVENTS, record_id, record_id=record_id)

    async def patient_events(self, request: web.Request) -> web.Response:
        patient_id = hex_argument(request.match_info["patient_id"], 32, "patient id")
        return await self._events(request, PATIENT_EVENTS, patient_id, patient_id=patient_id)

    async def patient_consents(self, request: web.Request) -> web.Response:
        """The patient's consent history, oldest first: every grant ever made naming the
        patient with its status; listed by whom may list its grants (`list_decision`)."""
        patient_id = hex_argument(request.match_info["patient_id"], 32, "patient id")
        await self._listing(request, patient_id=patient_id)
        limit = self._limit(request)
        after = cursor_sequence(request.query.get("after"), PATIENT_CONSENTS, patient_id)
        view = self._view()
        try:
            page = queries.consents_of(view, patient_id, after, limit)
        except ValueError as error:
            raise out_of_range(error) from None
        time_ms = self._consent_time_ms(view)
        last = page.items[-1].sequence if page.items else None
        return web.json_response(
            {
                "patient_id": patient_id.hex(),
                "consents": [consent_json(entry, time_ms) for entry in page.items],
                "next": _next_after(PATIENT_CONSENTS, patient_id, last, page.total),
            }
        )

    async def patient_records(self, request: web.Request) -> web.Response:
        """The patient's records, oldest first (`patient_records_decision`). An admin's pages
        hold only its organisation's records: a page scans `limit` index entries, so it may
        hold fewer, or none, and still have a `next`."""
        patient_id = hex_argument(request.match_info["patient_id"], 32, "patient id")
        caller = await self._auth.authenticate(request)
        limit = self._limit(request)
        after = cursor_sequence(request.query.get("after"), PATIENT_RECORDS, patient_id)
        view = self._view()
        time_ms = self._consent_time_ms(view)
        decision = queries.patient_records_decision(view, caller.key, patient_id, time_ms)
        if not decision.allowed:
            raise RpcError(404, "not_found", "nothing here that you may list")
        try:
            page = queries.records_of(view, patient_id, after, limit)
        except ValueError as error:
            raise out_of_range(error) from None
        records = [item.record for item in page.items]
        if decision.via == AccessBasis.AUTHOR_ORGANIZATION.label:
            organization = caller.member.organization_id
            records = [item for item in records if item.author_organization == organization]
        last = page.items[-1].sequence if page.items else None
        return web.json_response(
            {
                "patient_id": patient_id.hex(),
                "records": [indexed_record_json(record) for record in records],
                "next": _next_after(PATIENT_RECORDS, patient_id, last, page.total),
            }
        )

    # ----------------------------------------------------------------- account

    async def account(self, request: web.Request) -> web.Response:
        """A member key's account, for a signed caller. Its own account, its organisation's
        admins and auditors see everything; any other member only what it needs to wrap a
        record key for the key's holder (the encryption key, and that the key is a current,
        active member key). Hidden fields are null."""
        key = hex_argument(request.match_info["member_key"], 32, "member key")
        caller = await self._auth.authenticate(request)
        view = self._view()
        found = queries.member(view, key)
        if found is None or not may_see_account(caller, found.member):
            return web.json_response(_public_account(key, found))
        raw = view.get(nonce_key(key))
        committed = struct.unpack(">Q", raw)[0] if raw else 0
        pending = self._node.pending_nonces(key)
        return web.json_response(
            {
                "member_key": key.hex(),
                "member": _member_json(found, full=True),
                "committed_nonce": committed,
                "next_nonce": (pending[1] if pending else committed) + 1,
            }
        )


def _next_after(listing: str, target: bytes, last: int | None, total: int) -> str | None:
    """The cursor after a page, oldest first, whose last item is `last`; None at the end."""
    if last is None or last + 1 >= total:
        return None
    return cursor(listing, target, last)


def _link_json(item: AmendmentDetail) -> dict[str, Any]:
    return {
        "record_id": item.record_id.hex(),
        "reason": item.reason,
        "note": item.note or None,
        "height": item.height,
    }


def may_see_account(caller: Caller, member: Member) -> bool:
    own = caller.member
    return (
        own.member_id == member.member_id
        or own.role == Role.AUDITOR
        or (own.role == Role.ADMIN and own.organization_id == member.organization_id)
    )


def _member_json(found: queries.MemberView, *, full: bool) -> dict[str, Any]:
    member = found.member
    return {
        "member_id": member.member_id.hex() if full else None,
        "organization_id": member.organization_id if full else None,
        "role": member.role.name.lower() if full else None,
        "patient_id": member.patient_id.hex() if full else None,
        "encryption_key": member.encryption_key.hex(),
        "active": member.status == MemberStatus.ACTIVE,
        "is_current_key": found.is_current_key,
    }


def _public_account(key: bytes, found: queries.MemberView | None) -> dict[str, Any]:
    """What any member may learn of another key: nothing but a current, active member key's
    encryption key (and that it is one)."""
    usable = found is not None and found.is_current_key and found.member.is_active
    return {
        "member_key": key.hex(),
        "member": _member_json(found, full=False) if usable and found else None,
        "committed_nonce": None,
        "next_nonce": None,
    }
