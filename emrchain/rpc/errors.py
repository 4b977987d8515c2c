"""JSON error responses with a stable code; every RPC failure goes through `error_response`."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from emrchain.api.parse import lower_hex
from emrchain.fhir.resources import FHIR_JSON, operation_outcome
from emrchain.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)
UNHANDLED_ERRORS_LOG = web.AppKey("unhandled_errors_log", ThrottledLog)
"""Where an application sets the throttle for its bug reports (else each is logged)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


FHIR_PATH_PREFIX = "/fhir/"
FHIR_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    410: "deleted",
    413: "too-costly",
    429: "throttled",
    503: "transient",
    504: "timeout",
}
"""The FHIR issue type of each status a `/fhir` route can answer (else `exception`)."""


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, object] | None = None,
    *,
    fhir: bool = False,
) -> web.Response:
    """The error body: `{"error": {...}}`, or under `/fhir/` an OperationOutcome
    (`docs/spec/fhir.md`), with the same code and message. `details`: fields of the JSON error
    beside code and message (`height_pruned`'s `base_height`)."""
    if fhir:
        issue = FHIR_ISSUE_CODES.get(status, "exception")
        outcome = operation_outcome(issue, code, message)
        return web.Response(
            body=json.dumps(outcome, separators=(",", ":")).encode(),
            status=status,
            content_type=FHIR_JSON,
        )
    body: dict[str, object] = {"code": code, "message": message}
    if details:
        body.update(details)
    return web.json_response({"error": body}, status=status)


def is_fhir(request: web.Request) -> bool:
    return request.path.startswith(FHIR_PATH_PREFIX)


class RpcError(Exception):
    """Raised by a handler; turned into a JSON error response by the middleware.

    `retry_after_s` adds a `Retry-After` header (whole seconds, at least 1); `close` answers
    with `Connection: close`, for a refusal that leaves the request's body unread.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after_s: float | None = None,
        close: bool = False,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.details = details
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.close = close

    def response(self, *, fhir: bool = False) -> web.Response:
        response = error_response(self.status, self.code, self.message, self.details, fhir=fhir)
        if self.retry_after_s is not None:
            response.headers[hdrs.RETRY_AFTER] = str(max(1, math.ceil(self.retry_after_s)))
        if self.close:
            response.force_close()
        return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes `{"error": {...}}`, including aiohttp's own and unexpected ones."""
    try:
        return await handler(request)
    except RpcError as error:
        return error.response(fhir=is_fhir(request))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = error_response(
            error.status,
            error.reason.lower().replace(" ", "_"),
            error.text or error.reason,
            fhir=is_fhir(request),
        )
        # A 405 must say which methods the resource has (RFC 9110 §15.5.6); the JSON body
        # replaces aiohttp's, its headers must not be lost with it.
        if hdrs.ALLOW in error.headers:
            response.headers[hdrs.ALLOW] = error.headers[hdrs.ALLOW]
        return response
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        # A bug, not bad input: log it with its traceback, but still answer in the documented
        # error format (aiohttp's default is a text/plain page) and keep serving.
        # The throttle keeps a request that trips a bug over and over from filling the disk.
        throttle = request.app.get(UNHANDLED_ERRORS_LOG)
        if throttle is None:
            logger.exception("unhandled error in %s %s", request.method, request.path)
        else:
            throttle.warning(
                "unhandled error in %s %s", request.method, request.path, exc_info=True
            )
        return error_response(
            500, "internal_error", "internal error; the node logged it", fhir=is_fhir(request)
        )


def request_timeout(timeout_ms: int) -> Middleware:
    """`[rpc] request_timeout_ms`: a request not answered by then gets 503 `request_timeout`.

    WebSocket streams are long-lived by design and bounded by their own limits instead.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/ws/"):
            return await handler(request)
        scope = asyncio.timeout(timeout_ms / 1000)
        try:
            async with scope:
                return await handler(request)
        except TimeoutError:
            if not scope.expired():
                raise  # a timeout inside the handler (e.g. a backend's): not ours to rename
            raise RpcError(503, "request_timeout", f"not answered within {timeout_ms} ms") from None

    return middleware


def hex_argument(text: str | None, length: int, what: str) -> bytes:
    """A required lowercase-hex argument of exactly `length` bytes, or a 400 naming `what`."""
    if text is None:
        raise RpcError(400, "missing_parameter", f"{what} is required")
    if len(text) != 2 * length:
        raise RpcError(400, "bad_length", f"{what} must be {length} bytes ({2 * length} hex)")
    try:
        return lower_hex(text)
    except ValueError:
        raise RpcError(400, "bad_hex", f"{what} is not lowercase hex") from None
