"""The OpenAPI 3.1 document of the node's RPC, served at `/openapi.json`.

Written out by hand next to the routes (`docs/spec/rpc.md` is the prose); a test checks that
every route of the live application is described here and nothing else is, and schemathesis
exercises the live server against it.
"""

from __future__ import annotations

from typing import Any

HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
HEX = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}
ERROR = {"$ref": "#/components/schemas/Error"}
SIGNED = [
    {"memberKey": [], "timestamp": [], "nonce": [], "signature": []},
]


def _error_responses(*statuses: int) -> dict[str, Any]:
    descriptions = {
        400: "malformed input",
        401: "unsigned, stale, replayed, forged or unknown-key request",
        403: "not allowed by consent or role",
        404: "unknown",
        409: "conflict, or the wrong node for this record",
        410: "erased",
        413: "body too large",
        503: "a storage backend is unavailable",
    }
    return {
        str(status): {
            "description": descriptions[status],
            "content": {"application/json": {"schema": ERROR}},
        }
        for status in statuses
    }


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}}
    }


def _path_parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


OBJECT = {"type": "object"}


def document() -> dict[str, Any]:
    record_id = _path_parameter("record_id", HEX32)
    patient_id = _path_parameter("patient_id", HEX32)
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    }
    listing_errors = _error_responses(400, 401, 403, 404)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "emrchain node RPC",
            "version": "1",
            "description": "See docs/spec/rpc.md for the signed-request rules.",
        },
        "paths": {
            "/health": {"get": {"operationId": "health", "responses": _ok(OBJECT)}},
            "/status": {"get": {"operationId": "status", "responses": _ok(OBJECT)}},
            "/openapi.json": {"get": {"operationId": "openapi", "responses": _ok(OBJECT)}},
            "/txs": {
                "post": {
                    "operationId": "submitTransactions",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["txs"],
                                    "properties": {"txs": {"type": "array", "items": HEX}},
                                }
                            },
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    "responses": {**_ok(OBJECT), **_error_responses(400, 413)},
                }
            },
            "/txs/{tx_id}": {
                "get": {
                    "operationId": "transactionStatus",
                    "parameters": [_path_parameter("tx_id", HEX32)],
                    "responses": {**_ok(OBJECT), **_error_responses(400, 404)},
                }
            },
            "/blocks/latest": {
                "get": {
                    "operationId": "latestBlock",
                    "responses": {**_ok(OBJECT), **_error_responses(404)},
                }
            },
            "/blocks/{height}": {
                "get": {
                    "operationId": "block",
                    "parameters": [_path_parameter("height", {"type": "integer", "minimum": 1})],
                    "responses": {**_ok(OBJECT), **_error_responses(400, 404)},
                }
            },
            "/ws/blocks": {
                "get": {
                    "operationId": "blockStream",
                    "description": "WebSocket upgrade: committed block summaries as they commit.",
                    "responses": {
                        "101": {"description": "switching to WebSocket"},
                        **_error_responses(400),
                    },
                }
            },
            "/ws/patients/{patient_id}": {
                "get": {
                    "operationId": "patientStream",
                    "security": SIGNED,
                    "description": "WebSocket upgrade: each committed block with the patient's "
                    "new access events.",
                    "parameters": [patient_id],
                    "responses": {
                        "101": {"description": "switching to WebSocket"},
                        **_error_responses(400, 401, 403),
                    },
                }
            },
            "/accounts/{member_key}": {
                "get": {
                    "operationId": "account",
                    "parameters": [_path_parameter("member_key", HEX32)],
                    "responses": {**_ok(OBJECT), **_error_responses(400)},
                }
            },
            "/records/{record_id}/ciphertext": {
                "put": {
                    "operationId": "uploadCiphertext",
                    "security": SIGNED,
                    "parameters": [
                        record_id,
                        {"name": "patient_id", "in": "query", "required": True, "schema": HEX32},
                        {
                            "name": "custody_wrap",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{160}$"},
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
                        **_ok(OBJECT),
                        **_error_responses(400, 401, 403, 409, 413, 503),
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
                            "schema": HEX,
                            "description": "the caller's signed ACCESS_EVENT transaction",
                        },
                    ],
                    "responses": {
                        **_ok(OBJECT),
                        **_error_responses(400, 401, 403, 404, 409, 410, 503),
                    },
                }
            },
            "/records/{record_id}/grants": {
                "get": {
                    "operationId": "recordGrants",
                    "security": SIGNED,
                    "parameters": [record_id],
                    "responses": {**_ok(OBJECT), **listing_errors},
                }
            },
            "/records/{record_id}/access-events": {
                "get": {
                    "operationId": "recordAccessEvents",
                    "security": SIGNED,
                    "parameters": [record_id, limit],
                    "responses": {**_ok(OBJECT), **listing_errors},
                }
            },
            "/patients/{patient_id}/grants": {
                "get": {
                    "operationId": "patientGrants",
                    "security": SIGNED,
                    "parameters": [patient_id],
                    "responses": {**_ok(OBJECT), **listing_errors},
                }
            },
            "/patients/{patient_id}/access-events": {
                "get": {
                    "operationId": "patientAccessEvents",
                    "security": SIGNED,
                    "parameters": [patient_id, limit],
                    "responses": {**_ok(OBJECT), **listing_errors},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                }
            },
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
