"""A TCP relay on 127.0.0.1 that can damage one connection's traffic at a frame boundary.

It sits between a dialer and a responder (the dialer's persistent-peer address points at the
proxy) and understands just enough of the wire format to find frame boundaries in the
responder → dialer direction: hello, stream header + auth frame, then frames. A fault armed
with `arm()` is applied to the next frame travelling that way, so the test knows exactly what
the dialer receives. New connections (reconnects) are relayed cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from enum import StrEnum

from emrchain.p2p.framing import LENGTH_PREFIX, STREAM_HEADER_BYTES
from tests.p2p.helpers import HOST


class Fault(StrEnum):
    # A well-formed length prefix followed by random bytes: decryption must fail.
    GARBAGE = "garbage"
    # A length prefix above max_frame_bytes and no body: must close without waiting for it.
    OVERSIZED = "oversized"
    # Half a frame, then the proxy hangs up: must be seen as a truncated frame.
    TRUNCATED = "truncated"
    # The real frame with one ciphertext bit flipped.
    FLIPPED_BIT = "flipped_bit"
    # Stop relaying in both directions without closing anything (a half-open link).
    BLACKHOLE = "blackhole"


class FaultProxy:
    def __init__(self, target_port: int, max_frame_bytes: int) -> None:
        self._target_port = target_port
        self._max_frame_bytes = max_frame_bytes
        self._armed: Fault | None = None
        self._blackholed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self.applied: list[Fault] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def arm(self, fault: Fault) -> None:
        self._armed = fault

    def heal(self) -> None:
        """Relay normally again (new connections only; a blackholed one stays dead)."""
        self._armed = None
        self._blackholed = asyncio.Event()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.create_task(self._relay(client_reader, client_writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self._writers.append(client_writer)
        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                HOST, self._target_port
            )
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.append(upstream_writer)
        blackholed = self._blackholed
        pumps = [
            asyncio.create_task(self._pump_raw(client_reader, upstream_writer, blackholed)),
            asyncio.create_task(self._pump_frames(upstream_reader, client_writer, blackholed)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            client_writer.transport.abort()
            upstream_writer.transport.abort()

    @staticmethod
    async def _pump_raw(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, blackholed: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65_536):
                if blackholed.is_set():
                    continue
                writer.write(data)
                await writer.drain()

    async def _pump_frames(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, blackholed: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            (hello_length,) = await reader.readexactly(1)
            writer.write(bytes((hello_length,)) + await reader.readexactly(hello_length))
            writer.write(await reader.readexactly(STREAM_HEADER_BYTES))
            while True:  # the auth frame first, then transport frames
                prefix = await reader.readexactly(LENGTH_PREFIX.size)
                (length,) = LENGTH_PREFIX.unpack(prefix)
                body = await reader.readexactly(length)
                if blackholed.is_set():
                    continue
                fault, self._armed = self._armed, None
                if fault is None:
                    writer.write(prefix + body)
                elif fault is Fault.BLACKHOLE:
                    self.applied.append(fault)
                    blackholed.set()
                    continue
                else:
                    self.applied.append(fault)
                    self._damage(fault, writer, prefix, body)
                    if fault is Fault.TRUNCATED:
                        # Half a frame, then FIN; keep the socket until the dialer closes it,
                        # so it sees a clean end of stream rather than a reset.
                        await writer.drain()
                        writer.write_eof()
                        await asyncio.Event().wait()
                await writer.drain()

    def _damage(
        self, fault: Fault, writer: asyncio.StreamWriter, prefix: bytes, body: bytes
    ) -> None:
        if fault is Fault.GARBAGE:
            writer.write(prefix + os.urandom(len(body)))
        elif fault is Fault.OVERSIZED:
            writer.write(LENGTH_PREFIX.pack(self._max_frame_bytes + 1))
        elif fault is Fault.FLIPPED_BIT:
            damaged = bytearray(body)
            damaged[len(damaged) // 2] ^= 0x01
            writer.write(prefix + bytes(damaged))
        elif fault is Fault.TRUNCATED:
            writer.write(prefix + body[: len(body) // 2])
