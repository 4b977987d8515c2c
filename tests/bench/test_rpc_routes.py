"""The binary batch route and the block stream on a real in-process node (temporary home, no
network loops): real admission of signed transactions, real committed blocks and tx results."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from emrchain.devnet.workload import anchor_fields, anchor_transactions
from emrchain.devnet.workload import sender_key as workload_sender_key
from emrchain.node.node import Node
from emrchain.node.rpc_view import NodeRpcView
from emrchain.rpc.binary import CONTENT_TYPE, BinarySubmit, decode_batch, encode_batch
from emrchain.rpc.errors import RpcError, json_errors
from emrchain.rpc.stream import BlockStream, StreamLimits
from emrchain.state.codes import ResultCode
from emrchain.types import Transaction, TxKind
from emrchain.types.block import tx_ids
from tests.node.in_process import (
    CHAIN_ID,
    commit_own_block,
    register_workload_senders,
    single_validator_node,
)

MAX_BATCH_TXS = 8


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with single_validator_node(tmp_path, max_batch_txs=MAX_BATCH_TXS) as opened:
        yield opened


async def json_route(request: web.Request) -> web.Response:
    return web.json_response({"json_route": True})


def serve(node: Node, test: Callable[[TestClient, BlockStream], Awaitable[None]],
          **stream: Any) -> None:
    async def main() -> None:
        blocks = BlockStream(NodeRpcView(node), StreamLimits(**stream))
        app = web.Application(client_max_size=4096, middlewares=[json_errors])
        app.add_routes(
            [
                web.post("/txs", BinarySubmit(NodeRpcView(node), json_route).handle),
                web.get("/ws/blocks", blocks.handle),
            ]
        )
        node.admission.start()
        try:
            async with TestClient(TestServer(app)) as client:
                await test(client, blocks)
        finally:
            await node.admission.stop()

    asyncio.run(main())


async def subscribed(client: TestClient, blocks: BlockStream) -> Any:
    """A block stream subscriber, once the stream counts it (after the handshake)."""
    socket = await client.ws_connect("/ws/blocks")
    for _ in range(500):
        if blocks.subscribers:
            return socket
        await asyncio.sleep(0.01)
    raise AssertionError("the subscription never registered")


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


def test_binary_route_over_http(node: Node) -> None:
    register_workload_senders(node, senders=2, seed=5)
    before = node.mempool.stats()
    good, forged = anchor_transactions(2, chain_id=CHAIN_ID.encode(), senders=2, seed=5)
    forged = forged[:-1] + bytes([forged[-1] ^ 0x01])  # its signature no longer verifies

    async def check(client: TestClient, blocks: BlockStream) -> None:
        headers = {"Content-Type": CONTENT_TYPE}
        answer = await client.post("/txs", data=encode_batch([good, forged]), headers=headers)
        assert answer.status == 200
        reply = await answer.json()
        assert reply["accepted"] == 1
        assert [(item["index"], item["code"]) for item in reply["refused"]] == [
            (1, "bad_signature")
        ]
        truncated = await client.post("/txs", data=u32(3) + u32(1) + b"a", headers=headers)
        assert truncated.status == 400
        assert (await truncated.json())["error"]["code"] == "truncated"
        oversized = await client.post("/txs", data=u32(10**6), headers=headers)
        assert (await oversized.json())["error"]["code"] == "batch_size"
        too_many = await client.post(
            "/txs", data=encode_batch([good] * (MAX_BATCH_TXS + 1)), headers=headers
        )
        assert too_many.status == 400  # the node's own [rpc] max_batch_txs
        assert (await too_many.json())["error"]["code"] == "batch_size"
        too_big = await client.post("/txs", data=b"\x00" * 5000, headers=headers)
        assert too_big.status == 413
        other = await client.post("/txs", json={"txs": []})
        assert (await other.json()) == {"json_route": True}  # JSON bodies keep their handler

    serve(node, check)
    stats = node.mempool.stats()
    # Bad requests admitted nothing.
    assert stats.size_txs == 1 and stats.admitted_txs == before.admitted_txs + 1
    assert stats.refused_txs_by_code == {"bad_signature": 1}


def test_block_stream_sends_each_committed_block_in_order(node: Node) -> None:
    [registered] = anchor_transactions(1, chain_id=CHAIN_ID.encode(), senders=1, seed=3)
    # The same sender anchors the same record again: admitted (a member), refused at execution.
    duplicate = Transaction.create(
        workload_sender_key(3, 0),
        CHAIN_ID.encode(),
        TxKind.ANCHOR_RECORD,
        2,
        anchor_fields(3, 0, 1),
    ).encode()

    async def check(client: TestClient, blocks: BlockStream) -> None:
        socket = await subscribed(client, blocks)
        first = register_workload_senders(node, senders=1, seed=3)
        assert node.mempool.admit_batch([registered, duplicate])[1].accepted
        second = commit_own_block(node)
        frames = [json.loads((await socket.receive()).data) for _ in range(2)]
        assert [frame["height"] for frame in frames] == [first.header.height, 2]
        assert frames[1]["time_ms"] == second.header.time_ms
        assert frames[1]["block_id"] == second.block_id.hex()
        assert frames[1]["tx_ids"] == [tx_id.hex() for tx_id in tx_ids([registered, duplicate])]
        assert frames[0]["failed"] == []  # every registration applied
        # Execution refused the second anchor of the record, and only it.
        assert frames[1]["failed"] == [[1, int(ResultCode.DUPLICATE_RECORD)]]
        await socket.close()

    serve(node, check)


def test_block_stream_disconnects_a_subscriber_that_falls_behind(node: Node) -> None:
    async def check(client: TestClient, blocks: BlockStream) -> None:
        socket = await subscribed(client, blocks)
        for _ in range(9):  # no await in between: the queue of 2 overflows
            commit_own_block(node)
        messages = []
        while True:
            message = await socket.receive()
            if message.type.name in ("CLOSE", "CLOSING", "CLOSED"):
                break
            messages.append(message)
        assert socket.close_code == 1013
        assert len(messages) <= 2

    serve(node, check, max_queued_blocks=2)


def test_block_stream_refuses_subscribers_beyond_its_limit(node: Node) -> None:
    async def check(client: TestClient, blocks: BlockStream) -> None:
        first = await subscribed(client, blocks)
        second = await client.get("/ws/blocks")
        assert second.status == 503
        assert (await second.json())["error"]["code"] == "too_many_subscribers"
        await first.close()

    serve(node, check, max_subscribers=1)
