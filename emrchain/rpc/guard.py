"""What every request passes before its handler, and the one way a handler reads a body.

`RequestGuard` is the application middleware that applies a route's policy
(`docs/spec/rpc.md` §Limits):
1. the client address's rate limit (429 with Retry-After); unsigned requests take a token,
   signed ones only when they fail authentication, so a member behind a busy address is
   limited by its own budget (`auth.py`) while a forger pays with its address's;
2. a declared body over the route's cap is refused at once: 413 with `Connection: close`,
   nothing of the body read.

`read_body` reads a body only when a handler (or the authenticator, after the signature
verified) asks for it: within the route's cap (a body that streams past it is cut off the same
way), within the node's budget of buffered body bytes (503 `busy` otherwise), and after
answering `Expect: 100-continue`, so a client that asked first sends nothing a refusal would
waste.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web

from emrchain.rpc.errors import Handler, RpcError
from emrchain.rpc.limits import RateLimiter, client_address

BUSY_RETRY_AFTER_S = 1.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    signed: bool
    max_body_bytes: int


@dataclass(slots=True)
class RequestState:
    """What the guard and the handlers know about the request being handled."""

    client: str
    body_cap: int
    body: bytes | None = None
    reserved: int = 0
    continue_sent: bool = False
    caller: Any = None
    """The `auth.Caller` once the request is authenticated."""


_STATE: ContextVar[RequestState | None] = ContextVar("emrchain_rpc_request", default=None)
"""aiohttp handles each request in a task of its own, so a context variable set by the guard is
this request's alone (and needs no per-request key on the aiohttp request object)."""


def request_state(request: web.Request) -> RequestState:
    """The current request's state; an application without the guard (a test's) gets one on
    first use, with aiohttp's `client_max_size` as the body cap."""
    state = _STATE.get()
    if state is None:
        state = RequestState(client_address(request.remote or ""), request.client_max_size)
        _STATE.set(state)
    return state


class BodyBudget:
    """Body bytes held by requests in flight, against `[rpc] max_buffered_body_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.in_use = 0

    def reserve(self, size: int) -> bool:
        if self.in_use + size > self.max_bytes:
            return False
        self.in_use += size
        return True

    def release(self, size: int) -> None:
        self.in_use -= size


BODY_BUDGET = web.AppKey("body_budget", BodyBudget)


def request_client(request: web.Request) -> str:
    """The client address key of `request` (an IPv6 address's /64)."""
    return request_state(request).client


async def defer_continue(request: web.Request) -> None:
    """The routes' `Expect` handler: aiohttp's default answers `100 Continue` before anything
    is checked; here the answer waits until `read_body` (so a refusal comes first)."""
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text="only Expect: 100-continue is understood")


def _too_large(cap: int) -> RpcError:
    return RpcError(
        413, "body_too_large", f"this route takes bodies of at most {cap} bytes", close=True
    )


async def read_body(request: web.Request) -> bytes:
    """The request's body, read once (later calls return it again); see the module doc."""
    state = request_state(request)
    if state.body is not None:
        return state.body
    cap = state.body_cap
    declared = request.content_length
    if declared is not None and declared > cap:
        raise _too_large(cap)
    if not request.body_exists:
        state.body = b""
        return b""
    state.body = await _read_reserved(request, state, declared if declared is not None else cap)
    return state.body


async def _read_reserved(request: web.Request, state: RequestState, reserve: int) -> bytes:
    budget = request.app.get(BODY_BUDGET)
    if budget is not None:
        if not budget.reserve(reserve):
            raise RpcError(
                503,
                "busy",
                "the node holds as many request bodies as it may; retry shortly",
                retry_after_s=BUSY_RETRY_AFTER_S,
                close=True,
            )
        # Released by the guard when the request ends: the body stays in memory until then.
        state.reserved += reserve
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue" and not state.continue_sent:
        state.continue_sent = True
        await request.writer.write(CONTINUE)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > state.body_cap:
                raise _too_large(state.body_cap)
            chunks.append(chunk)
    except (ConnectionError, web.RequestPayloadError):
        # The client's fault (it went away, or its chunked framing is broken), not a bug.
        raise RpcError(400, "incomplete_body", "the body ended early or is malformed") from None
    return b"".join(chunks)


def _body_unread(request: web.Request) -> bool:
    return request.body_exists and not request.content.is_eof()


class RequestGuard:
    """The middleware of `docs/spec/rpc.md` §Limits; `policies` maps each route to its policy
    (routes not listed, e.g. a 404, get `default`). The server fills `policies` once its
    routes exist (the middleware is needed before: it is given to the application)."""

    def __init__(
        self,
        policies: Mapping[web.AbstractRoute, RoutePolicy],
        default: RoutePolicy,
        addresses: RateLimiter,
    ) -> None:
        self._policies = policies
        self._default = default
        self._addresses = addresses

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        policy = self._policies.get(request.match_info.route, self._default)
        client = client_address(request.remote or "")
        state = RequestState(client, policy.max_body_bytes)
        _STATE.set(state)
        declared = request.content_length
        if declared is not None and declared > policy.max_body_bytes:
            raise _too_large(policy.max_body_bytes)
        try:
            return await self._handled(request, handler, policy.signed, client)
        finally:
            state.body = None  # the handler is done with it: free it before the reply
            if state.reserved:
                request.app[BODY_BUDGET].release(state.reserved)

    async def _handled(
        self, request: web.Request, handler: Handler, signed: bool, client: str
    ) -> web.StreamResponse:
        try:
            self._addresses.check(client)
            if not signed:
                self._addresses.charge(client)
            response = await handler(request)
        except RpcError as error:
            if signed and error.status == 401:
                self._addresses.charge(client)
            # Refused before its body was read (e.g. on the signature headers): the node does
            # not read it now, it closes the connection, and says so.
            error.close = error.close or _body_unread(request)
            raise
        if not response.prepared and _body_unread(request):
            response.force_close()
        return response
