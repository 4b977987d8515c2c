"""The RPC's accept loop when the process is out of file descriptors: it keeps running, logs at
most one line per interval, and accepts again once descriptors are free (the review saw a
67 MB log in 17 s from asyncio's own loop, which logs every failed accept with a traceback).

The server side runs in a process of its own whose open-file limit the test sets a few
descriptors above what it uses, so `accept()` really fails with EMFILE; the connection gate's
own cap is set far higher, as if it had been misconfigured past the limit."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

SERVER = r"""
import asyncio, logging, os, resource, sys
from aiohttp import web
from emrchain.rpc.connections import ConnectionGate, ConnectionLimits

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")


async def hello(request):
    return web.Response(text="hello")


async def main():
    limits = ConnectionLimits(
        max_connections=10_000, max_connections_per_address=10_000, listen_backlog=256,
        header_timeout_s=60, write_stall_timeout_s=60, error_log_interval_s=60,
    )
    gate = ConnectionGate(limits, web.Server(hello), None)
    port = await gate.start("127.0.0.1", 0)
    in_use = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 8, hard))
    print(port, flush=True)
    await asyncio.sleep(float(sys.argv[1]))
    print("alive", gate.accept_errors.total, flush=True)


asyncio.run(main())
"""
RUN_S = 4.0


def test_running_out_of_descriptors_logs_one_line_and_the_loop_goes_on() -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(RUN_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        clients = []
        deadline = time.monotonic() + RUN_S - 1
        while len(clients) < 60 and time.monotonic() < deadline:
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"GET / HTTP/1.1\r\nHost: node\r\n\r\n")
            clients.append(client)
        greeted = sum(1 for client in clients if _greeted(client))
        stdout, stderr = server.communicate(timeout=RUN_S + 30)
    finally:
        server.kill()
        for client in clients:
            client.close()
    assert 0 < greeted < 60  # some were served, the others waited in the kernel's queue
    alive, failed_accepts = stdout.split()
    assert alive == "alive" and int(failed_accepts) > 10
    lines = [line for line in stderr.splitlines() if "accept failed" in line]
    assert len(lines) == 1 and "EMFILE" in lines[0], stderr
    assert "Traceback" not in stderr


def _greeted(client: socket.socket) -> bool:
    client.settimeout(0.2)
    try:
        return client.recv(4_096).endswith(b"hello")
    except (TimeoutError, ConnectionResetError):  # queued; reset once the server exited
        return False
