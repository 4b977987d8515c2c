"""Authenticating signed requests before their bodies are read.

Order of checks: headers well-formed and none repeated (401 `unsigned_request`, 400
`duplicate_header`) → timestamp within the allowed skew and not before this node started (401
`stale_request`) → (key, nonce) unseen (401 `replayed_request`) → key is a current, unrevoked
member (401 `unknown_key`) → the member's request rate and its share of the replay cache (429
with Retry-After) → signature over method, path, body hash (the `X-Emrchain-Content-Sha256`
header), timestamp, nonce and this node's id (401 `bad_signature`) → only then is the body read,
within the route's cap, and checked against that hash (401 `body_mismatch`).

The nonce is remembered once the signature verified, so nobody can fill the replay cache with
requests they cannot sign; a member can fill only its own share of it. The cache lives in
memory and is empty after a restart; what survives is the replay horizon (`ReplayHorizon`), the
newest timestamp the node may have accepted, kept in a file. After a restart, a request whose
timestamp is not past it is refused: every request the node accepted before is such a request,
so none can be replayed. That costs a client nothing unless some client's clock ran ahead of
the node's by d ms: then requests signed up to d + 1 s after the last one accepted before the
restart are refused (401 `stale_request`, sign again).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from emrchain.api.signing import (
    DuplicateHeaderError,
    RequestSignatureError,
    SignatureHeaders,
    parse_headers,
    verify_request,
)
from emrchain.rpc.errors import RpcError
from emrchain.rpc.guard import read_body, request_state
from emrchain.rpc.limits import Rate, RateLimiter
from emrchain.state.emr import queries
from emrchain.state.emr.entities import Member, MemberStatus
from emrchain.state.view import StateView


@dataclass(frozen=True, slots=True)
class ReplayLimits:
    window_ms: int
    """`[records] max_clock_skew_ms`: how far a timestamp may be from the node's clock."""
    max_entries: int
    max_entries_per_member: int


class ReplayCache:
    """(key, nonce) pairs seen within the skew window, bounded in total and per member.

    An entry is kept for twice the window after it was seen: its timestamp was within the
    window of that moment, so afterwards the timestamp check refuses the request anyway.
    Full: 503 `busy`; a member's share full: 429 until its oldest entry expires.
    """

    def __init__(self, limits: ReplayLimits, clock_ms: Callable[[], int]) -> None:
        self._entries: OrderedDict[bytes, int] = OrderedDict()
        self._per_member: dict[bytes, deque[int]] = {}
        self._limits = limits
        self._clock_ms = clock_ms

    def _expire(self) -> None:
        horizon = self._clock_ms() - 2 * self._limits.window_ms
        while self._entries:
            entry, seen_at = next(iter(self._entries.items()))
            if seen_at >= horizon:
                break
            self._entries.popitem(last=False)
            key = entry[:32]
            times = self._per_member[key]
            times.popleft()  # a member's entries expire in the order they were added
            if not times:
                del self._per_member[key]

    def seen(self, key: bytes, nonce: bytes) -> bool:
        self._expire()
        return key + nonce in self._entries

    def check_room(self, key: bytes) -> None:
        """RpcError unless one more entry of `key` fits."""
        self._expire()
        times = self._per_member.get(key)
        if times is not None and len(times) >= self._limits.max_entries_per_member:
            wait_ms = times[0] + 2 * self._limits.window_ms - self._clock_ms()
            raise RpcError(
                429,
                "rate_limited",
                f"more than {self._limits.max_entries_per_member} signed requests of this key "
                "within the replay window",
                retry_after_s=max(wait_ms, 0) / 1000,
            )
        if len(self._entries) >= self._limits.max_entries:
            raise RpcError(
                503,
                "busy",
                "too many recent signed requests; retry shortly",
                retry_after_s=1.0,
            )

    def remember(self, key: bytes, nonce: bytes) -> None:
        self.check_room(key)
        now = self._clock_ms()
        self._entries[key + nonce] = now
        self._per_member.setdefault(key, deque()).append(now)

    def __len__(self) -> int:
        return len(self._entries)

    def held_by(self, key: bytes) -> int:
        times = self._per_member.get(key)
        return len(times) if times is not None else 0


