"""One authenticated connection to a peer: a reader, a writer and a keepalive task.

The connection owns a bounded send queue. `enqueue` never blocks: when the queue is full the
newest message is dropped and counted, because a slow peer must not stall consensus for the
others. Received messages go to the manager's bounded receive queue; when that is full the
reader waits, which stops reading the socket and lets TCP push back on the peer.

Any frame error closes this connection only; the manager decides about reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from emrchain.p2p.config import P2PConfig
from emrchain.p2p.errors import CloseReason, FrameError
from emrchain.p2p.framing import (
    KEEPALIVE_CHANNEL,
    LENGTH_PREFIX,
    FrameOpener,
    FrameSealer,
    frame_prefix,
    read_frame,
)
from emrchain.p2p.stats import P2PStats

logger = logging.getLogger("emrchain.p2p")

# Closes caused by the peer breaking the protocol: the socket is aborted without a flush.
PROTOCOL_VIOLATIONS = frozenset(
    {
        CloseReason.FRAME_TOO_LARGE,
        CloseReason.FRAME_TOO_SMALL,
        CloseReason.TRUNCATED_FRAME,
        CloseReason.DECRYPTION_FAILED,
        CloseReason.BAD_STREAM_TAG,
        CloseReason.BAD_KEEPALIVE,
    }
)


class ReceivedMessage(NamedTuple):
    peer_id: str
    channel: int
    payload: bytes


class PeerConnection:
    """A connection past its handshake; `run()` drives it until `close()` or an error."""

    def __init__(
        self,
        *,
        peer_id: str,
        dialer_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sealer: FrameSealer,
        opener: FrameOpener,
        config: P2PConfig,
        stats: P2PStats,
        deliver: Callable[[ReceivedMessage], Awaitable[None]],
        on_closed: Callable[[PeerConnection], None],
    ) -> None:
        """`on_closed(self)` runs synchronously inside the first `close()`, so the manager
        forgets a closed connection at once, before its socket has finished closing."""
        self.peer_id = peer_id
        # Which node opened the TCP connection: duplicate connections are resolved by it.
        self.dialer_id = dialer_id
        self.close_reason: CloseReason | None = None
        self._reader = reader
        self._writer = writer
        self._sealer = sealer
        self._opener = opener
        self._config = config
        self._stats = stats
        self._peer_stats = stats.peer(peer_id)
        self._deliver = deliver
        self._on_closed = on_closed
        self._send_queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(
            maxsize=config.send_queue_max_messages
        )
        self._closed = asyncio.Event()
        now = time.monotonic()
        self._last_received = now
        self._last_sent = now
        # True while the reader waits for room in the receive queue: our own slowness must not
        # count as the peer being idle.
        self._delivering = False

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def enqueue(self, channel: int, payload: bytes) -> bool:
        """Queue one message without blocking; False if closed or the queue is full (counted)."""
        if self._closed.is_set():
            return False
        try:
            self._send_queue.put_nowait((channel, payload))
        except asyncio.QueueFull:
            self._peer_stats.send_queue_drops += 1
            self._stats.send_queue_drops += 1
            return False
        return True

    def close(self, reason: CloseReason, detail: str = "") -> None:
        """Ask the connection to close; the first reason given is the one recorded."""
        if self._closed.is_set():
            return
        self.close_reason = reason
        log = logger.warning if reason in PROTOCOL_VIOLATIONS else logger.info
        log(
            "closing connection to %s: %s%s",
            self.peer_id[:16],
            reason,
            f" ({detail})" if detail else "",
        )
        self._closed.set()
        self._on_closed(self)

    async def run(self) -> CloseReason:
        """Run the reader, writer and keepalive until the connection closes; return why."""
        tasks: list[asyncio.Task[None]] = []
        if not self._closed.is_set():
            tasks = [
                asyncio.create_task(self._read_loop()),
                asyncio.create_task(self._write_loop()),
                asyncio.create_task(self._keepalive_loop()),
            ]
        try:
            await self._closed.wait()
        finally:
            if not self._closed.is_set():  # cancelled from outside: the manager is shutting down
                self.close(CloseReason.SHUTDOWN)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._close_transport()
        return self.close_reason or CloseReason.SHUTDOWN

    async def _close_transport(self) -> None:
        if self.close_reason in PROTOCOL_VIOLATIONS:
            self._writer.transport.abort()
            return
        self._writer.close()
        try:
            async with asyncio.timeout(self._config.close_timeout_ms / 1000):
                await self._writer.wait_closed()
        except (TimeoutError, OSError):
            # The peer does not read what is left: drop it rather than wait forever.
            self._writer.transport.abort()

    async def _read_loop(self) -> None:
        max_frame_bytes = self._config.max_frame_bytes
        try:
            while True:
                ciphertext = await read_frame(self._reader, max_frame_bytes)
                channel, payload = self._opener.open_message(ciphertext)
                self._last_received = time.monotonic()
                wire_bytes = LENGTH_PREFIX.size + len(ciphertext)
                self._peer_stats.frames_in += 1
                self._peer_stats.bytes_in += wire_bytes
                self._stats.frames_in += 1
                self._stats.bytes_in += wire_bytes
                if channel == KEEPALIVE_CHANNEL:
                    if payload:
                        raise FrameError(CloseReason.BAD_KEEPALIVE, "keepalive with a payload")
                    continue
                self._delivering = True
                await self._deliver(ReceivedMessage(self.peer_id, channel, payload))
                self._delivering = False
                self._last_received = time.monotonic()
        except FrameError as error:
            self.close(error.reason, error.detail)
        except OSError as error:
            self.close(CloseReason.CONNECTION_ERROR, repr(error))

    async def _write_loop(self) -> None:
        queue = self._send_queue
        batch_limit_bytes = self._config.max_write_buffer_bytes
        try:
            while True:
                channel, payload = await queue.get()
                pieces: list[bytes] = []
                batch_bytes = 0
                while True:
                    # Sealed here, in wire order: secretstream frames must arrive in push order.
                    ciphertext = self._sealer.seal_message(channel, payload)
                    pieces.append(frame_prefix(ciphertext))
                    pieces.append(ciphertext)
                    batch_bytes += LENGTH_PREFIX.size + len(ciphertext)
                    if batch_bytes >= batch_limit_bytes or queue.empty():
                        break
                    channel, payload = queue.get_nowait()
                self._writer.writelines(pieces)
                frames = len(pieces) // 2
                self._peer_stats.frames_out += frames
                self._peer_stats.bytes_out += batch_bytes
                self._stats.frames_out += frames
                self._stats.bytes_out += batch_bytes
                self._last_sent = time.monotonic()
                await self._writer.drain()
        except OSError as error:
            self.close(CloseReason.CONNECTION_ERROR, repr(error))

    async def _keepalive_loop(self) -> None:
        ping_interval = self._config.ping_interval_ms / 1000
        idle_timeout = self._config.idle_timeout_ms / 1000
        # Check a few times per interval so an idle peer is dropped close to idle_timeout.
        check_interval = ping_interval / 4
        while True:
            await asyncio.sleep(check_interval)
            now = time.monotonic()
            if not self._delivering and now - self._last_received > idle_timeout:
                self.close(CloseReason.IDLE_TIMEOUT, f"nothing received for {idle_timeout:.1f} s")
                return
            if now - self._last_sent >= ping_interval:
                # A full queue means traffic is pending anyway; losing this keepalive is harmless.
                with contextlib.suppress(asyncio.QueueFull):
                    self._send_queue.put_nowait((KEEPALIVE_CHANNEL, b""))
                self._last_sent = now
