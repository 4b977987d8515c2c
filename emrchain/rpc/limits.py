"""Per-client budgets of the RPC: token-bucket rate limits, slot counts, throttled log lines.

Everything here is in memory and O(1) per request. Tables keyed by client (address or member)
forget a client once it holds nothing (a full bucket, no slot), so their size follows the
clients active in the last few seconds rather than every client ever seen.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from emrchain.rpc.errors import RpcError

Clock = Callable[[], float]
"""Seconds on a monotonic clock."""

ADDRESS_KEYS_CACHED = 4_096
IPV6_CLIENT_PREFIX = 64
"""An IPv6 client owns a /64 (RFC 6177 assignments): its addresses count as one."""


def client_address(peer: object) -> str:
    """The key of a connection's client: its IP address (an IPv6 address's /64)."""
    return _address_key(peer[0] if isinstance(peer, tuple) and peer else str(peer))


@functools.lru_cache(maxsize=ADDRESS_KEYS_CACHED)
def _address_key(host: str) -> str:
    # Cached: parsing an address costs ~7 us, and every request asks.
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(address)


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: int
    burst: int


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """One token bucket per client: `burst` tokens, refilled at `per_second`.

    `check` refuses (429, Retry-After) a client whose bucket is empty; `charge` takes a token.
    They are separate so a signed request can be refused before its body is read and charged
    only once its signature proved who sent it.
    """

    def __init__(self, rate: Rate, what: str, clock: Clock = time.monotonic) -> None:
        self._rate = rate
        self._what = what
        self._clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}
        self._sweep_at = 1_024

    def _refilled(self, client: Hashable) -> _Bucket | None:
        bucket = self._buckets.get(client)
        if bucket is None:
            return None
        now = self._clock()
        bucket.tokens = min(
            self._rate.burst, bucket.tokens + (now - bucket.updated) * self._rate.per_second
        )
        bucket.updated = now
        return bucket

    def check(self, client: Hashable) -> None:
        bucket = self._refilled(client)
        if bucket is not None and bucket.tokens < 1:
            wait_s = (1 - bucket.tokens) / self._rate.per_second
            raise RpcError(
                429,
                "rate_limited",
                f"more than {self._rate.per_second} requests per second {self._what}",
                retry_after_s=wait_s,
            )

    def charge(self, client: Hashable) -> None:
        """Take a token (the bucket may go below zero: concurrent requests that all passed
        `check` are all charged, and the client waits longer)."""
        bucket = self._refilled(client)
        if bucket is None:
            self._buckets[client] = _Bucket(self._rate.burst - 1, self._clock())
            self._sweep()
            return
        bucket.tokens -= 1

    def take(self, client: Hashable) -> None:
        self.check(client)
        self.charge(client)

    def __len__(self) -> int:
        return len(self._buckets)

    def _sweep(self) -> None:
        """Forget full buckets (they hold no information) once the table has doubled since
        the last sweep: amortised O(1) per new client."""
        if len(self._buckets) < self._sweep_at:
            return
        now = self._clock()
        rate, burst = self._rate.per_second, self._rate.burst
        self._buckets = {
            client: bucket
            for client, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * rate < burst
        }
        self._sweep_at = max(1_024, 2 * len(self._buckets))


class SlotCounter:
    """How many of a bounded resource (connections, stream subscriptions) each client holds."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._held: dict[Hashable, int] = {}
        self.in_use = 0

    def refusal(self, client: Hashable) -> tuple[int, str] | None:
        """None when `client` may take one more; else the status (503 all taken, 429 this
        client's share taken) and a reason."""
        if self.in_use >= self.total:
            return 503, f"all {self.total} are taken"
        if self._held.get(client, 0) >= self.per_client:
            return 429, f"at most {self.per_client} per client"
        return None

    def acquire(self, client: Hashable) -> None:
        self._held[client] = self._held.get(client, 0) + 1
        self.in_use += 1

    def release(self, client: Hashable) -> None:
        remaining = self._held.get(client, 0) - 1
        if remaining > 0:
            self._held[client] = remaining
        else:
            self._held.pop(client, None)
        self.in_use -= 1

    def held_by(self, client: Hashable) -> int:
        return self._held.get(client, 0)
