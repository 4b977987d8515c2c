"""Debian's Chromium driven by Playwright, for the browser tests (portal, operator console).

`playwright install` cannot download a browser here, so the tests launch the system's
`/usr/bin/chromium` (installed by `scripts/setup --with-services`). The flags keep it off the
network: as root it needs `--no-sandbox`, and without the others it keeps calling Google's
services in the background.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.services.fixtures import require_service

CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless Chromium for one test, closed after it (skipped locally, failed under
    CI=true, when Chromium is not installed)."""
    require_service("chromium")
    executable = shutil.which("chromium")
    assert executable is not None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS)
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (own context: no cookies shared between tests), 1280×800."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield context.new_page()
    finally:
        context.close()
