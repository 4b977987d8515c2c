"""What keeps other websites and other hosts from driving the portal (`docs/portal.md`).

The portal holds a member key and answers on a loopback port, so any page open in the same
browser can send it requests, and a hostile DNS name can be rebound to 127.0.0.1. Hence:

- the Host header must name this portal (`127.0.0.1:<port>` or `localhost:<port>`): a rebound
  name carries its own host and is refused;
- a session starts only from the start URL's random token (`/login?token=...`, printed at
  start), which sets an HttpOnly, SameSite=Strict cookie: a cross-site request carries no
  cookie, and script cannot read it;
- every POST carries the session's CSRF token in its form, and an `Origin` (or `Sec-Fetch-Site`)
  that is not this portal is refused;
- every answer forbids inline script, remote origins, framing and caching; there is no CORS.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web

SESSION_COOKIE = "emrchain_portal_session"
"""Followed by the port: cookies do not tell ports apart, two portals on one host must not
share one."""
CSRF_FIELD = "csrf_token"
MAX_SESSIONS = 16
"""Sessions kept (one per browser that opened the start URL); the oldest is forgotten first."""
LOGIN_PATH = "/login"
STATIC_PREFIX = "/static/"
SAFE_METHODS = frozenset({"GET", "HEAD"})
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chromium send `Origin: null`
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalGuard:
    """The start token, the sessions it opened, and the checks every request passes."""

    def __init__(self, start_token: str | None = None) -> None:
        self.start_token = start_token or secrets.token_urlsafe(32)
        self.port = 0
        """Set once the portal is bound: the Host and Origin checks name it."""
        self._sessions: OrderedDict[str, None] = OrderedDict()

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def cookie_name(self) -> str:
        return f"{SESSION_COOKIE}_{self.port}"

    def start_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{LOGIN_PATH}?token={self.start_token}"

    def csrf_token(self, session: str) -> str:
        return hmac.new(session.encode(), b"csrf", hashlib.sha256).hexdigest()

    def session_of(self, request: web.Request) -> str | None:
        value = request.cookies.get(self.cookie_name, "")
        known = next((s for s in self._sessions if hmac.compare_digest(s, value)), None)
        return known if value else None

    def _open_session(self) -> str:
        session = secrets.token_urlsafe(32)
        self._sessions[session] = None
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def login(self, request: web.Request) -> web.StreamResponse:
        given = request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), self.start_token.encode()):
            return _refusal(403, "This start link is not valid: open the URL the portal printed.")
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(
            self.cookie_name, self._open_session(), httponly=True, samesite="Strict", path="/"
        )
        return response

    async def _refusal_reason(self, request: web.Request) -> tuple[int, str] | None:
        if request.host not in self.allowed_hosts:
            return 403, (
                f"Refused: the Host header {request.host!r} does not name this portal "
                "(open it at 127.0.0.1; a foreign host name may be a DNS-rebinding attack)."
            )
        if request.path.startswith(STATIC_PREFIX):
            return None
        if request.path == LOGIN_PATH and request.method in SAFE_METHODS:
            return None
        session = self.session_of(request)
        if session is None:
            return 401, "No session: open the start URL the portal printed when it started."
        if request.method in SAFE_METHODS:
            return None
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in self.allowed_hosts}:
            return 403, f"Refused: a form sent from another site ({origin})."
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in {"same-origin", "none"}:
            return 403, "Refused: a form sent from another site."
        form = await request.post()
        token = form.get(CSRF_FIELD)
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode(), self.csrf_token(session).encode()
        ):
            return 403, "Refused: the form has no valid CSRF token (reload the page and retry)."
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = await self._refusal_reason(request)
        if refusal is not None:
            response: web.StreamResponse = _refusal(*refusal)
        elif request.path == LOGIN_PATH:
            response = self.login(request)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as error:  # no route, method not allowed
                response = web.Response(status=error.status, text=error.text)
        response.headers.update(SECURITY_HEADERS)
        return response


def _refusal(status: int, message: str) -> web.Response:
    """A plain-text refusal: it is shown before any session exists, so no page layout."""
    return web.Response(status=status, text=message + "\n", content_type="text/plain")