class ReplayHorizon:
    """The newest request timestamp this node may have accepted, kept in `path` across
    restarts (8 bytes, big-endian). It is written ahead of acceptance, in steps of
    `HORIZON_STEP_MS` so a steady stream of requests costs one write per step; a write survives
    the process being killed (it is in the kernel's cache), not a power cut."""

    HORIZON_STEP_MS = 1_000

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raw = b""
        self.floor_ms = struct.unpack(">Q", raw)[0] if len(raw) == 8 else 0
        """Requests timestamped at or before this may have been accepted before the start."""
        self._written_ms = self.floor_ms

    def check(self, timestamp_ms: int) -> None:
        """RpcError if a request with this timestamp may have been accepted before. A client
        whose clock agrees with the node's meets this for up to HORIZON_STEP_MS after a quick
        restart: Retry-After says when a request signed anew will pass."""
        if timestamp_ms <= self.floor_ms:
            raise RpcError(
                401,
                "stale_request",
                "signed no later than a request this node accepted before it restarted; "
                "sign the request again after Retry-After",
                retry_after_s=(self.floor_ms + 1 - timestamp_ms) / 1000,
            )

    def record(self, timestamp_ms: int) -> None:
        """Called before a request with this timestamp is accepted."""
        if timestamp_ms > self._written_ms:
            self._write(timestamp_ms + self.HORIZON_STEP_MS)

    def _write(self, horizon_ms: int) -> None:
        temporary = self._path.with_suffix(".tmp")
        try:
            temporary.write_bytes(struct.pack(">Q", horizon_ms))
            os.replace(temporary, self._path)
        except OSError:
            # Not written, not accepted: otherwise a restart could let this request replay.
            raise RpcError(
                503, "busy", "the node cannot record its replay horizon", retry_after_s=1.0
            ) from None
        self._written_ms = horizon_ms


@dataclass(frozen=True, slots=True)
class Caller:
    key: bytes
    member: Member


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """What a signature is bound to: the chain and this node (its P2P public key)."""

    chain_id: bytes
    node_id: bytes


class Authenticator:
    def __init__(
        self,
        identity: NodeIdentity,
        state_view: Callable[[], StateView],
        clock_ms: Callable[[], int],
        replay_limits: ReplayLimits,
        member_rate: Rate,
        horizon: ReplayHorizon,
    ) -> None:
        self._identity = identity
        self._horizon = horizon
        self._state_view = state_view
        self._clock_ms = clock_ms
        self._max_clock_skew_ms = replay_limits.window_ms
        self.replays = ReplayCache(replay_limits, clock_ms)
        self.members = RateLimiter(member_rate, "of one member")

    async def authenticate(self, request: web.Request) -> Caller:
        """The member who signed `request` (see the module doc); its body is then available
        from `guard.read_body`. A second call for the same request returns the same caller."""
        state = request_state(request)
        if state.caller is not None:
            return state.caller
        headers = self._headers(request)
        self._check_time(headers.timestamp_ms)
        if self.replays.seen(headers.key, headers.nonce):
            raise RpcError(401, "replayed_request", "this nonce was already used by this key")
        member = self._member(headers.key)
        self.members.check(headers.key)
        self.replays.check_room(headers.key)
        self._verify(request, headers)
        self._horizon.record(headers.timestamp_ms)
        self.replays.remember(headers.key, headers.nonce)
        self.members.charge(headers.key)
        body = await read_body(request)
        if hashlib.sha256(body).digest() != headers.body_sha256:
            raise RpcError(
                401, "body_mismatch", "the body's SHA-256 is not X-Emrchain-Content-Sha256"
            )
        caller = Caller(headers.key, member)
        state.caller = caller
        return caller

    @staticmethod
    def _headers(request: web.Request) -> SignatureHeaders:
        try:
            return parse_headers(request.headers)
        except DuplicateHeaderError as error:
            raise RpcError(400, "duplicate_header", str(error)) from None
        except RequestSignatureError as error:
            raise RpcError(401, "unsigned_request", str(error)) from None

    def _check_time(self, timestamp_ms: int) -> None:
        if abs(self._clock_ms() - timestamp_ms) > self._max_clock_skew_ms:
            raise RpcError(
                401,
                "stale_request",
                f"timestamp is more than {self._max_clock_skew_ms} ms from the node's clock",
            )
        self._horizon.check(timestamp_ms)

    def _member(self, key: bytes) -> Member:
        found = queries.member(self._state_view(), key)
        if found is None or not found.is_current_key:
            raise RpcError(401, "unknown_key", "the key is not a current member key")
        if found.member.status != MemberStatus.ACTIVE:
            raise RpcError(401, "unknown_key", "the member has been revoked")
        return found.member

    def _verify(self, request: web.Request, headers: SignatureHeaders) -> None:
        identity = self._identity
        try:
            valid = verify_request(
                headers, identity.chain_id, identity.node_id, request.method, request.path_qs
            )
        except RequestSignatureError as error:
            raise RpcError(401, "unsigned_request", str(error)) from None
        if not valid:
            raise RpcError(
                401,
                "bad_signature",
                "the request signature does not verify (for this chain and this node)",
            )
