"""Authenticating signed requests: clock skew, replay, member lookup, signature.

Order of checks (each a 401 with its own code): headers well-formed → timestamp within the
allowed skew → (key, nonce) unseen within the skew window → key is a current, unrevoked member
→ signature verifies. The nonce is remembered only once the signature verified, so nobody can
fill the replay cache with requests they cannot sign.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from emrchain.rpc.errors import RpcError
from emrchain.rpc.signing import RequestSignatureError, parse_headers, verify_request
from emrchain.state.emr import queries
from emrchain.state.emr.entities import Member, MemberStatus
from emrchain.state.view import StateView


class ReplayCache:
    """(key, nonce) pairs seen within the skew window, bounded; full → refuse (503)."""

    def __init__(self, max_entries: int, window_ms: int, clock_ms: Callable[[], int]) -> None:
        self._entries: OrderedDict[bytes, int] = OrderedDict()
        self._max_entries = max_entries
        self._window_ms = window_ms
        self._clock_ms = clock_ms

    def _expire(self) -> None:
        horizon = self._clock_ms() - 2 * self._window_ms
        while self._entries:
            _, seen_at = next(iter(self._entries.items()))
            if seen_at >= horizon:
                break
            self._entries.popitem(last=False)

    def seen(self, key: bytes, nonce: bytes) -> bool:
        self._expire()
        return key + nonce in self._entries

    def remember(self, key: bytes, nonce: bytes) -> None:
        self._expire()
        if len(self._entries) >= self._max_entries:
            raise RpcError(503, "busy", "too many recent signed requests; retry shortly")
        self._entries[key + nonce] = self._clock_ms()


@dataclass(frozen=True, slots=True)
class Caller:
    key: bytes
    member: Member


class Authenticator:
    def __init__(
        self,
        chain_id: bytes,
        state_view: Callable[[], StateView],
        clock_ms: Callable[[], int],
        max_clock_skew_ms: int,
        replay_cache_entries: int,
    ) -> None:
        self._chain_id = chain_id
        self._state_view = state_view
        self._clock_ms = clock_ms
        self._max_clock_skew_ms = max_clock_skew_ms
        self._replays = ReplayCache(replay_cache_entries, max_clock_skew_ms, clock_ms)

    async def authenticate(self, request: web.Request, body: bytes) -> Caller:
        try:
            headers = parse_headers(request.headers)
        except RequestSignatureError as error:
            raise RpcError(401, "unsigned_request", str(error)) from None
        if abs(self._clock_ms() - headers.timestamp_ms) > self._max_clock_skew_ms:
            raise RpcError(
                401,
                "stale_request",
                f"timestamp is more than {self._max_clock_skew_ms} ms from the node's clock",
            )
        if self._replays.seen(headers.key, headers.nonce):
            raise RpcError(401, "replayed_request", "this nonce was already used by this key")
        found = queries.member(self._state_view(), headers.key)
        if found is None or not found.is_current_key:
            raise RpcError(401, "unknown_key", "the key is not a current member key")
        if found.member.status != MemberStatus.ACTIVE:
            raise RpcError(401, "unknown_key", "the member has been revoked")
        try:
            valid = verify_request(headers, self._chain_id, request.method, request.path_qs, body)
        except RequestSignatureError as error:
            raise RpcError(401, "unsigned_request", str(error)) from None
        if not valid:
            raise RpcError(401, "bad_signature", "the request signature does not verify")
        self._replays.remember(headers.key, headers.nonce)
        return Caller(headers.key, found.member)
