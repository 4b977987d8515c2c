"""The namespace harness's relay (`emrchain.devnet.netns_agent`) on 127.0.0.1: it passes bytes
through unchanged, in order, both ways, and holds each direction for its delay (so a round trip
through it takes at least twice the delay). Needs no root: it runs in this namespace."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from emrchain.devnet.netns_agent import READY_LINE, AgentSpec, LinkSpec

DELAY_MS = 40


def echo_server() -> tuple[socket.socket, threading.Thread]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                while data := connection.recv(65536):
                    connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@contextlib.contextmanager
def running_agent(link: LinkSpec, listener: socket.socket) -> Iterator[None]:
    """The agent relaying `listener` (inherited) as `link` says, until the block ends."""
    spec = AgentSpec([link], max_queued_chunks=4, connect_timeout_ms=2_000).to_json()
    agent = subprocess.Popen(
        [sys.executable, "-m", "emrchain.devnet.netns_agent", spec],
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=[listener.fileno()],
    )
    try:
        assert agent.stdout is not None
        assert agent.stdout.readline().strip() == READY_LINE
        yield
    finally:
        agent.terminate()
        agent.wait(10)
        if agent.stdout is not None:
            agent.stdout.close()


@pytest.fixture
def relay() -> Iterator[int]:
    """An agent relaying to an echo server with DELAY_MS each way; yields the port to use."""
    server, _ = echo_server()
    listener = socket.create_server(("127.0.0.1", 0))
    link = LinkSpec("127.0.0.1", server.getsockname()[1], delay_ms=DELAY_MS, fd=listener.fileno())
    try:
        with running_agent(link, listener):
            yield listener.getsockname()[1]
    finally:
        listener.close()
        server.close()


def test_round_trip_takes_twice_the_delay_and_bytes_arrive_intact(relay: int) -> None:
    with socket.create_connection(("127.0.0.1", relay), timeout=10) as client:
        for _ in range(3):
            started = time.monotonic()
            client.sendall(b"ping")
            assert client.recv(16) == b"ping"
            assert time.monotonic() - started >= 2 * DELAY_MS / 1000
        # 4 MiB through a queue of 4 chunks: backpressure, not loss or reordering.
        payload = bytes(range(256)) * (16 * 1024)
        sender = threading.Thread(target=client.sendall, args=(payload,))
        sender.start()
        received = bytearray()
        while len(received) < len(payload):
            received += client.recv(65536)
        sender.join()
        assert bytes(received) == payload


def test_bad_spec_is_refused_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emrchain.devnet.netns_agent", '{"links": 1}'],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("netns agent: bad spec")


def test_a_target_that_refuses_closes_the_accepted_connection() -> None:
    """A proxied dial to a host that does not answer fails as a direct one would: closed."""
    closed_port_holder = socket.create_server(("127.0.0.1", 0))
    closed_port = closed_port_holder.getsockname()[1]
    closed_port_holder.close()  # nothing listens there now: connections are refused
    listener = socket.create_server(("127.0.0.1", 0))
    link = LinkSpec("127.0.0.1", closed_port, delay_ms=DELAY_MS, fd=listener.fileno())
    try:
        with (
            running_agent(link, listener),
            socket.create_connection(listener.getsockname(), timeout=10) as client,
        ):
            assert client.recv(16) == b""
    finally:
        listener.close()
