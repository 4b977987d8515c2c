"""The helper process of one network-namespace host (`emrchain.devnet.netns`): TCP relays.

It runs inside the host's namespace (`ip netns exec <ns> python -m emrchain.devnet.netns_agent
SPEC`) and relays each accepted connection to a target address, holding every chunk for
`delay_ms` in each direction before passing it on. Two uses:

- management relays: the harness binds a listening socket on 127.0.0.1 of the *root* namespace
  and passes it down as an inherited file descriptor; a socket keeps the namespace it was made
  in, so the test reaches the node's RPC (127.0.0.1 inside the host) with no interface, route
  or address added to the root namespace, and whatever happens to the host's link;
- delay proxies: one per peer this host dials, listening on 127.0.0.1 inside the host and
  connecting to the peer's host address over the host's link. Each direction of a connection
  is delayed by `delay_ms`, so a round trip through it takes 2 x delay_ms more (`netem` is not
  available on the machines this runs on).

SPEC is JSON: {"links": [{"fd": 3 | null, "listen_port": 0, "target_host": "10.77.0.2",
"target_port": 26656, "delay_ms": 10}], "max_queued_chunks": 256, "connect_timeout_ms": 2000}.
A relay whose target does not answer within connect_timeout_ms closes the accepted connection
(the harness passes the node's `[p2p] dial_timeout_ms`, so a proxied dial gives up when a direct
one would). The agent prints `ready` once every link listens and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from dataclasses import dataclass

CHUNK_BYTES = 64 * 1024
READY_LINE = "ready"


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One relay: where it listens (an inherited fd, or a port on 127.0.0.1 of its namespace),
    where it connects, and the one-way delay it adds in each direction."""

    target_host: str
    target_port: int
    delay_ms: int = 0
    fd: int | None = None
    listen_port: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "fd": self.fd,
            "listen_port": self.listen_port,
            "target_host": self.target_host,
            "target_port": self.target_port,
            "delay_ms": self.delay_ms,
        }


@dataclass(frozen=True, slots=True)
class AgentSpec:
    links: list[LinkSpec]
    max_queued_chunks: int
    """Per direction of a connection: chunks read ahead of the delay before reading stops."""
    connect_timeout_ms: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "links": [link.to_json() for link in self.links],
                "max_queued_chunks": self.max_queued_chunks,
                "connect_timeout_ms": self.connect_timeout_ms,
            }
        )


def parse_spec(text: str) -> AgentSpec:
    """The agent's JSON argument; raises ValueError, KeyError or TypeError if malformed."""
    raw = json.loads(text)
    links = [
        LinkSpec(
            target_host=str(link["target_host"]),
            target_port=int(link["target_port"]),
            delay_ms=int(link["delay_ms"]),
            fd=None if link["fd"] is None else int(link["fd"]),
            listen_port=int(link["listen_port"]),
        )
        for link in raw["links"]
    ]
    for link in links:
        if link.delay_ms < 0 or not 0 <= link.listen_port <= 65535:
            raise ValueError(f"bad link {link}")
    spec = AgentSpec(links, int(raw["max_queued_chunks"]), int(raw["connect_timeout_ms"]))
    if spec.max_queued_chunks < 1 or spec.connect_timeout_ms < 1:
        raise ValueError("max_queued_chunks and connect_timeout_ms must be at least 1")
    return spec


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay_s: float,
    max_queued_chunks: int,
) -> None:
    """Copy reader to writer, each chunk written `delay_s` after it was read. The queue is
    bounded: when the far side reads slowly, this side stops reading (TCP backpressure)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(max_queued_chunks)

    async def send() -> None:
        while True:
            due_s, chunk = await queue.get()
            wait_s = due_s - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            chunk = await reader.read(CHUNK_BYTES)
            await queue.put((loop.time() + delay_s, chunk))
            if not chunk:
                break
        await sender
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await sender


async def _relay(
    link: LinkSpec,
    spec: AgentSpec,
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
) -> None:
    max_queued_chunks = spec.max_queued_chunks
    try:
        upstream_reader, upstream_writer = await asyncio.wait_for(
            asyncio.open_connection(link.target_host, link.target_port),
            spec.connect_timeout_ms / 1000,
        )
    except (OSError, TimeoutError):
        client_writer.close()
        return
    delay_s = link.delay_ms / 1000
    directions = [
        asyncio.create_task(_pump(client_reader, upstream_writer, delay_s, max_queued_chunks)),
        asyncio.create_task(_pump(upstream_reader, client_writer, delay_s, max_queued_chunks)),
    ]
    try:
        # One side failing (reset, broken pipe) ends the connection in both directions.
        await asyncio.wait(directions, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in directions:
            task.cancel()
        for task in directions:
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await task
        for writer in (client_writer, upstream_writer):
            writer.close()


async def _serve(spec: AgentSpec) -> None:
    servers = []
    for link in spec.links:

        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: LinkSpec = link
        ) -> None:
            # Shutdown cancels the open connections: that is their normal end here.
            with contextlib.suppress(asyncio.CancelledError):
                await _relay(link, spec, reader, writer)

        if link.fd is not None:
            listener = socket.socket(fileno=link.fd)
            servers.append(await asyncio.start_server(handle, sock=listener))
        else:
            servers.append(await asyncio.start_server(handle, "127.0.0.1", link.listen_port))
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopped.set)
    print(READY_LINE, flush=True)
    await stopped.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m emrchain.devnet.netns_agent SPEC_JSON", file=sys.stderr)
        return 2
    try:
        spec = parse_spec(arguments[0])
    except (ValueError, KeyError, TypeError) as error:
        print(f"netns agent: bad spec: {error}", file=sys.stderr)
        return 2
    asyncio.run(_serve(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
