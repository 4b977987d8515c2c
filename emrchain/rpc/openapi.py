"""The OpenAPI 3.1 document of the node's RPC, served at `/openapi.json`.

Written out by hand next to the routes (`docs/spec/rpc.md` is the prose); a test checks that
every route of the live application is described here and nothing else is, and schemathesis
exercises the live server against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emrchain.rpc import openapi_schemas as replies
from emrchain.rpc.openapi_fhir import OPERATION_OUTCOME_SCHEMA, fhir_paths

HEX32 = replies.HEX32
HEX = replies.HEX
ERROR = {"$ref": "#/components/schemas/Error"}
SIGNED: list[dict[str, list[str]]] = [
    {"memberKey": [], "timestamp": [], "nonce": [], "signature": []},
]
MAX_HEIGHT = (1 << 63) - 1
"""Largest height `GET /blocks/{height}` parses (heights are u64 on the wire, < 2^63 here)."""
CURSOR = {"type": "string", "pattern": "^[0-9]{1,20}\\.[0-9a-f]{16}$"}
"""A listing's position (`pagination.py`): what a reply's `next` gave."""
ACCESS_EVENT_HEADER_SLACK = 190
"""Room left in the header line beside the access event's hex: its name, ": ", and margin."""


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """The node's configured limits that the document states (defaults: the config's)."""

    max_batch_txs: int = 1_000
    max_tx_bytes: int = 65_536
    max_header_bytes: int = 8_190
    """`[rpc] max_header_bytes`: the HTTP parser refuses a longer header line (400,
    text/plain) before any route runs."""
    fhir_max_count: int = 100
    """`[rpc] fhir_max_count`: the largest `_count` of a /fhir search."""
    page_limit_max: int = 1_000
    """`[rpc] page_limit_max`: most items one page of a listing returns (`?limit=`)."""

    @property
    def max_access_event_hex(self) -> int:
        """`X-Emrchain-Access-Event` must fit in one header line (an ACCESS_EVENT tx is a few
        hundred bytes), whatever `[limits] max_tx_bytes` allows for other transactions."""
        fits_in_header = (self.max_header_bytes - ACCESS_EVENT_HEADER_SLACK) // 2 * 2
        return min(2 * self.max_tx_bytes, fits_in_header)


EVERY_OPERATION_STATUSES = (413, 429, 503)
"""What any request may be answered, whatever its route (`docs/spec/rpc.md` §Limits): a body
over the route's cap, a rate limit, a busy node or a timeout."""
RETRY_AFTER = {
    "description": "seconds to wait before retrying",
    "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
}


def _error_responses(*statuses: int) -> dict[str, Any]:
    descriptions = {
        400: "malformed input (or a repeated X-Emrchain-* header: duplicate_header)",
        401: "unsigned, stale, replayed, forged or unknown-key request, or a body that is not "
        "the signed one",
        403: "not allowed by role, or consent changed while a read's access event was committed",
        404: "unknown, or not the caller's to see (one answer for both)",
        409: "conflict, or the wrong node for this record",
        410: "erased; or, for a block or transaction, `height_pruned`: this node deleted "
        "that height's block ([storage] retain_blocks), `base_height` in the error says from "
        "which height it keeps blocks",
        413: "body over this route's cap (the connection is closed, the body left unread)",
        429: "rate limited: the client address's or the member's budget, or its share of the "
        "connections, stream slots or replay cache",
        503: "busy (Retry-After), a storage backend is unavailable, or the request timed out "
        "(request_timeout_ms)",
        504: "not committed in time: a read's access event (the read was not served), or the "
        "transactions of a POST /txs?wait=commit (they may still commit)",
    }
    responses: dict[str, Any] = {}
    for status in sorted({*statuses, *EVERY_OPERATION_STATUSES}):
        response: dict[str, Any] = {
            "description": descriptions[status],
            "content": {"application/json": {"schema": ERROR}},
        }
        if status in (429, 503):
            # Always with a 429; with a 503 when the node is busy (not for a backend outage).
            response["headers"] = {"Retry-After": {**RETRY_AFTER, "required": status == 429}}
        responses[str(status)] = response
    return responses


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}}
    }


def _path_parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _header(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "schema": schema}


# What makes a GET a WebSocket opening handshake (RFC 6455 §4.1); without them the node
# answers 400, so they are part of a valid request.
WEBSOCKET_HANDSHAKE = [
    _header("Upgrade", {"const": "websocket"}),
    _header("Connection", {"const": "Upgrade"}),
    _header("Sec-WebSocket-Key", {"type": "string", "pattern": "^[A-Za-z0-9+/]{22}==$"}),
    _header("Sec-WebSocket-Version", {"const": "13"}),
]


