"""The RPC's budgets on their own, with a clock the test moves: rate limits, slot counts, the
replay cache's per-member share, the replay horizon across restarts, throttled logging, and
the signed-request headers (node binding, body hash, repeated headers)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import resource
from pathlib import Path

import pytest
from aiohttp import web
from multidict import CIMultiDict

from emrchain.api.signing import (
    HEADER_ACCESS_EVENT,
    HEADER_CONTENT_SHA256,
    HEADER_SIGNATURE,
    DuplicateHeaderError,
    parse_headers,
    request_digest,
    sign_request,
    verify_request,
)
from emrchain.client.identity import MemberIdentity
from emrchain.crypto.keys import Ed25519Signer
from emrchain.rpc.auth import ReplayCache, ReplayHorizon, ReplayLimits
from emrchain.rpc.connections import RESERVED_FILE_DESCRIPTORS, FileLimitError, ensure_file_limit
from emrchain.rpc.errors import RpcError
from emrchain.rpc.guard import RequestGuard, RoutePolicy, read_body
from emrchain.rpc.limits import Rate, RateLimiter, SlotCounter, client_address
from emrchain.throttled_log import ThrottledLog, ThrottleFilter

CHAIN = b"limits-chain"
NODE = bytes(range(32))
OTHER_NODE = bytes(range(1, 33))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def refusal(action: object) -> RpcError:
    with pytest.raises(RpcError) as refused:
        action()  # type: ignore[operator]
    return refused.value


def test_rate_limit_allows_the_burst_then_refuses_with_retry_after_until_refilled() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(per_second=10, burst=5), "from one client address", clock)
    for _ in range(5):
        limiter.take("a")
    refused = refusal(lambda: limiter.take("a"))
    assert (refused.status, refused.code) == (429, "rate_limited")
    assert refused.retry_after_s == pytest.approx(0.1)
    assert refused.response().headers["Retry-After"] == "1"
    limiter.take("b")  # another client has its own bucket
    clock.now += 0.1  # one token back
    limiter.take("a")
    refusal(lambda: limiter.take("a"))


def test_check_does_not_charge_so_unproven_requests_cost_nothing() -> None:
    limiter = RateLimiter(Rate(per_second=1, burst=1), "of one member", Clock())
    for _ in range(100):
        limiter.check("member")  # e.g. requests whose signature then fails
    limiter.take("member")
    refusal(lambda: limiter.check("member"))


def test_full_buckets_are_forgotten_so_the_table_stays_small() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(per_second=1_000, burst=10), "from one client address", clock)
    for index in range(5_000):
        limiter.take(f"client-{index}")
        clock.now += 0.01  # each bucket is full again 10 ms after its request
    assert len(limiter) < 2_100


def test_slots_per_client_and_in_total() -> None:
    slots = SlotCounter(total=3, per_client=2)
    slots.acquire("a")
    slots.acquire("a")
    assert slots.refusal("a") == (429, "at most 2 per client")
    assert slots.refusal("b") is None
    slots.acquire("b")
    assert slots.refusal("c") == (503, "all 3 are taken")
    slots.release("a")
    assert slots.refusal("c") is None and slots.held_by("a") == 1


@pytest.mark.parametrize(
    ("peer", "client"),
    [
        (("127.0.0.2", 4000), "127.0.0.2"),
        (("2001:db8:1:2:aaaa::1", 4000, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::7", 4000, 0, 0), "2001:db8:1:2::/64"),
        (("::ffff:10.1.2.3", 4000, 0, 0), "10.1.2.3"),
    ],
)
def test_a_client_is_an_address_and_an_ipv6_client_its_slash_64(peer: tuple, client: str) -> None:
    assert client_address(peer) == client


def test_one_member_fills_only_its_share_of_the_replay_cache() -> None:
    now = [10_000_000]
    cache = ReplayCache(ReplayLimits(1_000, 10, 4), lambda: now[0])
    flooder, other = b"f" * 32, b"o" * 32
    for index in range(4):
        cache.remember(flooder, bytes([index]) * 16)
    refused = refusal(lambda: cache.remember(flooder, b"x" * 16))
    assert (refused.status, refused.code) == (429, "rate_limited")
    assert refused.retry_after_s == pytest.approx(2.0)  # its oldest entry expires in 2 windows
    for index in range(4):
        cache.remember(other, bytes([index]) * 16)  # the others are not affected
    assert cache.seen(flooder, bytes([0]) * 16)
    now[0] += 2_001
    cache.remember(flooder, b"x" * 16)  # its entries expired
    assert not cache.seen(flooder, bytes([0]) * 16) and cache.held_by(flooder) == 1


def test_a_full_replay_cache_answers_busy() -> None:
    cache = ReplayCache(ReplayLimits(1_000, 3, 3), lambda: 5_000_000)
    for index in range(3):
        cache.remember(bytes([index]) * 32, b"n" * 16)
    refused = refusal(lambda: cache.remember(b"z" * 32, b"n" * 16))
    assert (refused.status, refused.code, refused.retry_after_s) == (503, "busy", 1.0)


def test_the_replay_horizon_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "horizon"
    first = ReplayHorizon(path)
    first.check(5_000)
    first.record(5_000)
    first.record(5_500)  # within the step: no write needed
    restarted = ReplayHorizon(path)
    assert restarted.floor_ms == 5_000 + ReplayHorizon.HORIZON_STEP_MS
    refused = refusal(lambda: restarted.check(5_500))
    # Signed anew after Retry-After (0.501 s: the header rounds it up to 1), it passes.
    assert (refused.status, refused.code, refused.retry_after_s) == (401, "stale_request", 0.501)
    restarted.check(6_001)


def test_throttled_log_writes_one_line_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = ThrottledLog(logging.getLogger("test.throttle"), 10.0, clock)
    with caplog.at_level(logging.WARNING, "test.throttle"):
        for _ in range(1_000):
            log.warning("bad request from %s", "x")
        clock.now += 10
        log.warning("bad request from %s", "y")
    assert [record.getMessage() for record in caplog.records] == [
        "bad request from x",
        "bad request from y (and 999 more like it since the last line)",
    ]


def test_throttle_filter_drops_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.throttle.filter")
    logger.addFilter(ThrottleFilter(ThrottledLog(logger, 60.0)))
    with caplog.at_level(logging.WARNING, "test.throttle.filter"):
        for _ in range(50):
            try:
                raise ValueError("Invalid method encountered")
            except ValueError:
                logger.exception("Error handling request from %s", "127.0.0.2")
    [record] = caplog.records
    assert record.getMessage() == (
        "Error handling request from 127.0.0.2: ValueError: Invalid method encountered"
    )
    assert record.exc_info is None and "Traceback" not in caplog.text


def test_a_signed_request_is_bound_to_its_node_its_path_and_its_body() -> None:
    identity = MemberIdentity.generate()
    body = b"ciphertext"
    path = "/records/ab/ciphertext?patient_id=%61%62"  # signed as sent, encoding untouched
    signed = sign_request(identity.signer, CHAIN, NODE, "PUT", path, body, 1_700_000_000_000)
    headers = parse_headers(CIMultiDict(signed.as_dict()))
    assert headers.body_sha256 == hashlib.sha256(body).digest()
    assert signed.as_dict()[HEADER_CONTENT_SHA256] == hashlib.sha256(body).hexdigest()
    assert verify_request(headers, CHAIN, NODE, "PUT", path)
    assert not verify_request(headers, CHAIN, OTHER_NODE, "PUT", path)
    assert not verify_request(headers, CHAIN, NODE, "PUT", "/records/ab/ciphertext?patient_id=ab")
    other_body = CIMultiDict(signed.as_dict())
    other_body[HEADER_CONTENT_SHA256] = hashlib.sha256(b"other").hexdigest()
    assert not verify_request(parse_headers(other_body), CHAIN, NODE, "PUT", path)


@pytest.mark.parametrize("name", [HEADER_SIGNATURE, HEADER_ACCESS_EVENT, "x-emrchain-KEY"])
def test_a_repeated_emrchain_header_is_refused(name: str) -> None:
    identity = MemberIdentity.generate()
    headers = CIMultiDict(sign_request(identity.signer, CHAIN, NODE, "GET", "/x", b"", 1).as_dict())
    headers.add(name, "00" * 64)
    if name == HEADER_ACCESS_EVENT:
        headers.add(name, "00")
    with pytest.raises(DuplicateHeaderError, match="appears more than once"):
        parse_headers(headers)


def test_the_connection_cap_must_fit_the_open_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit to exceed")
    with pytest.raises(FileLimitError, match=r"\[rpc\] max_connections"):
        ensure_file_limit(hard)
    assert ensure_file_limit(1) >= 1 + RESERVED_FILE_DESCRIPTORS


VECTORS = Path(__file__).parents[1] / "vectors" / "rpc_request.json"


def test_the_signed_request_vectors() -> None:
    """The digest built by hand from the spec's formula, the code's digest and headers, and
    the vector file agree (a client in another language checks itself against the file)."""
    document = json.loads(VECTORS.read_text())
    signer = Ed25519Signer(bytes.fromhex(document["signer_seed_hex"]))
    assert signer.public_key.hex() == document["signer_public_key_hex"]
    for case in document["cases"]:
        body = bytes.fromhex(case["body_hex"])
        nonce, node_id = bytes.fromhex(case["nonce_hex"]), bytes.fromhex(case["node_id_hex"])
        by_hand = hashlib.sha256(
            case["method"].encode()
            + b"\x00"
            + case["target"].encode()
            + b"\x00"
            + hashlib.sha256(body).digest()
            + case["timestamp_ms"].to_bytes(8, "big")
            + nonce
            + node_id
        ).digest()
        assert by_hand.hex() == case["request_digest_hex"]
        chain_id = case["chain_id"].encode()
        assert (
            request_digest(
                case["method"],
                case["target"],
                hashlib.sha256(body).digest(),
                case["timestamp_ms"],
                nonce,
                node_id,
            )
            == by_hand
        )
        message = bytes([4, len(chain_id)]) + chain_id + by_hand
        assert message.hex() == case["signed_message_hex"]
        headers = sign_request(
            signer,
            chain_id,
            node_id,
            case["method"],
            case["target"],
            body,
            case["timestamp_ms"],
            nonce,
        ).as_dict()
        assert headers == case["headers"]
        parsed = parse_headers(CIMultiDict(headers))
        assert verify_request(parsed, chain_id, node_id, case["method"], case["target"])


def test_a_client_that_goes_away_mid_body_is_a_client_fault_not_a_bug() -> None:
    """Through the guard, on a real socket: the body read ends in 400 `incomplete_body` (not
    an unhandled error, which would be logged as a bug with its traceback)."""
    outcomes: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        try:
            await read_body(request)
        except RpcError as error:
            outcomes.append(error.code)
            raise
        outcomes.append("read")
        return web.json_response({})

    async def scenario() -> None:
        guard = RequestGuard({}, RoutePolicy(False, 1_000_000), RateLimiter(Rate(100, 100), ""))
        app = web.Application(middlewares=[guard.middleware])
        app.add_routes([web.post("/upload", handler)])
        # As the node runs it (AppRunner: handlers are not cancelled when the client goes).
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /upload HTTP/1.1\r\nHost: node\r\nContent-Length: 1000\r\n\r\n")
            writer.write(b"only ten b")
            await writer.drain()
            writer.close()  # before the other 990 bytes
            for _ in range(500):
                if outcomes:
                    break
                await asyncio.sleep(0.01)
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    assert outcomes == ["incomplete_body"]
