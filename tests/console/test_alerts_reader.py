"""The console's Alertmanager reader never holds a console request longer than its deadline,
and says why it has no alerts to show (docs/console.md)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from emrchain.rpc.console import ALERTS_PATH, AlertsReader


def test_a_silent_alertmanager_costs_at_most_the_deadline() -> None:
    asyncio.run(_a_silent_alertmanager_costs_at_most_the_deadline())


async def _a_silent_alertmanager_costs_at_most_the_deadline() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # holds the connection open, says nothing

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = AlertsReader(f"http://127.0.0.1:{port}", timeout_s=0.3)
    try:
        started = time.monotonic()
        alerts, problem = await reader.firing()
        elapsed_s = time.monotonic() - started
    finally:
        await reader.close()
        server.close()
        for writer in accepted:
            writer.close()
    assert alerts is None and problem == "Alertmanager did not answer within 0.3 s."
    assert elapsed_s < 1.0
    assert accepted, "the reader did reach the server"


def test_replies_that_are_not_alerts_are_said_not_shown() -> None:
    asyncio.run(_replies_that_are_not_alerts_are_said_not_shown())


async def _replies_that_are_not_alerts_are_said_not_shown() -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.path_qs == ALERTS_PATH
        return web.json_response({"not": "a list"})

    app = web.Application()
    app.router.add_get("/api/v2/alerts", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reader = AlertsReader(f"http://127.0.0.1:{port}/", timeout_s=2)
    try:
        alerts, problem = await reader.firing()
    finally:
        await reader.close()
        await runner.cleanup()
    assert alerts is None
    assert problem.startswith("Alertmanager unreachable: AlertmanagerReplyError")


def test_without_a_url_alerts_are_not_configured() -> None:
    asyncio.run(_without_a_url_alerts_are_not_configured())


async def _without_a_url_alerts_are_not_configured() -> None:
    alerts, problem = await AlertsReader("", timeout_s=1).firing()
    assert alerts is None and "not configured" in problem
