"""IpfsBlobStore against a misbehaving IPFS node: the real js-ipfs daemon behind a fault-injecting
proxy on 127.0.0.1 that forwards every call and, per test, lies, corrupts, stalls or fails in
ways a real node does only rarely (a bad disk, a bug, an overloaded host)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from emrchain.storage.cid import compute_cid
from emrchain.storage.interfaces import (
    BlobCorruptedError,
    BlobNotFoundError,
    StorageUnavailableError,
)
from emrchain.storage.ipfs import IpfsBlobStore
from tests.services.fixtures import IpfsDaemon, run

Forward = Callable[[web.Request, bytes], Awaitable[tuple[int, bytes, str]]]
"""Send the request (with the body read so far) on to the real node: (status, body, type)."""
Fault = Callable[[web.Request, Forward], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def faulty_node(daemon: IpfsDaemon, faults: dict[str, Fault]) -> AsyncIterator[str]:
    """A proxy on a free 127.0.0.1 port in front of the real node: `faults` (by path after
    /api/v0/) decide what a call gets; any other call is forwarded untouched. Yields its URL."""
    upstream = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def forward(request: web.Request, body: bytes) -> tuple[int, bytes, str]:
        async with upstream.post(
            daemon.api_url + request.path, params=request.query, data=body,
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as answer:
            return answer.status, await answer.read(), answer.content_type

    async def route(request: web.Request) -> web.StreamResponse:
        fault = faults.get(request.match_info["path"])
        if fault is not None:
            return await fault(request, forward)
        status, body, content_type = await forward(request, await request.read())
        return web.Response(status=status, body=body, content_type=content_type)

    application = web.Application(client_max_size=64 * 1024 * 1024)
    application.router.add_post("/api/v0/{path:.+}", route)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await upstream.close()


def quick_store(url: str, **options: object) -> IpfsBlobStore:
    settings: dict[str, object] = {
        "timeout_ms": 2_000,
        "retries": 2,
        "node_lookup_timeout_ms": 300,
        "backoff_base_ms": 10,
        "backoff_max_ms": 20,
    }
    settings.update(options)
    return IpfsBlobStore(url, **settings)  # type: ignore[arg-type]


def error_response(message: str, status: int = 500) -> web.Response:
    return web.json_response({"Message": message, "Code": 0, "Type": "error"}, status=status)


async def forwarded(request: web.Request, forward: Forward) -> tuple[int, bytes, str]:
    return await forward(request, await request.read())


async def add_for_real(daemon: IpfsDaemon, data: bytes) -> str:
    """Store `data` on the real node directly (no proxy); its CID."""
    store = quick_store(daemon.api_url)
    try:
        return await store.put(data)
    finally:
        await store.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_node_returning_a_different_cid_is_caught(ipfs_daemon: IpfsDaemon) -> None:
    async def lying_add(request: web.Request, forward: Forward) -> web.Response:
        status, body, _ = await forwarded(request, forward)
        assert status == 200  # the real node stored the bytes; the answer is then falsified
        answer = json.loads(body)
        answer["Hash"] = compute_cid(b"something else").to_text()
        return web.Response(text=json.dumps(answer) + "\n")

    async def scenario() -> None:
        async with faulty_node(ipfs_daemon, {"add": lying_add}) as url:
            store = quick_store(url)
            try:
                with pytest.raises(BlobCorruptedError, match="returned CID"):
                    await store.put(b"the real bytes " + os.urandom(8))
            finally:
                await store.close()

    run(scenario())


def test_upload_is_multipart_with_an_octet_stream_file_part(ipfs_daemon: IpfsDaemon) -> None:
    seen: dict[str, object] = {}

    async def recording_add(request: web.Request, forward: Forward) -> web.Response:
        body = await request.read()
        seen["query"] = dict(request.query)
        seen["content_type"] = request.headers.get("Content-Type", "")
        seen["body"] = body
        status, answer, content_type = await forward(request, body)
        return web.Response(status=status, body=answer, content_type=content_type)

    payload = b"payload " + os.urandom(8)

    async def scenario() -> str:
        async with faulty_node(ipfs_daemon, {"add": recording_add}) as url:
            store = quick_store(url)
            try:
                return await store.put(payload)
            finally:
                await store.close()

    cid = run(scenario())
    assert cid == compute_cid(payload).to_text()  # the real node agreed on the CID
    assert str(seen["content_type"]).startswith("multipart/form-data")
    body = seen["body"]
    assert isinstance(body, bytes)
    assert b"Content-Type: application/octet-stream" in body and payload in body
    query = seen["query"]
    assert isinstance(query, dict)
    assert {key: query[key] for key in ("cid-version", "raw-leaves", "cid-base", "pin")} == {
        "cid-version": "1",
        "raw-leaves": "true",
        "cid-base": "base32",
        "pin": "true",
    }


def test_node_serving_other_bytes_is_caught(ipfs_daemon: IpfsDaemon) -> None:
    async def corrupting_cat(request: web.Request, forward: Forward) -> web.Response:
        status, body, _ = await forwarded(request, forward)
        assert status == 200
        return web.Response(body=bytes([body[0] ^ 0x01]) + body[1:])  # one flipped bit

    data = b"what was stored " + os.urandom(8)

    async def scenario() -> None:
        cid = await add_for_real(ipfs_daemon, data)
        async with faulty_node(ipfs_daemon, {"cat": corrupting_cat}) as url:
            store = quick_store(url)
            try:
                with pytest.raises(BlobCorruptedError):
                    await store.get(cid, hashlib.sha256(data).digest())
            finally:
                await store.close()

    run(scenario())


def test_node_sending_endless_bytes_is_cut_off(ipfs_daemon: IpfsDaemon) -> None:
    async def endless_cat(request: web.Request, forward: Forward) -> web.StreamResponse:
        _, body, _ = await forwarded(request, forward)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(body)  # the real answer, then junk that never ends
        for _ in range(1000):
            await response.write(bytes(65_536))
        return response

    data = os.urandom(100)

    async def scenario() -> None:
        cid = await add_for_real(ipfs_daemon, data)
        async with faulty_node(ipfs_daemon, {"cat": endless_cat}) as url:
            store = quick_store(
                url, max_blob_bytes=1_000_000, timeout_ms=5_000, node_lookup_timeout_ms=1_000
            )
            try:
                with pytest.raises(BlobCorruptedError, match="more than 1000000 bytes"):
                    await store.get(cid, hashlib.sha256(data).digest())
            finally:
                await store.close()

    run(scenario())


def test_stalled_node_times_out_within_the_bound(ipfs_daemon: IpfsDaemon) -> None:
    calls = 0
    release: asyncio.Event | None = None

    async def stalled(request: web.Request, forward: Forward) -> web.Response:
        nonlocal calls
        calls += 1
        assert release is not None
        await asyncio.wait_for(release.wait(), timeout=10)
        return error_response("released")

    data = os.urandom(64)

    async def scenario() -> None:
        nonlocal release
        release = asyncio.Event()
        cid = await add_for_real(ipfs_daemon, data)
        async with faulty_node(ipfs_daemon, {"cat": stalled}) as url:
            store = quick_store(url, timeout_ms=200, retries=1, node_lookup_timeout_ms=100)
            try:
                started = time.monotonic()
                with pytest.raises(StorageUnavailableError, match="no answer within"):
                    await store.get(cid, hashlib.sha256(data).digest())
                # Two attempts of 0.2 s plus at most 20 ms of backoff; the stalled handlers would
                # hold for 10 s (the bound leaves room for a loaded machine).
                assert time.monotonic() - started < 4.0
            finally:
                release.set()  # let the proxy shut down without waiting for its handlers
                await store.close()

    run(scenario())
    assert calls == 2


def test_transient_server_errors_are_retried(ipfs_daemon: IpfsDaemon) -> None:
    calls = 0
    data = b"eventually served " + os.urandom(8)

    async def busy_then_real_cat(request: web.Request, forward: Forward) -> web.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return error_response("datastore busy")
        status, body, content_type = await forwarded(request, forward)
        return web.Response(status=status, body=body, content_type=content_type)

    async def scenario() -> bytes:
        cid = await add_for_real(ipfs_daemon, data)
        async with faulty_node(ipfs_daemon, {"cat": busy_then_real_cat}) as url:
            store = quick_store(url, retries=2)
            try:
                return await store.get(cid, hashlib.sha256(data).digest())
            finally:
                await store.close()

    assert run(scenario()) == data
    assert calls == 3


def test_node_lookup_timeout_means_not_found_and_is_not_retried(ipfs_daemon: IpfsDaemon) -> None:
    answers: list[tuple[str, int, bytes]] = []

    async def watched_cat(request: web.Request, forward: Forward) -> web.Response:
        status, body, content_type = await forwarded(request, forward)
        answers.append((request.query["timeout"], status, body))
        return web.Response(status=status, body=body, content_type=content_type)

    never_added = os.urandom(64)

    async def scenario() -> None:
        async with faulty_node(ipfs_daemon, {"cat": watched_cat}) as url:
            store = quick_store(url, node_lookup_timeout_ms=100)
            try:
                with pytest.raises(BlobNotFoundError):
                    await store.get(
                        compute_cid(never_added).to_text(), hashlib.sha256(never_added).digest()
                    )
            finally:
                await store.close()

    run(scenario())
    # The real node's own answer to a block it lacks, once: "absent" is an answer, not a fault.
    assert len(answers) == 1
    timeout, status, body = answers[0]
    assert timeout == "100ms" and status == 500 and b"timed out" in body


def test_nothing_listening_is_unavailable_quickly() -> None:
    async def scenario() -> None:
        store = quick_store(f"http://127.0.0.1:{closed_port()}")
        try:
            started = time.monotonic()
            with pytest.raises(StorageUnavailableError, match="3 attempt"):
                await store.put(os.urandom(10))
            assert time.monotonic() - started < 3.0  # refused at once, three times
        finally:
            await store.close()

    run(scenario())


def test_constructor_rejects_inconsistent_timeouts() -> None:
    with pytest.raises(ValueError, match="below timeout_ms"):
        IpfsBlobStore("http://127.0.0.1:1", timeout_ms=1_000, node_lookup_timeout_ms=1_000)
    with pytest.raises(ValueError):
        IpfsBlobStore("127.0.0.1:5001")
    with pytest.raises(ValueError):
        IpfsBlobStore("http://127.0.0.1:1", retries=-1)
