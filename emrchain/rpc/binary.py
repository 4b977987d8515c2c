"""Binary batch submission: `POST /txs` with `Content-Type: application/octet-stream`.

Body: `count u32 | count × (length u32 | tx bytes)`, big-endian, nothing after the last tx.
It carries the same transactions as the JSON route without hex (half the bytes, no JSON
parse), for clients that submit thousands per second. Limits are the `[rpc]` section's:
the body is capped by `max_body_bytes` (413 with `Connection: close`, the rest left unread:
`guard.read_body`) and the count by `max_batch_txs`. A transaction longer than
`[limits] max_tx_bytes` is framed normally and then refused by admission (`too_large`), exactly
as on the JSON route.

Reply (200): `{"accepted": n, "refused": [{"index", "tx_id", "code", "reason"}, ...]}` — only
the refusals are listed (the client knows its own tx ids), so the reply stays small.
Framing errors are 400 with a stable code: `truncated`, `trailing_bytes`, `batch_size`.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

from aiohttp import web

from emrchain.rpc.errors import RpcError
from emrchain.rpc.guard import read_body
from emrchain.rpc.node_view import NodeView

CONTENT_TYPE = "application/octet-stream"
_U32 = struct.Struct(">I")
LENGTH_BYTES = _U32.size

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def encode_batch(txs: list[bytes]) -> bytes:
    """The request body for `txs` (used by clients and tests)."""
    parts = [_U32.pack(len(txs))]
    for tx in txs:
        parts.append(_U32.pack(len(tx)))
        parts.append(tx)
    return b"".join(parts)


def decode_batch(body: bytes, max_batch_txs: int) -> list[bytes]:
    """The transactions framed in `body`; RpcError (400) naming the first framing fault."""
    if len(body) < LENGTH_BYTES:
        raise RpcError(400, "truncated", "body is shorter than its 4-byte transaction count")
    (count,) = _U32.unpack_from(body, 0)
    if not 1 <= count <= max_batch_txs:
        raise RpcError(400, "batch_size", f"a batch holds 1..{max_batch_txs} transactions")
    # Each item needs at least its length prefix: refuse a count the body cannot hold before
    # looping over it.
    if count * LENGTH_BYTES > len(body) - LENGTH_BYTES:
        raise RpcError(400, "truncated", f"body is too short for {count} transactions")
    txs: list[bytes] = []
    append = txs.append
    unpack = _U32.unpack_from
    view = memoryview(body)
    offset = LENGTH_BYTES
    end = len(body)
    for index in range(count):
        if offset + LENGTH_BYTES > end:
            raise RpcError(400, "truncated", f"transaction {index} has no length prefix")
        (length,) = unpack(body, offset)
        offset += LENGTH_BYTES
        if offset + length > end:
            raise RpcError(400, "truncated", f"transaction {index} runs past the end of the body")
        append(bytes(view[offset : offset + length]))
        offset += length
    if offset != end:
        raise RpcError(
            400, "trailing_bytes", f"{end - offset} bytes follow the last of {count} transactions"
        )
    return txs


class BinarySubmit:
    """The `POST /txs` handler: binary bodies here, everything else to the JSON handler."""

    def __init__(self, node: NodeView, json_handler: Handler) -> None:
        self._node = node
        self._json_handler = json_handler
        self._max_batch_txs = node.config.rpc.max_batch_txs

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != CONTENT_TYPE:
            return await self._json_handler(request)
        if "wait" in request.query:
            # The binary route is the bulk path (benchmarks); one waits with a JSON batch.
            raise RpcError(400, "bad_wait", "wait=commit is for JSON bodies only", close=True)
        txs = decode_batch(await read_body(request), self._max_batch_txs)
        # Through the node's admission pipeline: signatures verified off the event loop.
        admissions = await self._node.admit(txs)
        refused = [
            {
                "index": index,
                "tx_id": admission.tx_id.hex(),
                "code": str(admission.code),
                "reason": admission.reason,
            }
            for index, admission in enumerate(admissions)
            if not admission.accepted
        ]
        return web.json_response({"accepted": len(txs) - len(refused), "refused": refused})
