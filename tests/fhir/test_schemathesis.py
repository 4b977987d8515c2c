"""Schemathesis over the /fhir operations of the node's OpenAPI document, signed by a member:
every generated request (valid and invalid parameters) is answered without a server error,
with a status, content type (application/fhir+json), headers and body that the document
declares, and the body validates with the R4B models. The unsigned run over the whole
document, /fhir included, is tests/rpc/test_openapi.py."""

from __future__ import annotations

import time
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emrchain.api.signing import sign_request
from emrchain.client.identity import MemberIdentity
from tests.client.conftest import RealNode
from tests.fhir.validate import validated

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 30


class SignedBy(requests.auth.AuthBase):
    """Signs each prepared request as the node checks it: method, path and query as sent,
    the body's SHA-256, a fresh timestamp and nonce."""

    def __init__(self, identity: MemberIdentity, chain_id: bytes, node_id: bytes) -> None:
        self._identity = identity
        self._chain_id = chain_id
        self._node_id = node_id

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        signature = sign_request(
            self._identity.signer,
            self._chain_id,
            self._node_id,
            str(request.method),
            request.path_url,
            body,
            time.time_ns() // 1_000_000,
        )
        request.headers.update(signature.as_dict())
        return request


def test_fhir_operations_conform_to_the_document_when_signed(real_node: RealNode) -> None:
    cast = real_node.cast()
    status: dict[str, Any] = requests.get(f"{real_node.url}/status", timeout=10).json()
    session = requests.Session()
    session.auth = SignedBy(
        cast.auditor, status["chain_id"].encode(), bytes.fromhex(status["node_id"])
    )
    api = schemathesis.openapi.from_url(f"{real_node.url}/openapi.json")
    exercised = []
    statuses: dict[int, int] = {}
    for result in api.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/fhir/"):
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call_and_validate(session=session, checks=CHECKS)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            validated(response.json())  # every reply, resource or OperationOutcome, is FHIR

        check()
        exercised.append(operation.path)
    assert len(exercised) == 11, exercised
    # Signed requests get past authentication: answers are replies, not only 401s.
    assert statuses.get(200, 0) > 0 and statuses.get(404, 0) > 0, statuses
    assert 401 not in statuses and 500 not in statuses, statuses
