"""IpfsBlobStore against a misbehaving node: a small aiohttp server on 127.0.0.1 that lies,
stalls or fails in ways a real node does only rarely."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from emrchain.storage.cid import compute_cid
from emrchain.storage.interfaces import (
    BlobCorruptedError,
    BlobNotFoundError,
    StorageUnavailableError,
)
from emrchain.storage.ipfs import IpfsBlobStore
from tests.services.fixtures import run

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def fake_node(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """Serve `routes` (path after /api/v0/) on a free 127.0.0.1 port; yields the base URL."""
    application = web.Application()
    for path, handler in routes.items():
        application.router.add_post(f"/api/v0/{path}", handler)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def quick_store(url: str, **options: object) -> IpfsBlobStore:
    settings: dict[str, object] = {
        "timeout_ms": 300,
        "retries": 2,
        "node_lookup_timeout_ms": 100,
        "backoff_base_ms": 10,
        "backoff_max_ms": 20,
    }
    settings.update(options)
    return IpfsBlobStore(url, **settings)  # type: ignore[arg-type]


def error_response(message: str, status: int = 500) -> web.Response:
    return web.json_response({"Message": message, "Code": 0, "Type": "error"}, status=status)


def test_node_returning_a_different_cid_is_caught() -> None:
    async def lying_add(request: web.Request) -> web.Response:
        await request.read()
        wrong = compute_cid(b"something else").to_text()
        return web.Response(text=json.dumps({"Name": "blob", "Hash": wrong, "Size": "14"}) + "\n")

    async def scenario() -> None:
        async with fake_node({"add": lying_add}) as url:
            store = quick_store(url)
            try:
                with pytest.raises(BlobCorruptedError, match="returned CID"):
                    await store.put(b"the real bytes")
            finally:
                await store.close()

    run(scenario())


def test_upload_is_multipart_with_an_octet_stream_file_part() -> None:
    seen: dict[str, object] = {}

    async def recording_add(request: web.Request) -> web.Response:
        seen["query"] = dict(request.query)
        reader = await request.multipart()
        part = await reader.next()
        assert part is not None
        seen["content_type"] = part.headers.get("Content-Type")
        data = await part.read()  # type: ignore[union-attr]
        cid = compute_cid(bytes(data)).to_text()
        return web.Response(text=json.dumps({"Name": "blob", "Hash": cid}) + "\n")

    async def scenario() -> None:
        async with fake_node({"add": recording_add}) as url:
            store = quick_store(url)
            try:
                await store.put(b"payload")
            finally:
                await store.close()

    run(scenario())
    assert seen["content_type"] == "application/octet-stream"
    query = seen["query"]
    assert isinstance(query, dict)
    assert {key: query[key] for key in ("cid-version", "raw-leaves", "cid-base", "pin")} == {
        "cid-version": "1",
        "raw-leaves": "true",
        "cid-base": "base32",
        "pin": "true",
    }


def test_node_serving_other_bytes_is_caught() -> None:
    async def wrong_cat(request: web.Request) -> web.Response:
        return web.Response(body=b"not what was stored")

    async def scenario() -> None:
        async with fake_node({"cat": wrong_cat}) as url:
            store = quick_store(url)
            try:
                data = b"what was stored"
                with pytest.raises(BlobCorruptedError):
                    await store.get(compute_cid(data).to_text(), hashlib.sha256(data).digest())
            finally:
                await store.close()

    run(scenario())


def test_node_sending_endless_bytes_is_cut_off() -> None:
    async def endless_cat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(1000):
            await response.write(bytes(65_536))
        return response

    async def scenario() -> None:
        async with fake_node({"cat": endless_cat}) as url:
            store = quick_store(
                url, max_blob_bytes=1_000_000, timeout_ms=5_000, node_lookup_timeout_ms=1_000
            )
            try:
                with pytest.raises(BlobCorruptedError, match="more than 1000000 bytes"):
                    await store.get(compute_cid(b"x").to_text(), hashlib.sha256(b"x").digest())
            finally:
                await store.close()

    run(scenario())


def test_stalled_node_times_out_within_the_bound() -> None:
    calls = 0
    release: asyncio.Event | None = None

    async def stalled(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        assert release is not None
        await asyncio.wait_for(release.wait(), timeout=10)
        return web.Response(text="{}")

    async def scenario() -> None:
        nonlocal release
        release = asyncio.Event()
        async with fake_node({"cat": stalled, "version": stalled}) as url:
            store = quick_store(url, timeout_ms=200, retries=1, node_lookup_timeout_ms=100)
            try:
                started = time.monotonic()
                with pytest.raises(StorageUnavailableError, match="no answer within"):
                    await store.get(compute_cid(b"x").to_text(), hashlib.sha256(b"x").digest())
                # Two attempts of 0.2 s plus at most 20 ms of backoff; the stalled handlers would
                # hold for 10 s (the bound leaves room for a loaded machine).
                assert time.monotonic() - started < 4.0
            finally:
                release.set()  # let the server shut down without waiting for its handlers
                await store.close()

    run(scenario())
    assert calls == 2


def test_transient_server_errors_are_retried() -> None:
    calls = 0
    data = b"eventually served"

    async def flaky_cat(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return error_response("datastore busy")
        return web.Response(body=data)

    async def scenario() -> bytes:
        async with fake_node({"cat": flaky_cat}) as url:
            store = quick_store(url, retries=2)
            try:
                return await store.get(compute_cid(data).to_text(), hashlib.sha256(data).digest())
            finally:
                await store.close()

    assert run(scenario()) == data
    assert calls == 3


def test_node_lookup_timeout_means_not_found_and_is_not_retried() -> None:
    calls = 0

    async def timed_out_cat(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        assert request.query["timeout"] == "100ms"
        return error_response("Failed to cat file: request timed out")

    async def scenario() -> None:
        async with fake_node({"cat": timed_out_cat}) as url:
            store = quick_store(url)
            try:
                with pytest.raises(BlobNotFoundError):
                    await store.get(compute_cid(b"x").to_text(), hashlib.sha256(b"x").digest())
            finally:
                await store.close()

    run(scenario())
    assert calls == 1


def test_nothing_listening_is_unavailable_quickly() -> None:
    async def scenario() -> None:
        async with fake_node({}) as url:
            pass  # the port is closed again: connections are refused
        store = quick_store(url)
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
