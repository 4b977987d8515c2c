"""The auditors' review queue (`docs/spec/rpc.md`, `access-control.md` §3.14): list reviews by
status, and read one. Closing a review is a CLOSE_REVIEW transaction (`POST /txs`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from emrchain.api.parse import decimal
from emrchain.rpc.auth import Authenticator, Caller
from emrchain.rpc.errors import RpcError, hex_argument
from emrchain.rpc.node_view import NodeView
from emrchain.schema import ReviewOutcome, Role
from emrchain.state.emr import queries
from emrchain.state.emr.audit import AccessEvent, EventKind
from emrchain.state.emr.entities import NO_KEY
from emrchain.state.emr.reviews import ReviewState, ReviewStatus
from emrchain.state.emr.tables import patient_member
from emrchain.state.view import StateView

MAX_REVIEWS_LIMIT = 1_000
DEFAULT_REVIEWS_LIMIT = 100
MAX_SEQUENCE = (1 << 63) - 1


def _optional(value: bytes) -> str | None:
    return None if value == NO_KEY else value.hex()


def review_json(view: StateView, review: ReviewState, event: AccessEvent) -> dict[str, Any]:
    closed = review.status == ReviewStatus.CLOSED
    holder = patient_member(view, event.patient_id)
    return {
        "review_id": review.review_id.hex(),
        "sequence": review.sequence,
        "status": review.status.label,
        "kind": "break_glass" if event.event_kind == EventKind.BREAK_GLASS else "reenrolment",
        "patient_id": event.patient_id.hex(),
        "patient_organization": holder.organization_id if holder is not None else None,
        "record_id": _optional(event.record_id),
        "actor": event.actor.hex(),
        "actor_organization": event.actor_organization,
        "reason": event.reason,
        "expires_at_ms": event.expires_at_ms,
        "opened_height": event.height,
        "opened_time_ms": event.time_ms,
        "outcome": ReviewOutcome(review.outcome).name.lower() if closed else None,
        "note": review.note if closed else None,
        "closed_by": review.closed_by.hex() if closed else None,
        "closed_by_organization": review.closed_by_organization if closed else None,
        "closed_height": review.closed_height if closed else None,
        "closed_time_ms": review.closed_time_ms if closed else None,
    }


class ReviewRoutes:
    def __init__(self, node: NodeView, authenticator: Authenticator) -> None:
        self._node = node
        self._auth = authenticator

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/reviews", self.list_reviews),
            web.get("/reviews/{review_id}", self.review),
        ]

    async def _auditor(self, request: web.Request) -> Caller:
        caller = await self._auth.authenticate(request)
        if caller.member.role != Role.AUDITOR:
            raise RpcError(403, "role_not_permitted", "the review queue is for auditors")
        return caller

    async def list_reviews(self, request: web.Request) -> web.Response:
        """`?status=open|closed` (default both), `after=<sequence>`, `limit=1..1000`: oldest
        first; `next_after` continues the listing (null: nothing after this page)."""
        query = request.query
        status_text = query.get("status")
        status = None
        if status_text is not None:
            if status_text not in ("open", "closed"):
                raise RpcError(400, "bad_status", "status must be open or closed")
            status = ReviewStatus[status_text.upper()]
        after = None
        if "after" in query:
            after = decimal(query["after"], MAX_SEQUENCE)
            if after is None:
                raise RpcError(400, "bad_after", f"after must be a sequence 0..{MAX_SEQUENCE}")
        limit = decimal(query.get("limit", str(DEFAULT_REVIEWS_LIMIT)), MAX_REVIEWS_LIMIT)
        if not limit:
            raise RpcError(400, "bad_limit", f"limit must be 1..{MAX_REVIEWS_LIMIT}")
        await self._auditor(request)
        view = self._node.chain.state_view()
        page = queries.list_reviews(view, status, after, limit)
        return web.json_response(
            {
                "reviews": [review_json(view, state, event) for state, event in page.reviews],
                "next_after": page.next_after,
                "total": page.total,
                "open": page.open,
            }
        )

    async def review(self, request: web.Request) -> web.Response:
        """One review, for auditors, and for the patient it concerns: a patient is told how the
        auditors judged an emergency access to its records (issue #23: its outcome belongs in
        the patient's own view). Anyone else: 403, whether or not the review exists."""
        review_id = hex_argument(request.match_info["review_id"], 32, "review id")
        caller = await self._auth.authenticate(request)
        view = self._node.chain.state_view()
        state = queries.read_review_state(view, review_id)
        event = None if state is None else queries.review_event(view, state)
        if caller.member.role != Role.AUDITOR and not _concerns(caller, event):
            raise RpcError(
                403, "role_not_permitted", "a review is for auditors and the patient it concerns"
            )
        if state is None or event is None:
            raise RpcError(404, "not_found", "no review with this id in the queue")
        return web.json_response(review_json(view, state, event))


def _concerns(caller: Caller, event: AccessEvent | None) -> bool:
    """The caller is the patient member whose patient id the review names."""
    member = caller.member
    return (
        event is not None and member.role == Role.PATIENT and member.patient_id == event.patient_id
    )
