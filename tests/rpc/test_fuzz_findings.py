"""Regressions for what `scripts/fuzz-rpc` (schemathesis against a live node) and the review
around it found (docs/spec/rpc.md §Fuzzing). Each runs the node's real RPC application on a real
in-process node and failed before its fix."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema_rs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from emrchain.api.signing import (
    HEADER_KEY,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    sign_request,
)
from emrchain.config.homes import ADMIN_IDENTITY_FILE
from emrchain.keystore.member import MemberIdentity, load_member_identity
from emrchain.node.node import Node
from emrchain.rpc.binary import CONTENT_TYPE, encode_batch
from emrchain.rpc.openapi import DocumentLimits, document
from tests.node.in_process import commit_own_block, single_validator_node

ZERO32 = "00" * 32
MAX_BATCH_TXS = 7


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with single_validator_node(tmp_path, max_batch_txs=MAX_BATCH_TXS) as opened:
        yield opened


def serve(node: Node, test: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(node.rpc.app)) as client:
            await test(client)

    asyncio.run(main())


async def error_of(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return (await response.json())["error"]["code"]


def member_signed(node: Node, identity: MemberIdentity, path: str) -> dict[str, str]:
    """Headers of a GET of `path` signed by `identity` now."""
    now_ms = time.time_ns() // 1_000_000
    node_id = node.node_key.public_key
    return sign_request(identity.signer, node.chain_id, node_id, "GET", path, b"", now_ms).as_dict()


def signed_headers(timestamp: str) -> dict[str, str]:
    return {
        HEADER_KEY: ZERO32,
        HEADER_NONCE: "00" * 16,
        HEADER_SIGNATURE: "00" * 64,
        HEADER_TIMESTAMP: timestamp,
    }


# ---------------------------------------------------------------- found by schemathesis


def test_405_keeps_the_allow_header(node: Node) -> None:
    # ST204: the JSON error middleware rebuilt aiohttp's 405 and dropped its Allow header.
    async def test(client: TestClient) -> None:
        response = await client.request("TRACE", "/status")
        assert await error_of(response, 405) == "method_not_allowed"
        assert "GET" in response.headers["Allow"]

    serve(node, test)


def test_document_states_the_batch_limits_of_this_node(node: Node) -> None:
    # ST202 (document bug): {"txs": []} was schema-valid but refused with batch_size.
    async def test(client: TestClient) -> None:
        served = await (await client.get("/openapi.json")).json()
        body = served["paths"]["/txs"]["post"]["requestBody"]["content"]["application/json"]
        txs = body["schema"]["properties"]["txs"]
        assert (txs["minItems"], txs["maxItems"]) == (1, MAX_BATCH_TXS)
        assert served == document(
            DocumentLimits(MAX_BATCH_TXS, node.config.limits.max_tx_bytes)
        )

    serve(node, test)


@pytest.mark.parametrize("max_header_bytes", [1_024, 8_190, 65_536])
def test_access_event_header_limit_fits_the_http_parser(max_header_bytes: int) -> None:
    # ST105 (document bug): a schema-valid header longer than aiohttp's line limit got the
    # parser's text/plain 400 before any route ran. The limit follows [rpc] max_header_bytes.
    limits = DocumentLimits(max_header_bytes=max_header_bytes)
    parameters = document(limits)["paths"]["/records/{record_id}"]["get"]["parameters"]
    header = next(item for item in parameters if item["name"] == "X-Emrchain-Access-Event")
    assert header["schema"]["maxLength"] == limits.max_access_event_hex
    assert header["schema"]["maxLength"] % 2 == 0
    assert header["schema"]["maxLength"] + len("X-Emrchain-Access-Event: ") < max_header_bytes


def test_http_parser_limits_come_from_the_config(tmp_path: Path) -> None:
    # [rpc] max_header_bytes and max_headers reach the server's HTTP parser.
    with single_validator_node(tmp_path, max_header_bytes=1_024, max_headers=16) as node:

        async def main() -> None:
            await node.rpc.start()
            try:
                url = f"http://127.0.0.1:{node.rpc.port}/health"
                async with aiohttp.ClientSession() as session:
                    async with session.get(url, headers={"X-Long": "a" * 900}) as fits:
                        assert fits.status == 200
                    async with session.get(url, headers={"X-Long": "a" * 1_100}) as long:
                        assert long.status == 400
                    many = {f"X-Header-{index}": "1" for index in range(20)}
                    async with session.get(url, headers=many) as crowded:
                        assert crowded.status == 400
            finally:
                await node.rpc.close()

        asyncio.run(main())


def test_replies_match_the_documented_schemas(node: Node) -> None:
    # The document said only "object"; its reply schemas are now checked by the fuzzer, and
    # here on replies the fuzzer cannot reach (a committed transaction, its block).
    admin_key = node.validator_key.public_key.hex()
    paths = document()["paths"]

    def schema(path: str, method: str = "get") -> dict[str, Any]:
        reply = paths[path][method]["responses"]["200"]["content"]["application/json"]
        return reply["schema"]

    admin = load_member_identity(node.config.resolve(ADMIN_IDENTITY_FILE))

    async def test(client: TestClient) -> None:
        block = commit_own_block(node)
        assert block.height == 1
        own_account = f"/accounts/{admin.member_key.hex()}"
        for url, path, headers in (
            ("/health", "/health", {}),
            ("/status", "/status", {}),
            ("/blocks/latest", "/blocks/latest", {}),
            ("/blocks/1", "/blocks/{height}", {}),
            (own_account, "/accounts/{member_key}", member_signed(node, admin, own_account)),
            # Another key, as a member sees it: the hidden fields are null.
            (f"/accounts/{admin_key}", "/accounts/{member_key}", {}),
        ):
            if path == "/accounts/{member_key}" and not headers:
                headers = member_signed(node, admin, url)
            response = await client.get(url, headers=headers)
            assert response.status == 200, url
            jsonschema_rs.validate(schema(path), await response.json())
        refused = await client.post("/txs", json={"txs": ["00"]})
        jsonschema_rs.validate(schema("/txs", "post"), await refused.json())
        binary = await client.post(
            "/txs", data=encode_batch([b"\x00"]), headers={"Content-Type": CONTENT_TYPE}
        )
        jsonschema_rs.validate(schema("/txs", "post"), await binary.json())

    serve(node, test)


# ------------------------------------------------------ found reviewing the fuzzer's gaps


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/blocks/%C2%B2", "bad_height"),  # "²".isdigit() is True, int("²") raises: was a 500
        ("/blocks/%D9%A1", "bad_height"),  # Arabic-Indic one: int() took it, was block 1
        ("/blocks/9223372036854775808", "bad_height"),  # past the documented maximum
        (f"/accounts/{'AB' * 32}", "bad_hex"),  # documented lowercase, was accepted
        (f"/txs/{'00 ' * 31}00", "bad_length"),  # fromhex skips spaces: was looked up
    ],
)
def test_only_the_documented_digits_and_hex(node: Node, path: str, code: str) -> None:
    async def test(client: TestClient) -> None:
        assert await error_of(await client.get(path), 400) == code

    serve(node, test)


def test_a_signed_listing_with_a_superscript_limit_is_a_400(node: Node) -> None:
    admin = load_member_identity(node.config.resolve(ADMIN_IDENTITY_FILE))
    path = f"/patients/{ZERO32}/records?limit=%C2%B2"

    async def test(client: TestClient) -> None:
        # "²".isdigit() is True and int("²") raises: `?limit=²` was a 500. The listings
        # authenticate first, so the request is signed (an unsigned one is a 401).
        response = await client.get(path, headers=member_signed(node, admin, path))
        assert await error_of(response, 400) == "bad_limit"

    serve(node, test)


@pytest.mark.parametrize(
    "path",
    [
        f"/patients/{ZERO32}/access-events?before=junk",
        f"/records/{ZERO32}/access-events?before=junk",
        f"/patients/{ZERO32}/consents?after=junk",
        f"/patients/{ZERO32}/records?after=junk&limit=0",
    ],
)
def test_a_paged_listing_authenticates_before_it_reads_its_cursor(node: Node, path: str) -> None:
    async def test(client: TestClient) -> None:
        # Found by schemathesis: an unsigned request with a bad cursor was a 400 bad_cursor,
        # where every signed route answers an unsigned request with 401.
        assert await error_of(await client.get(path), 401) == "unsigned_request"

    serve(node, test)


@pytest.mark.parametrize("timestamp", ["²", "١٢٣", "9223372036854775808"])
def test_signature_timestamp_must_be_ascii_milliseconds(node: Node, timestamp: str) -> None:
    async def test(client: TestClient) -> None:
        # aiohttp decodes header bytes as UTF-8: "²" was a 500 from int().
        response = await client.get(
            f"/patients/{ZERO32}/grants", headers=signed_headers(timestamp).items()
        )
        assert await error_of(response, 401) == "unsigned_request"

    serve(node, test)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # RecursionError in json.loads: was a 500
        b'{"txs": ["00"], "n": ' + b"1" * 5_000 + b"}",  # int digit limit ValueError: was a 500
        b'{"txs": ["00 11"]}',  # fromhex skips whitespace: was admitted as a tx
        b'{"txs": ["0A"]}',  # upper case: documented lowercase
    ],
)
def test_bad_json_bodies_are_400(node: Node, body: bytes) -> None:
    async def test(client: TestClient) -> None:
        response = await client.post(
            "/txs", data=body, headers={"Content-Type": "application/json"}
        )
        assert await error_of(response, 400) in ("bad_json", "bad_hex")
        assert len(node.mempool) == 0

    serve(node, test)


def test_unexpected_errors_are_json_and_the_server_keeps_serving(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(tx_id: bytes) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(node.store, "tx_proof", broken)

    async def test(client: TestClient) -> None:
        assert await error_of(await client.get(f"/txs/{ZERO32}"), 500) == "internal_error"
        assert (await client.get("/health")).status == 200

    serve(node, test)


def test_request_timeout_ms_is_enforced(tmp_path: Path) -> None:
    # [rpc] request_timeout_ms was configured and documented but nothing enforced it.
    with single_validator_node(
        tmp_path,
        request_timeout_ms=200,
        commit_wait_timeout_ms=100,
        records={"access_event_timeout_ms": 100},
    ) as node:

        async def never(txs: list[bytes]) -> list[Any]:
            await asyncio.sleep(3600)
            return []

        node.admission.admit = never  # type: ignore[method-assign]

        async def test(client: TestClient) -> None:
            response = await client.post(
                "/txs", data=encode_batch([b"\x00"]), headers={"Content-Type": CONTENT_TYPE}
            )
            assert await error_of(response, 503) == "request_timeout"
            body = json.loads(await (await client.get("/health")).text())
            assert body["ok"] is True

        serve(node, test)
