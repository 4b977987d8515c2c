"""The binary batch route and the block stream, on a stand-in node (no chain needed)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from emrchain.mempool.admission import Admission
from emrchain.rpc.binary import CONTENT_TYPE, BinarySubmit, decode_batch, encode_batch
from emrchain.rpc.errors import RpcError, json_errors
from emrchain.rpc.stream import BlockStream, StreamLimits
from emrchain.state.result import TxResult

MAX_BATCH_TXS = 8


class StandInMempool:
    """Admits every transaction except those starting with 0xFF."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []

    def admit_batch(self, txs: list[bytes]) -> list[Admission]:
        self.batches.append(txs)
        return [
            Admission(bytes(32), tx[:1] != b"\xff", "ok" if tx[:1] != b"\xff" else "bad", "r")
            for tx in txs
        ]


def stand_in_node() -> Any:
    mempool = StandInMempool()

    async def admit(txs: list[bytes]) -> list[Admission]:
        return mempool.admit_batch(txs)

    return SimpleNamespace(
        config=SimpleNamespace(rpc=SimpleNamespace(max_batch_txs=MAX_BATCH_TXS)),
        mempool=mempool,
        admission=SimpleNamespace(admit=admit),
        chain=SimpleNamespace(commit_listeners=[]),
    )


async def json_route(request: web.Request) -> web.Response:
    return web.json_response({"json_route": True})


def serve(node: Any, test: Callable[[TestClient], Awaitable[None]], **stream: Any) -> None:
    async def main() -> None:
        app = web.Application(client_max_size=4096, middlewares=[json_errors])
        app.add_routes(
            [
                web.post("/txs", BinarySubmit(node, json_route).handle),
                web.get("/ws/blocks", BlockStream(node, StreamLimits(**stream)).handle),
            ]
        )
        async with TestClient(TestServer(app)) as client:
            await test(client)

    asyncio.run(main())


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def test_encode_then_decode_round_trips() -> None:
    txs = [b"a", b"", b"x" * 300]
    assert decode_batch(encode_batch(txs), MAX_BATCH_TXS) == txs


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "truncated"),
        (b"\x00\x00\x01", "truncated"),
        (u32(0), "batch_size"),
        (u32(MAX_BATCH_TXS + 1) + (u32(1) + b"a") * (MAX_BATCH_TXS + 1), "batch_size"),
        (u32(0xFFFFFFFF), "batch_size"),
        (u32(2) + u32(1) + b"a", "truncated"),  # count says 2, one present
        (u32(2) + u32(1) + b"a" + u32(5), "truncated"),  # second length with no room
        (u32(1) + u32(10) + b"abc", "truncated"),  # tx runs past the end
        (u32(1) + u32(1) + b"ab", "trailing_bytes"),
    ],
)
def test_bad_framing_is_refused_with_its_code(body: bytes, code: str) -> None:
    with pytest.raises(RpcError) as raised:
        decode_batch(body, MAX_BATCH_TXS)
    assert raised.value.status == 400
    assert raised.value.code == code


def test_binary_route_over_http() -> None:
    node = stand_in_node()

    async def check(client: TestClient) -> None:
        headers = {"Content-Type": CONTENT_TYPE}
        good = await client.post("/txs", data=encode_batch([b"\x01", b"\xff\x02"]), headers=headers)
        assert good.status == 200
        reply = await good.json()
        assert reply["accepted"] == 1
        assert [(item["index"], item["code"]) for item in reply["refused"]] == [(1, "bad")]
        truncated = await client.post("/txs", data=u32(3) + u32(1) + b"a", headers=headers)
        assert truncated.status == 400
        assert (await truncated.json())["error"]["code"] == "truncated"
        oversized = await client.post("/txs", data=u32(10**6), headers=headers)
        assert (await oversized.json())["error"]["code"] == "batch_size"
        too_big = await client.post("/txs", data=b"\x00" * 5000, headers=headers)
        assert too_big.status == 413
        other = await client.post("/txs", json={"txs": []})
        assert (await other.json()) == {"json_route": True}  # JSON bodies keep their handler

    serve(node, check)
    assert node.mempool.batches == [[b"\x01", b"\xff\x02"]]  # bad requests admitted nothing


def committed_block(height: int, tx_count: int) -> tuple[Any, list[bytes], list[TxResult]]:
    header = SimpleNamespace(height=height, time_ms=1_000 + height)
    block = SimpleNamespace(header=header, block_id=bytes([height]) * 32)
    ids = [bytes([height, index]) * 16 for index in range(tx_count)]
    results = [TxResult(40 if index == 1 else 0, "") for index in range(tx_count)]
    return block, ids, results


def test_block_stream_sends_each_committed_block_in_order() -> None:
    node = stand_in_node()

    async def check(client: TestClient) -> None:
        socket = await client.ws_connect("/ws/blocks")
        for _ in range(100):  # the subscription registers once the handshake is done
            if node.chain.commit_listeners[0].__self__.subscribers:
                break
            await asyncio.sleep(0.01)
        publish = node.chain.commit_listeners[0]
        for height in (1, 2):
            publish(*committed_block(height, height))
        frames = [json.loads((await socket.receive()).data) for _ in range(2)]
        assert [frame["height"] for frame in frames] == [1, 2]
        assert frames[1]["time_ms"] == 1_002
        assert frames[1]["tx_ids"] == [(bytes([2, index]) * 16).hex() for index in range(2)]
        assert frames[1]["block_id"] == (bytes([2]) * 32).hex()
        assert frames[0]["failed"] == []
        assert frames[1]["failed"] == [[1, 40]]  # execution refused the second transaction
        await socket.close()

    serve(node, check)


def test_block_stream_disconnects_a_subscriber_that_falls_behind() -> None:
    node = stand_in_node()

    async def check(client: TestClient) -> None:
        socket = await client.ws_connect("/ws/blocks")
        stream = node.chain.commit_listeners[0].__self__
        for _ in range(100):
            if stream.subscribers:
                break
            await asyncio.sleep(0.01)
        for height in range(1, 10):  # no await in between: the queue of 2 overflows
            stream.publish(*committed_block(height, 1))
        messages = []
        while True:
            message = await socket.receive()
            if message.type.name in ("CLOSE", "CLOSING", "CLOSED"):
                break
            messages.append(message)
        assert socket.close_code == 1013
        assert len(messages) <= 2

    serve(node, check, max_queued_blocks=2)


def test_block_stream_refuses_subscribers_beyond_its_limit() -> None:
    node = stand_in_node()

    async def check(client: TestClient) -> None:
        first = await client.ws_connect("/ws/blocks")
        stream = node.chain.commit_listeners[0].__self__
        for _ in range(100):
            if stream.subscribers:
                break
            await asyncio.sleep(0.01)
        second = await client.get("/ws/blocks")
        assert second.status == 503
        assert (await second.json())["error"]["code"] == "too_many_subscribers"
        await first.close()

    serve(node, check, max_subscribers=1)
