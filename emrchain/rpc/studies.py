"""Studies (`docs/spec/analytics.md` §5): `GET /studies`, `GET /studies/{id}` (terms, approvals,
budget spent and left, queries and anchored results) and `GET /studies/{id}/queries/{query_id}/
contribution`, this organisation's contribution to a committed query, for the study's sponsor
only. Proposing, approving, querying, anchoring and closing are transactions (`POST /txs`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from emrchain.api.parse import decimal
from emrchain.rpc.auth import Authenticator
from emrchain.rpc.errors import RpcError, hex_argument
from emrchain.rpc.node_view import NodeView
from emrchain.schema import QueryType
from emrchain.state.emr.entities import NO_KEY
from emrchain.state.emr.studies import (
    Study,
    StudyQuery,
    find_query,
    list_studies,
    read_study,
    study_queries,
)
from emrchain.state.view import StateView

MAX_STUDIES_LIMIT = 100
MAX_SEQUENCE = (1 << 32) - 1


def _query_types(mask: int) -> list[str]:
    return [kind.name.lower() for kind in QueryType if mask >> int(kind) & 1]


def query_json(query: StudyQuery) -> dict[str, Any]:
    anchored = query.result_sha256 != NO_KEY
    return {
        "query_id": query.query_id.hex(),
        "sequence": query.sequence,
        "query_type": query.query_type.name.lower(),
        "measure": query.measure,
        "lower_milli": query.lower_milli,
        "upper_milli": query.upper_milli,
        "bins": query.bins,
        "epsilon": query.epsilon,
        "delta": query.delta,
        "height": query.height,
        "time_ms": query.time_ms,
        "result_sha256": query.result_sha256.hex() if anchored else None,
        "result_height": query.result_height if anchored else None,
    }


def study_json(study: Study, queries: list[StudyQuery] | None = None) -> dict[str, Any]:
    approved = [
        organization
        for index, organization in enumerate(study.participants)
        if study.approvals >> index & 1
    ]
    document: dict[str, Any] = {
        "study_id": study.study_id.hex(),
        "sequence": study.sequence,
        "status": study.status.label,
        "sponsor": study.sponsor.hex(),
        "sponsor_organization": study.sponsor_organization,
        "purpose": study.purpose,
        "query_types": _query_types(study.query_types),
        "participants": list(study.participants),
        "approved_by": approved,
        "expires_at_ms": study.expires_at_ms,
        "epsilon_total": study.epsilon_total,
        "epsilon_spent": study.epsilon_spent,
        "epsilon_left": study.epsilon_total - study.epsilon_spent,
        "delta_total": study.delta_total,
        "delta_spent": study.delta_spent,
        "delta_left": study.delta_total - study.delta_spent,
        "query_count": study.query_count,
        "result_count": study.result_count,
        "height": study.height,
        "closed_height": study.closed_height or None,
    }
    if queries is not None:
        document["queries"] = [query_json(query) for query in queries]
    return document


class StudyRoutes:
    def __init__(self, node: NodeView, authenticator: Authenticator) -> None:
        self._node = node
        self._auth = authenticator

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/studies", self.list_studies),
            web.get("/studies/{study_id}", self.study),
            web.get("/studies/{study_id}/queries/{query_id}/contribution", self.contribution),
        ]

    def _study(self, view: StateView, study_id: bytes) -> Study:
        study = read_study(view, study_id)
        if study is None:
            raise RpcError(404, "not_found", "no study with this id")
        return study

    async def list_studies(self, request: web.Request) -> web.Response:
        """`?after=<sequence>&limit=1..100`, in proposal order; members only (signed, checked
        first: an unsigned request is a 401 whatever its query)."""
        await self._auth.authenticate(request)
        after = None
        if "after" in request.query:
            after = decimal(request.query["after"], MAX_SEQUENCE)
            if after is None:
                raise RpcError(400, "bad_after", f"after must be a sequence 0..{MAX_SEQUENCE}")
        limit = decimal(request.query.get("limit", str(MAX_STUDIES_LIMIT)), MAX_STUDIES_LIMIT)
        if not limit:
            raise RpcError(400, "bad_limit", f"limit must be 1..{MAX_STUDIES_LIMIT}")
        studies, next_after = list_studies(self._node.chain.state_view(), after, limit)
        return web.json_response(
            {"studies": [study_json(study) for study in studies], "next_after": next_after}
        )

    async def study(self, request: web.Request) -> web.Response:
        study_id = hex_argument(request.match_info["study_id"], 32, "study id")
        await self._auth.authenticate(request)
        view = self._node.chain.state_view()
        study = self._study(view, study_id)
        return web.json_response(study_json(study, study_queries(view, study)))

    async def contribution(self, request: web.Request) -> web.Response:
        """This node's organisation's contribution: the sponsor only, once computed (404
        before; the sponsor retries)."""
        study_id = hex_argument(request.match_info["study_id"], 32, "study id")
        query_id = hex_argument(request.match_info["query_id"], 32, "query id")
        caller = await self._auth.authenticate(request)
        view = self._node.chain.state_view()
        study = self._study(view, study_id)
        if caller.member.member_id != study.sponsor:
            raise RpcError(403, "not_study_sponsor", "contributions go to the study's sponsor")
        if find_query(view, study_id, query_id) is None:
            raise RpcError(404, "not_found", "no committed query with this id in the study")
        contribution = self._node.study_contribution(study_id, query_id)
        if contribution is None:
            raise RpcError(404, "not_computed", "this organisation's contribution is not ready")
        return web.json_response(
            {
                "study_id": study_id.hex(),
                "query_id": query_id.hex(),
                "organization_id": contribution.organization_id,
                "masked": contribution.masked,
                "vector": [str(value) for value in contribution.vector],
            }
        )
