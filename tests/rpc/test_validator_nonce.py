"""`GET /validators/{validator_key}/nonce`: a validator, which has no /accounts entry, reads
its committed and next nonce (pending transactions counted); nobody else's nonce is answered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from emrchain.client.transactions import validator_update
from emrchain.crypto.keys import Ed25519Signer
from emrchain.node.node import Node
from tests.node.in_process import CHAIN_ID, single_validator_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with single_validator_node(tmp_path) as opened:
        yield opened


def test_a_validator_reads_its_nonce_pending_transactions_counted(node: Node) -> None:
    validator = node.validator_key
    newcomer = Ed25519Signer(bytes([7]) * 32).public_key
    newcomer_node = Ed25519Signer(bytes([8]) * 32).public_key
    approval = validator_update(
        validator,
        CHAIN_ID.encode(),
        1,
        validator_key=newcomer,
        power=10,
        epoch=1,
        node_key=newcomer_node,
        address="127.0.0.1:26656",
    ).encode()
    path = f"/validators/{validator.public_key.hex()}/nonce"

    async def main() -> tuple[dict[str, Any], dict[str, Any], list[tuple[int, str]]]:
        node.admission.start()
        try:
            async with TestClient(TestServer(node.rpc.app)) as client:
                before = await (await client.get(path)).json()
                submitted = await client.post("/txs", json={"txs": [approval.hex()]})
                assert (await submitted.json())["results"][0]["accepted"]
                after = await (await client.get(path)).json()
                refused = []
                for other in (newcomer.hex(), "zz" * 32, "00" * 31):
                    reply = await client.get(f"/validators/{other}/nonce")
                    refused.append((reply.status, (await reply.json())["error"]["code"]))
        finally:
            await node.admission.stop()
        return before, after, refused

    before, after, refused = asyncio.run(main())
    assert before == {
        "validator_key": validator.public_key.hex(),
        "committed_nonce": 0,
        "next_nonce": 1,
    }
    # Pending in the mempool, not committed: the next one to sign is 2.
    assert (after["committed_nonce"], after["next_nonce"]) == (0, 2)
    # A key in no validator set (the newcomer is only proposed) gets no answer: a member's
    # nonce counts its transactions, which only /accounts may show, to those allowed.
    assert refused[0] == (404, "not_a_validator")
    assert [status for status, _ in refused[1:]] == [400, 400]
