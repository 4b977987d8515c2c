"""The browser the portal and console tests drive starts and renders a page it is given."""

from __future__ import annotations

from playwright.sync_api import Page


def test_chromium_renders_a_page_and_runs_its_script(page: Page) -> None:
    page.set_content(
        "<label for=n>Name</label><input id=n>"
        "<p id=out></p><script>document.getElementById('out').textContent = 6 * 7</script>"
    )
    assert page.get_by_label("Name").is_visible()
    assert page.locator("#out").text_content() == "42"
