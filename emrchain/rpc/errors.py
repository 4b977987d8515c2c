"""JSON error responses with a stable code; every RPC failure goes through `error_response`."""

from __future__ import annotations

from aiohttp import web


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class RpcError(Exception):
    """Raised by a handler; turned into a JSON error response by the middleware."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except RpcError as error:
        return error_response(error.status, error.code, error.message)
    except web.HTTPRequestEntityTooLarge as error:
        return error_response(413, "body_too_large", error.text or "request body too large")
    except web.HTTPException as error:
        if error.status >= 400:
            return error_response(error.status, error.reason.lower().replace(" ", "_"), error.text)
        raise


def hex_argument(text: str | None, length: int, what: str) -> bytes:
    """A required hex argument of exactly `length` bytes, or a 400 naming `what`."""
    if text is None:
        raise RpcError(400, "missing_parameter", f"{what} is required")
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise RpcError(400, "bad_hex", f"{what} is not hex") from None
    if len(value) != length:
        raise RpcError(400, "bad_length", f"{what} must be {length} bytes")
    return value
