"""The webhook sender (`emrchain/records/notifications.py`) on a real EMR chain (the state
tests' `World`), a real LevelDB vault for its cursor, and a real aiohttp receiver on a loopback
port: events in block order, signed; retries with backoff until a 2xx; a 4xx skipped for good;
a restart resumes from the cursor without loss or repetition; a first start does not replay the
chain's past; a missing secret is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from emrchain.client.webhooks import (
    HEADER_WEBHOOK_EVENT_ID,
    HEADER_WEBHOOK_SIGNATURE,
    HEADER_WEBHOOK_TIMESTAMP,
    verify_webhook,
)
from emrchain.config.node import NodeConfig, NotificationsSection
from emrchain.records.notifications import (
    NotificationSetupError,
    NotificationWorker,
    open_notifier,
)
from emrchain.schema import ReviewOutcome, TxKind
from emrchain.state.result import TxResult
from emrchain.storage.vault import LevelDbKeyVault
from tests.state.emr.world import A_AUDITOR, B_CLINICIAN, PATIENT_ID, World, break_glass_fields

SECRET = b"s" * 32
WAIT_S = 30.0


class Receiver:
    """Answers each POST with the next status of `script` (then 204), keeps the valid ones."""

    def __init__(self, script: Sequence[int] = ()) -> None:
        self.script = list(script)
        self.events: list[dict[str, Any]] = []
        self.attempts = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        assert verify_webhook(
            SECRET,
            body,
            request.headers[HEADER_WEBHOOK_TIMESTAMP],
            request.headers[HEADER_WEBHOOK_SIGNATURE],
        )
        status = self.script.pop(0) if self.script else 204
        if status < 300:
            event = json.loads(body)
            assert event["event_id"] == request.headers[HEADER_WEBHOOK_EVENT_ID]
            self.events.append(event)
        return web.Response(status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def config(home: Path, url: str) -> NodeConfig:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "notifications.secret").write_bytes(SECRET)
    section = NotificationsSection(webhook_urls=(url,), retry_initial_ms=10, retry_max_ms=40)
    return NodeConfig(home=home, notifications=section)


def worker(world: World, home: Path, url: str, vault: LevelDbKeyVault) -> NotificationWorker:
    def block_at(height: int) -> tuple[Sequence[bytes], Sequence[TxResult]] | None:
        built = world.chain.built[height - 1]
        assert built.block.header.height == height
        return built.block.txs, built.result.tx_results

    found = open_notifier(
        config(home, url), vault, lambda: world.state, block_at, lambda: world.chain.height
    )
    assert found is not None
    return found


async def until(predicate: Any, what: str) -> None:
    for _ in range(int(WAIT_S / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def close_fields(review_id: bytes) -> dict[str, Any]:
    return {"review_id": review_id, "outcome": ReviewOutcome.UNJUSTIFIED, "note": "no emergency"}


def test_events_in_order_retried_until_delivered_and_a_refusal_skipped(tmp_path: Path) -> None:
    world = World()
    vault = LevelDbKeyVault(tmp_path / "vault")

    async def scenario() -> None:
        receiver = Receiver(script=[503, 503, 204, 400])  # first: 2 retries; second: refused
        await receiver.start()
        sender = worker(world, tmp_path, receiver.url, vault)
        task = asyncio.create_task(sender.run())
        await until(
            lambda: vault.notification_cursor(sender.destinations[0].name) is not None, "start"
        )
        first = world.send_ok(B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields())
        second = world.send_ok(
            B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields(reason="second emergency")
        )
        world.send_ok(A_AUDITOR, TxKind.CLOSE_REVIEW, close_fields(first))
        sender.on_commit(world.chain.built[-1].block, [], [])
        await until(lambda: len(receiver.events) == 2, "two deliveries")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await receiver.stop()
        assert [(e["event"], e["review_id"]) for e in receiver.events] == [
            ("review_opened", first.hex()),
            ("review_closed", first.hex()),
        ]
        opened, closed = receiver.events
        assert opened["patient_id"] == PATIENT_ID.hex() and opened["outcome"] is None
        assert opened["reader"] == B_CLINICIAN.public_key.hex()
        assert (closed["outcome"], closed["note"]) == ("unjustified", "no emergency")
        assert closed["closed_by"] == A_AUDITOR.public_key.hex()
        # 2 retried answers + the refusal of the second opening; 5 attempts in all.
        assert (sender.counters.delivered, sender.counters.failed, receiver.attempts) == (2, 3, 5)
        assert vault.notification_cursor(sender.destinations[0].name) == world.chain.height
        del second

    try:
        asyncio.run(scenario())
    finally:
        vault.close()


def test_a_restart_resumes_from_the_cursor_and_a_first_start_skips_the_past(
    tmp_path: Path,
) -> None:
    world = World()
    past = world.send_ok(B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields())
    vault = LevelDbKeyVault(tmp_path / "vault")

    async def run_until(receiver: Receiver, count: int) -> NotificationWorker:
        sender = worker(world, tmp_path, receiver.url, vault)
        task = asyncio.create_task(sender.run())
        await until(
            lambda: vault.notification_cursor(sender.destinations[0].name) is not None, "start"
        )
        sender.on_commit(world.chain.built[-1].block, [], [])
        await until(lambda: len(receiver.events) >= count, f"{count} deliveries")
        await asyncio.sleep(0.2)  # room for an event too many
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return sender

    async def scenario() -> None:
        receiver = Receiver()
        await receiver.start()
        # First start: the cursor begins at the chain's height; the past break-glass is not sent.
        sender = worker(world, tmp_path, receiver.url, vault)
        task = asyncio.create_task(sender.run())
        await until(
            lambda: vault.notification_cursor(sender.destinations[0].name) is not None, "start"
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # While the node is "down", two reviews open; the next start sends both, once.
        one = world.send_ok(B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields(reason="third one"))
        two = world.send_ok(
            B_CLINICIAN, TxKind.BREAK_GLASS, break_glass_fields(reason="fourth one")
        )
        await run_until(receiver, 2)
        world.send_ok(A_AUDITOR, TxKind.CLOSE_REVIEW, close_fields(one))
        await run_until(receiver, 3)
        await receiver.stop()
        assert [(e["event"], e["review_id"]) for e in receiver.events] == [
            ("review_opened", one.hex()),
            ("review_opened", two.hex()),
            ("review_closed", one.hex()),
        ]
        assert past.hex() not in {e["review_id"] for e in receiver.events}

    try:
        asyncio.run(scenario())
    finally:
        vault.close()


def test_webhooks_without_a_usable_secret_are_refused(tmp_path: Path) -> None:
    section = NotificationsSection(webhook_urls=("http://127.0.0.1:9/hook",))
    node_config = NodeConfig(home=tmp_path, notifications=section)
    with pytest.raises(NotificationSetupError, match="secret_file"):
        open_notifier(node_config, None, lambda: None, lambda _h: None, lambda: 0)  # type: ignore[arg-type,return-value]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "notifications.secret").write_bytes(b"short")
    with pytest.raises(NotificationSetupError, match="at least 16"):
        open_notifier(node_config, None, lambda: None, lambda _h: None, lambda: 0)  # type: ignore[arg-type,return-value]
    assert (
        open_notifier(NodeConfig(home=tmp_path), None, lambda: None, lambda _h: None, lambda: 0)
        is None
    )  # type: ignore[arg-type,return-value]
