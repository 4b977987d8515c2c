"""The console's dependency panel against a real Redis (the node's cache): reachable, then
"failing" while Redis is down, with the node still committing, then reachable again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from emrchain.devnet.harness import Devnet
from tests.services.fixtures import RedisServer, started_redis

pytestmark = pytest.mark.slow


@pytest.fixture
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from started_redis(tmp_path_factory)


def test_console_shows_redis_failing_while_it_is_down(
    redis: RedisServer, page: Page, tmp_path: Path
) -> None:
    devnet = Devnet(
        tmp_path / "net",
        1,
        settings={
            "records": {"cache_backend": "redis", "redis_url": f"unix://{redis.unix_socket}"},
            "instrumentation": {"dependency_timeout_ms": 500},
        },
    )
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        page.goto(devnet.instrumentation_url(0) + "/console")
        row = page.locator('#health-table tr[data-key="redis"]')
        expect(row.locator("td").first).to_have_text("ok")
        redis.kill()
        try:
            expect(row.locator("td").first).to_have_text("failing", timeout=20_000)
            expect(row).to_have_class("bad")
            height = page.locator('#consensus-table tr[data-key="height"] td')
            shown = height.inner_text()
            expect(height).not_to_have_text(shown, timeout=20_000)  # the node still commits
        finally:
            redis.start()
        expect(row.locator("td").first).to_have_text("ok", timeout=20_000)
    finally:
        devnet.stop_all()