def document(limits: DocumentLimits | None = None) -> dict[str, Any]:
    """The OpenAPI document of a node with these limits."""
    limits = limits or DocumentLimits()
    record_id = _path_parameter("record_id", HEX32)
    patient_id = _path_parameter("patient_id", HEX32)
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": limits.page_limit_max},
    }
    after, before = (
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": CURSOR,
            "description": f"the `next` of the previous page ({order})",
        }
        for name, order in (("after", "oldest first"), ("before", "newest first"))
    )
    listing_errors = _error_responses(400, 401, 403, 404, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "emrchain node RPC",
            "version": "1",
            "description": "See docs/spec/rpc.md for the signed-request rules.",
        },
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "responses": {**_ok(replies.HEALTH), **_error_responses(503)},
                }
            },
            "/status": {
                "get": {
                    "operationId": "status",
                    "responses": {**_ok(replies.STATUS), **_error_responses(503)},
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": {**_ok({"type": "object"}), **_error_responses(503)},
                }
            },
            "/txs": {
                "post": {
                    "operationId": "submitTransactions",
                    "description": "Answered at admission (accepted: in this node's mempool, "
                    "in memory), or with wait=commit (JSON bodies) once the accepted "
                    "transactions are committed or dropped; docs/spec/rpc.md "
                    "§Acknowledgements.",
                    "parameters": [
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "schema": {"const": "commit"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["txs"],
                                    "properties": {
                                        "txs": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": limits.max_batch_txs,
                                            "items": {
                                                **HEX,
                                                "maxLength": 2 * limits.max_tx_bytes,
                                            },
                                        }
                                    },
                                }
                            },
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    "responses": {
                        **_ok(replies.SUBMIT),
                        **_error_responses(400, 413, 503, 504),
                    },
                }
            },
            "/txs/{tx_id}": {
                "get": {
                    "operationId": "transactionStatus",
                    "description": "Signed by the sender's member or an auditor, the reply "
                    "carries the result message; unsigned, `result` is null.",
                    "security": [{}, *SIGNED],
                    "parameters": [_path_parameter("tx_id", HEX32)],
                    "responses": {
                        **_ok(replies.TX_STATUS),
                        **_error_responses(400, 401, 404, 410, 503),
                    },
                }
            },
            "/blocks/latest": {
                "get": {
                    "operationId": "latestBlock",
                    "responses": {**_ok(replies.BLOCK), **_error_responses(404, 503)},
                }
            },
            "/blocks/{height}": {
                "get": {
                    "operationId": "block",
                    "parameters": [
                        _path_parameter(
                            "height", {"type": "integer", "minimum": 1, "maximum": MAX_HEIGHT}
                        )
                    ],
                    "responses": {
                        **_ok(replies.BLOCK),
                        **_error_responses(400, 404, 410, 503),
                    },
                }
            },
            "/evidence": {
                "get": {
                    "operationId": "evidence",
                    "description": "Misbehaviour evidence: committed (at most 1,000, by commit "
                    "height) and pending in this node's pool.",
                    "responses": {**_ok(replies.EVIDENCE), **_error_responses(503)},
                }
            },
            "/records/replication": {
                "get": {
                    "operationId": "replication",
                    "security": SIGNED,
                    "description": "This node's view of record replication "
                    "(docs/spec/records.md section 10): the last reconciliation round, records "
                    "missing here, under-replicated records (at most 100 of each listed). For "
                    "admins of this node's organisation and auditors.",
                    "responses": {
                        **_ok(replies.REPLICATION),
                        **_error_responses(401, 403, 503),
                    },
                }
            },
            "/validators/{height}": {
                "get": {
                    "operationId": "validators",
                    "parameters": [
                        _path_parameter(
                            "height", {"type": "integer", "minimum": 1, "maximum": MAX_HEIGHT}
                        )
                    ],
                    "responses": {**_ok(replies.VALIDATORS), **_error_responses(400, 404, 503)},
                }
            },
            "/validators/{validator_key}/nonce": {
                "get": {
                    "operationId": "validatorNonce",
                    "description": "A validator key's committed and next nonce (keys of the "
                    "current or next two validator sets only).",
                    "parameters": [_path_parameter("validator_key", HEX32)],
                    "responses": {
                        **_ok(replies.VALIDATOR_NONCE),
                        **_error_responses(400, 404, 503),
                    },
                }
            },
            "/ws/blocks": {
                "get": {
                    "operationId": "blockStream",
                    "description": "WebSocket upgrade: committed block summaries as they commit.",
                    "parameters": WEBSOCKET_HANDSHAKE,
                    "responses": {
                        "101": {"description": "switching to WebSocket"},
                        **_error_responses(400, 503),
                    },
                }
            },
            "/ws/patients/{patient_id}": {
                "get": {
                    "operationId": "patientStream",
                    "security": SIGNED,
                    "description": "WebSocket upgrade: each committed block with the patient's "
                    "new access events.",
                    "parameters": [patient_id, *WEBSOCKET_HANDSHAKE],
                    "responses": {
                        "101": {"description": "switching to WebSocket"},
                        **_error_responses(400, 401, 404, 503),
                    },
                }
            },
            "/accounts/{member_key}": {
                "get": {
                    "operationId": "account",
                    "security": SIGNED,
                    "parameters": [_path_parameter("member_key", HEX32)],
                    "responses": {**_ok(replies.ACCOUNT), **_error_responses(400, 401, 503)},
                }
            },
            "/custody-set": {
                "get": {
                    "operationId": "custodySet",
                    "security": SIGNED,
                    "parameters": [
                        {"name": "record_id", "in": "query", "required": True, "schema": HEX32},
                        {"name": "patient_id", "in": "query", "required": True, "schema": HEX32},
                    ],
                    "responses": {
                        **_ok(replies.CUSTODY_SET),
                        **_error_responses(400, 401, 403, 404, 503),
                    },
                }
            },
            "/records/{record_id}/custody": {
                "get": {
                    "operationId": "recordCustody",
                    "security": SIGNED,
                    "parameters": [record_id],
                    "responses": {
                        **_ok(replies.RECORD_CUSTODY),
                        **_error_responses(400, 401, 404, 503),
                    },
                },
                "put": {
                    "operationId": "handCustody",
                    "security": SIGNED,
                    "parameters": [
                        record_id,
                        {
                            "name": "custody_wrap",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{160}$"},
                        },
                        {
                            "name": "patient_wrap",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{160}$"},
                        },
                        {
                            "name": "X-Emrchain-Content-Sha256",
                            "in": "header",
                            "required": True,
                            "schema": HEX32,
                            "description": "SHA-256 of the body, as signed",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "responses": {
                        **_ok(replies.UPLOAD),
                        **_error_responses(400, 401, 404, 409, 410, 413, 503),
                    },
                },
            },
            "/records/{record_id}/grant-wraps/{grant_id}": {
                "put": {
                    "operationId": "handGranteeWrap",
                    "security": SIGNED,
                    "parameters": [
                        record_id,
                        _path_parameter("grant_id", HEX32),
                        {
                            "name": "wrap",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{160}$"},
                        },
                    ],
                    "responses": {
                        **_ok(replies.GRANTEE_WRAP),
                        **_error_responses(400, 401, 404, 409, 503),
                    },
                }
            },
            "/records/{record_id}": {
                "get": {
                    "operationId": "readRecord",
                    "security": SIGNED,
                    "parameters": [
                        record_id,
                        {
                            "name": "X-Emrchain-Access-Event",
                            "in": "header",
                            "required": True,
                            "schema": {**HEX, "maxLength": limits.max_access_event_hex},
                            "description": "the caller's signed ACCESS_EVENT transaction",
                        },
                    ],
                    "responses": {
                        "200": {
                            **_ok(replies.READ)["200"],
                            "headers": {
                                "X-Emrchain-Record-Status": {
                                    "description": "the record's amendment status "
                                    "(records.md §11); a superseded record is served",
                                    "schema": replies.READ["properties"]["status"],
                                }
                            },
                        },
                        **_error_responses(400, 401, 403, 404, 409, 410, 503, 504),
                    },
                }
            },
            "/records/{record_id}/grants": {
                "get": {
                    "operationId": "recordGrants",
                    "security": SIGNED,
                    "parameters": [record_id],
                    "responses": {**_ok(replies.GRANTS), **listing_errors},
                }
            },
            "/records/{record_id}/history": {
                "get": {
                    "operationId": "recordHistory",
                    "security": SIGNED,
                    "description": "The record's amendment history: what it supersedes, back "
                    "to the original, and what amends it (records.md §11).",
                    "parameters": [record_id],
                    "responses": {**_ok(replies.HISTORY), **listing_errors},
                }
            },
            "/reviews": {
                "get": {
                    "operationId": "listReviews",
                    "security": SIGNED,
                    "description": "The break-glass review queue, oldest first (auditors).",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": ["open", "closed"]},
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": {**replies.INT, "maximum": MAX_HEIGHT},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1_000},
                        },
                    ],
                    "responses": {
                        **_ok(replies.REVIEWS),
                        **_error_responses(400, 401, 403, 503),
                    },
                }
            },
            "/reviews/{review_id}": {
                "get": {
                    "operationId": "review",
                    "security": SIGNED,
                    "parameters": [_path_parameter("review_id", HEX32)],
                    "responses": {
                        **_ok(replies.REVIEW),
                        **_error_responses(400, 401, 403, 404, 503),
                    },
                }
            },
            "/studies": {
                "get": {
                    "operationId": "listStudies",
                    "security": SIGNED,
                    "description": "Studies in proposal order (analytics.md §5).",
                    "parameters": [
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": {**replies.INT, "maximum": (1 << 32) - 1},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                        },
                    ],
                    "responses": {
                        **_ok(replies.STUDIES),
                        **_error_responses(400, 401, 403, 503),
                    },
                }
            },
            "/studies/{study_id}": {
                "get": {
                    "operationId": "study",
                    "security": SIGNED,
                    "description": "A study's terms, approvals, budget spent and left, queries "
                    "and anchored results.",
                    "parameters": [_path_parameter("study_id", HEX32)],
                    "responses": {
                        **_ok(replies.STUDY),
                        **_error_responses(400, 401, 403, 404, 503),
                    },
                }
            },
            "/studies/{study_id}/queries/{query_id}/contribution": {
                "get": {
                    "operationId": "studyContribution",
                    "security": SIGNED,
                    "description": "This node's organisation's masked noisy contribution to a "
                    "committed query: the study's sponsor only; 404 until computed.",
                    "parameters": [
                        _path_parameter("study_id", HEX32),
                        _path_parameter("query_id", HEX32),
                    ],
                    "responses": {
                        **_ok(replies.CONTRIBUTION),
                        **_error_responses(400, 401, 403, 404, 503),
                    },
                }
            },
            "/records/{record_id}/access-events": {
                "get": {
                    "operationId": "recordAccessEvents",
                    "security": SIGNED,
                    "parameters": [record_id, limit, before],
                    "responses": {**_ok(replies.EVENTS), **listing_errors},
                }
            },
            "/patients/{patient_id}/grants": {
                "get": {
                    "operationId": "patientGrants",
                    "security": SIGNED,
                    "parameters": [patient_id],
                    "responses": {**_ok(replies.GRANTS), **listing_errors},
                }
            },
            "/patients/{patient_id}/access-events": {
                "get": {
                    "operationId": "patientAccessEvents",
                    "security": SIGNED,
                    "parameters": [patient_id, limit, before],
                    "responses": {**_ok(replies.EVENTS), **listing_errors},
                }
            },
            **fhir_paths(SIGNED, limits.fhir_max_count),
            "/patients/{patient_id}/records": {
                "get": {
                    "operationId": "patientRecords",
                    "security": SIGNED,
                    "parameters": [patient_id, limit, after],
                    "responses": {**_ok(replies.PATIENT_RECORDS), **listing_errors},
                }
            },
            "/patients/{patient_id}/consents": {
                "get": {
                    "operationId": "patientConsents",
                    "security": SIGNED,
                    "parameters": [patient_id, limit, after],
                    "responses": {**_ok(replies.CONSENTS), **listing_errors},
                }
            },
            "/members/{member_key}/shared": {
                "get": {
                    "operationId": "sharedWithMember",
                    "security": SIGNED,
                    "description": "The grants in force naming the member, or (for a "
                    "clinician) its organisation: the member itself only, else 404.",
                    "parameters": [
                        _path_parameter("member_key", HEX32),
                        limit,
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": replies.SHARED_CURSOR,
                            "description": "the `next` of the previous page",
                        },
                    ],
                    "responses": {**_ok(replies.SHARED), **listing_errors},
                }
            },
        },
        "components": {
            "schemas": {"Error": replies.ERROR, "OperationOutcome": OPERATION_OUTCOME_SCHEMA},
            "securitySchemes": {
                name: {"type": "apiKey", "in": "header", "name": header}
                for name, header in (
                    ("memberKey", "X-Emrchain-Key"),
                    ("timestamp", "X-Emrchain-Timestamp"),
                    ("nonce", "X-Emrchain-Nonce"),
                    ("signature", "X-Emrchain-Signature"),
                )
            },
        },
    }
