"""The RPC's listening sockets: the node accepts connections itself, within its limits.

asyncio's own accept loop takes every connection it can and logs each failed `accept()` with a
traceback: with no connection cap, 1,100 slow sockets ran the node out of file descriptors and
wrote a 67 MB log in 17 s. Here (`docs/spec/rpc.md` §Limits):
- at most `[rpc] max_connections` connections are open, and `max_connections_per_address` from
  one client address; one more is answered `503` (all taken) or `429` (the address's share) with
  `Retry-After` and closed at once, so the node's descriptors stay within its open-file limit
  (checked at start, `ensure_file_limit`);
- a new connection must complete its TLS handshake, and then send its first request's headers,
  each within `header_timeout_ms` (slowloris); between requests aiohttp closes a connection idle
  for `idle_timeout_ms`;
- a client that takes no reply bytes for `request_timeout_ms` (its socket stays full) is
  disconnected, so a reader that stalls cannot pin a large reply in memory;
- accept errors and refused connections are logged at most once per `error_log_interval_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import resource
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrchain.rpc.limits import SlotCounter, client_address
from emrchain.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)

RESERVED_FILE_DESCRIPTORS = 2_048
"""Descriptors the node needs besides RPC connections: two LevelDB databases (each keeps up to
1,000 table files open), P2P connections, the blob store, IPFS and Redis sockets, logs."""
ACCEPT_RETRY_S = 0.1
"""After an accept error (e.g. out of descriptors), wait this long before accepting again."""
END_OF_HEADERS = b"\r\n\r\n"


class FileLimitError(RuntimeError):
    """The process may not open enough files for `[rpc] max_connections`."""


def ensure_file_limit(max_connections: int) -> int:
    """Raise the soft open-file limit to fit `max_connections` plus the node's own files;
    FileLimitError if the hard limit does not allow it. Returns the soft limit in force."""
    needed = max_connections + RESERVED_FILE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise FileLimitError(
                f"[rpc] max_connections = {max_connections} needs {needed} open files "
                f"({RESERVED_FILE_DESCRIPTORS} for the node itself), the hard limit is {hard}: "
                "lower max_connections or raise the limit (ulimit -Hn)"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    max_connections_per_address: int
    listen_backlog: int
    header_timeout_s: float
    write_stall_timeout_s: float
    error_log_interval_s: float


@dataclass(frozen=True, slots=True)
class TlsFiles:
    certificate: Path
    key: Path
    client_ca: Path | None


def server_tls_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2 or later with the certificate and key; with `client_ca`, every client must
    present a certificate signed by one of its CAs."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.certificate, files.key)
    if files.client_ca is not None:
        context.load_verify_locations(cafile=files.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _refusal(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _GatedConnection(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: releases the connection's slot when it
    ends, closes it if the first request's headers are late, or if the client stops taking
    reply bytes. Everything else goes straight through to aiohttp."""

    def __init__(
        self, inner: asyncio.Protocol, limits: ConnectionLimits, on_lost: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._limits = limits
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._limits.header_timeout_s, self._abort)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is not None:
            # Only the first request is watched here; later ones are aiohttp's idle timeout's.
            window = self._tail + data
            if END_OF_HEADERS in window:
                self._header_timer.cancel()
                self._header_timer = None
            else:
                self._tail = window[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._stall_timer is None:
            loop = asyncio.get_running_loop()
            self._stall_timer = loop.call_later(self._limits.write_stall_timeout_s, self._abort)
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._on_lost()
        self._inner.connection_lost(exc)

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class ConnectionGate:
    """Listens on `host:port` and hands the connections it admits to `protocol_factory`."""

    def __init__(
        self,
        limits: ConnectionLimits,
        protocol_factory: Callable[[], asyncio.Protocol],
        tls: ssl.SSLContext | None,
    ) -> None:
        self._limits = limits
        self._protocol_factory = protocol_factory
        self._tls = tls
        self.slots = SlotCounter(limits.max_connections, limits.max_connections_per_address)
        interval_s = limits.error_log_interval_s
        self.refusals = ThrottledLog(logger, interval_s)
        self.accept_errors = ThrottledLog(logger, interval_s)
        self.handshake_failures = ThrottledLog(logger, interval_s)
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Bind every address of `host` (one port for all); the port bound."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            listener = socket.socket(family, kind, proto)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if self._listeners:  # port 0: every address on the first one's port
                    address = (address[0], self._listeners[0].getsockname()[1], *address[2:])
                listener.bind(address)
                listener.listen(self._limits.listen_backlog)
                listener.setblocking(False)
            except OSError:
                listener.close()
                await self.close()
                raise
            self._listeners.append(listener)
        for listener in self._listeners:
            self._spawn(self._accept_loop(listener))
        return self._listeners[0].getsockname()[1]

    async def close(self) -> None:
        """Stop accepting (connections already open are aiohttp's to close)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for listener in self._listeners:
            listener.close()
        self._listeners = []

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, peer = await loop.sock_accept(listener)
            except OSError as error:
                # EMFILE/ENFILE (out of descriptors), ENOBUFS, ECONNABORTED: the client's or
                # the system's trouble, not a reason to stop serving; a pause lets it pass.
                self.accept_errors.warning(
                    "RPC accept failed: %s", errno.errorcode.get(error.errno or 0, error)
                )
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            client = client_address(peer)
            refusal = self.slots.refusal(client)
            if refusal is not None:
                self._refuse(connection, client, *refusal)
                continue
            self.slots.acquire(client)
            self._spawn(self._serve(connection, client))

    def _refuse(self, connection: socket.socket, client: str, status: int, why: str) -> None:
        self.refusals.warning("RPC connection from %s refused: %s", client, why)
        if self._tls is None:  # a TLS client could not read a plain-text answer
            reason, code = (
                ("Too Many Requests", "too_many_connections")
                if status == 429
                else ("Service Unavailable", "busy")
            )
            answer = _refusal(status, reason, code, f"connection refused: {why}")
            with contextlib.suppress(OSError):
                connection.send(answer)
        connection.close()

    async def _serve(self, connection: socket.socket, client: str) -> None:
        """Hand the connection to aiohttp (after the TLS handshake, if any); its slot is
        released when it closes, or here if it never got that far."""
        handed_over = False

        def release() -> None:
            self.slots.release(client)

        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: _GatedConnection(self._protocol_factory(), self._limits, release),
                connection,
                ssl=self._tls,
                ssl_handshake_timeout=self._limits.header_timeout_s if self._tls else None,
            )
            handed_over = True
        except (OSError, TimeoutError, ssl.SSLError) as error:
            self.handshake_failures.warning(
                "RPC connection from %s failed before its first request: %s", client, error
            )
        finally:
            if not handed_over:
                connection.close()
                release()
