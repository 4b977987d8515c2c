"""Issue #23 part 1 in a real browser: Debian's Chromium driven by Playwright against the
portals of a real 4-validator devnet (`conftest.py`).

- the patient story, clicked: a clinician stores a record for the patient; the patient sees
  it, grants a clinician of another hospital (with an expiry, by keyboard only); that
  clinician finds it under "Shared with me" and reads the plaintext; the read is in the
  patient's timeline; the patient revokes; the clinician's read is refused with a clear
  message and the record is gone from "Shared with me"; the pages are accessible (every
  field labelled, text contrast WCAG AA); screenshots for the README;
- break-glass with a reason, and the auditor sees the open review and closes it;
- other websites cannot drive a portal: a cross-site form, a POST without the CSRF token, a
  foreign Origin, a foreign Host (DNS rebinding), no session: all refused;
- no member private key and no record plaintext ever reached a node: every byte the nodes
  received went through a recording proxy, searched raw, in hex and in base64.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from emrchain.client.identity import PASSPHRASE_VARIABLE, save_identity
from emrchain.portal.app import TRAIL_PAGE
from tests.portal.conftest import Member, World, signed_in

pytestmark = pytest.mark.slow

SCREENSHOTS_VARIABLE = "EMRCHAIN_SCREENSHOTS"
"""Where the story saves its screenshots: `scripts/screenshots` names docs/screenshots/;
unset, the test's own temporary directory (a test run leaves the tree as it was)."""
STORY_MARKER = "PORTAL-STORY-PLAINTEXT-7f3a: potassium 4.1 mmol/L"
GLASS_MARKER = "PORTAL-GLASS-PLAINTEXT-c41e: allergy to penicillin"
SHARED_MARKER = "PORTAL-SHARED-PLAINTEXT-19bd: chest x-ray clear"
GLASS_REASON = "unconscious in the emergency department"
WCAG_AA_RATIO = 4.5
expect.set_options(timeout=60_000)  # a store or a read waits for a commit


def _store(
    page: Page, member: Member, patient_id: bytes, content: str, *, as_file: bool = False
) -> str:
    page.goto(member.base_url + "/")
    page.get_by_role("link", name="Store a record", exact=True).click()
    page.get_by_label("Patient id").fill(patient_id.hex())
    page.get_by_label("Record type").select_option("LAB_RESULT")
    if as_file:
        upload = FilePayload(name="result.txt", mimeType="text/plain", buffer=content.encode())
        page.get_by_label("Or a file").set_input_files(upload)
    else:
        page.get_by_label("Content").fill(content)
    page.get_by_role("button", name="Store record").click()
    stored = page.locator("#stored-record-id")
    expect(stored).to_be_visible()
    return str(stored.text_content()).strip()


def _open_shared(page: Page, member: Member, record_hex: str) -> None:
    page.goto(member.base_url + "/shared")
    page.get_by_label("Record id").fill(record_hex)
    page.get_by_label("Record id").press("Enter")
    page.wait_for_url(re.compile(f"/records/{record_hex}$"))


def _every_field_labelled(page: Page) -> int:
    fields = page.locator("input:not([type=hidden]), select, textarea")
    for index in range(fields.count()):
        identifier = fields.nth(index).get_attribute("id")
        assert identifier, "a form field without an id cannot have a label"
        assert page.locator(f'label[for="{identifier}"]').count() == 1, identifier
    return fields.count()


def _luminance(colour: str) -> float:
    red, green, blue = (int(part) / 255 for part in re.findall(r"[\d.]+", colour)[:3])

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.03928 else ((channel + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def _contrast(page: Page, selector: str, background_selector: str | None = None) -> float:
    colours: Any = page.eval_on_selector(
        selector,
        "(element, other) => [getComputedStyle(element).color,"
        " getComputedStyle(other ? document.querySelector(other) : element).backgroundColor]",
        background_selector,
    )
    text, background = (_luminance(colour) for colour in colours)
    lighter, darker = max(text, background), min(text, background)
    return (lighter + 0.05) / (darker + 0.05)


def test_the_patient_story_clicked_through(browser: Browser, world: World, tmp_path: Path) -> None:
    started = time.monotonic()
    screenshots = Path(os.environ.get(SCREENSHOTS_VARIABLE) or tmp_path)
    author = signed_in(browser, world.author)
    patient = signed_in(browser, world.patient)
    reader = signed_in(browser, world.reader)
    screenshots.mkdir(parents=True, exist_ok=True)

    # 1. The patient's organisation's clinician stores a lab result for the patient.
    record_hex = _store(author, world.author, world.patient_id, STORY_MARKER)

    # 2. The patient sees it among its records.
    patient.get_by_role("link", name="My records", exact=True).click()
    expect(patient.locator(".record-id", has_text=record_hex)).to_be_visible()
    patient.screenshot(path=str(screenshots / "portal-records.png"), full_page=True)
    with patient.expect_download() as download:
        patient.locator("tr", has_text=record_hex).get_by_role("link", name="Download").click()
    assert Path(download.value.path()).read_bytes() == STORY_MARKER.encode()
    assert download.value.suggested_filename == f"record-{record_hex[:16]}.bin"

    # Before any grant, the other hospital's clinician is refused.
    _open_shared(reader, world.reader, record_hex)
    expect(reader.get_by_role("alert")).to_contain_text("Refused")

    # 3. The patient grants that clinician this record for 2 hours, with the keyboard only.
    patient.locator("tr", has_text=record_hex).get_by_role("link", name="Grant", exact=True).click()
    assert _every_field_labelled(patient) == 3
    patient.keyboard.press("Tab")
    expect(patient.locator(":focus")).to_have_text("Skip to the content")
    patient.get_by_label("Clinician's member key").focus()
    patient.keyboard.type(world.reader.identity.member_key.hex())
    patient.keyboard.press("Tab")  # the record id, filled from the link
    assert patient.get_by_label("Record id").input_value() == record_hex
    patient.keyboard.press("Tab")
    patient.keyboard.press("Control+A")
    patient.keyboard.type("2")
    patient.keyboard.press("Enter")
    expect(patient.get_by_role("status")).to_contain_text("Access granted")
    grant_row = patient.locator("tbody tr").first
    expect(grant_row.locator(".consent-status")).to_have_text("active")
    expires = grant_row.locator("td").nth(3).text_content() or ""
    assert "UTC" in expires, f"the grant shows its expiry: {expires!r}"

    # 4. The clinician finds it under "Shared with me" (the node's grantee index) and reads
    # it: the plaintext, decrypted in its portal.
    reader.goto(world.reader.base_url + "/shared")
    shared_row = reader.locator("tr", has=reader.locator(".shared-record", has_text=record_hex))
    expect(shared_row).to_have_count(1)
    expect(shared_row).to_contain_text("UTC")  # the grant's expiry
    shared_row.get_by_role("link", name="Open").click()
    reader.wait_for_url(re.compile(f"/records/{record_hex}$"))
    expect(reader.locator("#plaintext")).to_have_text(STORY_MARKER)

    # 5. The read is in the patient's timeline: the reader, its hospital, basis grant.
    patient.get_by_role("link", name="Who read my records", exact=True).click()
    reader_row = patient.locator(
        "tbody tr", has=patient.locator(f'[title="{world.reader.portal.member_id}"]')
    )
    expect(reader_row.first).to_contain_text("grant")
    expect(reader_row.first).to_contain_text(world.reader.portal.organization_id)
    expect(reader_row.first).to_contain_text("a member you granted")
    patient.screenshot(path=str(screenshots / "portal-timeline.png"), full_page=True)

    # 6. The patient revokes; the clinician's next read is refused, clearly.
    patient.get_by_role("link", name="Grants", exact=True).click()
    patient.locator("tbody tr").first.get_by_role("button", name="Revoke").click()
    expect(patient.get_by_role("status")).to_contain_text("Grant revoked")
    expect(patient.locator("tbody tr").first.locator(".consent-status")).to_have_text("revoked")
    reader.reload()
    alert = reader.get_by_role("alert")
    expect(alert).to_contain_text("Refused")
    expect(alert).to_contain_text("no grant in force")
    assert reader.locator("#plaintext").count() == 0
    reader.goto(world.reader.base_url + "/shared")
    expect(reader.locator(".shared-record", has_text=record_hex)).to_have_count(0)

    # Accessibility: labelled fields on the forms, AA contrast of text, links, buttons, errors.
    for page, path in ((author, "/records/new"), (reader, "/break-glass"), (reader, "/shared")):
        page.goto(page.url.split("/", 3)[0] + "//" + page.url.split("/", 3)[2] + path)
        assert _every_field_labelled(page) >= 2
    patient.goto(world.patient.base_url + "/records")
    ratios = {
        "body text": _contrast(patient, "main p", "body"),
        "links": _contrast(patient, "main a", "body"),
        "header links": _contrast(patient, "header a", "header"),
    }
    patient.goto(world.patient.base_url + "/grants")
    ratios["buttons"] = _contrast(patient, "main button")
    ratios["hints"] = _contrast(patient, "p.muted", "body")
    reader.goto(world.reader.base_url + f"/records/{record_hex}")
    ratios["errors"] = _contrast(reader, ".error p", ".error")
    print("contrast ratios:", {name: round(ratio, 1) for name, ratio in ratios.items()})
    assert all(ratio >= WCAG_AA_RATIO for ratio in ratios.values()), ratios
    assert time.monotonic() - started < 120


def test_break_glass_opens_a_review_the_auditor_closes(browser: Browser, world: World) -> None:
    author = signed_in(browser, world.author)
    reader = signed_in(browser, world.reader)
    auditor = signed_in(browser, world.auditor)
    patient = signed_in(browser, world.patient)
    record_hex = _store(author, world.author, world.patient_id, GLASS_MARKER)

    reader.get_by_role("link", name="Break the glass", exact=True).click()
    reader.get_by_label("Patient id").fill(world.patient_id.hex())
    reader.get_by_label("Record id").fill(record_hex)
    reader.get_by_label("Reason").fill(GLASS_REASON)
    reader.get_by_label("Duration (minutes)").fill("30")
    reader.get_by_role("button", name="Break the glass").click()
    expect(reader.get_by_role("status")).to_contain_text("Break-glass declared")
    review_hex = str(reader.locator("#review-id").text_content()).strip()
    _open_shared(reader, world.reader, record_hex)
    expect(reader.locator("#plaintext")).to_have_text(GLASS_MARKER)

    patient.get_by_role("link", name="Break-glass events", exact=True).click()
    declared = patient.get_by_role("table", name="Break-glass", exact=True)
    expect(declared).to_contain_text(GLASS_REASON)
    expect(declared).to_contain_text("flagged for review")
    reviews = patient.get_by_role("table", name="Auditors' reviews of these declarations")
    expect(reviews.locator("tbody tr", has_text=GLASS_REASON)).to_contain_text("not yet judged")

    auditor.get_by_role("link", name="Open reviews", exact=True).click()
    row = auditor.locator("tbody tr", has_text=review_hex)
    expect(row).to_contain_text(GLASS_REASON)
    row.get_by_label("Outcome").select_option("JUSTIFIED")
    row.get_by_label("Note").fill("resuscitation, checked with the ward")
    row.get_by_role("button", name="Close review").click()
    expect(auditor.get_by_role("status")).to_contain_text("Review closed")
    expect(auditor.locator("tbody tr", has_text=review_hex)).to_have_count(0)

    # The patient is told how the auditors judged it.
    patient.get_by_role("link", name="Break-glass events", exact=True).click()
    reviews = patient.get_by_role("table", name="Auditors' reviews of these declarations")
    judged = reviews.locator("tbody tr", has_text=GLASS_REASON)
    expect(judged).to_contain_text("closed")
    expect(judged).to_contain_text("justified")
    expect(judged).not_to_contain_text("unjustified")
    expect(judged).to_contain_text("resuscitation, checked with the ward")


def _raw(member: Member, method: str, path: str, headers: dict[str, str], body: str = "") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", member.portal.guard.port, timeout=30)
    try:
        connection.request(method, path, body=body.encode(), headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_other_sites_and_foreign_hosts_cannot_drive_a_portal(
    browser: Browser, world: World
) -> None:
    member = world.patient
    page = signed_in(browser, member)
    cookie = next(c for c in page.context.cookies() if c["name"] == member.portal.guard.cookie_name)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    session = f"{cookie['name']}={cookie['value']}"
    host = f"127.0.0.1:{member.portal.guard.port}"
    grantee = world.reader.identity.member_key.hex()
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}

    # A page of another site posts a form to the portal: the browser sends no cookie.
    attacker = page.context.new_page()
    attacker.set_content(
        f'<form method="post" action="http://{host}/grants">'
        f'<input name="grantee" value="{grantee}"><input name="hours" value="1">'
        '<button type="submit">Win a prize</button></form>'
    )
    with attacker.expect_navigation():
        attacker.get_by_role("button", name="Win a prize").click()
    assert "No session" in attacker.content()

    # With the session cookie but without the CSRF token, or from a foreign origin: refused.
    body = f"grantee={grantee}&hours=1"
    assert (
        _raw(member, "POST", "/grants", {"Host": host, "Cookie": session, **form_type}, body) == 403
    )
    token = member.portal.guard.csrf_token(cookie["value"])
    forged_origin = {"Host": host, "Cookie": session, "Origin": "http://evil.example", **form_type}
    assert _raw(member, "POST", "/grants", forged_origin, body + f"&csrf_token={token}") == 403
    # A foreign Host (a DNS-rebound name), even with the cookie: refused.
    assert (
        _raw(
            member,
            "GET",
            "/records",
            {"Host": f"evil.example:{member.portal.guard.port}", "Cookie": session},
        )
        == 403
    )
    # No session: refused; a wrong start token: refused.
    assert _raw(member, "GET", "/records", {"Host": host}) == 401
    assert _raw(member, "GET", "/login?token=guess", {"Host": host}) == 403
    # Nothing was granted by any of those.
    page.get_by_role("link", name="Grants", exact=True).click()
    assert page.locator(".consent-status", has_text="active").count() == 0
    # The security headers are on every answer.
    response = page.goto(member.base_url + "/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert "access-control-allow-origin" not in response.headers


def test_the_portal_command_serves_its_start_url(world: World, tmp_path: Path) -> None:
    """`emrchain portal --key FILE --node URL`, a real process: it loads an encrypted key
    file, prints a start URL on 127.0.0.1 whose token opens a session, serves the member's
    account, listens on no other address; Ctrl-C (SIGINT) stops it."""
    key_file = tmp_path / "me.json"
    save_identity(key_file, world.auditor.identity, "correct horse")
    environment = {
        **os.environ,
        PASSPHRASE_VARIABLE: "correct horse",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    command = [sys.executable, "-m", "emrchain.cli", "portal", "--key", str(key_file)]
    process = subprocess.Popen(
        [*command, "--node", world.proxies[0].url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("portal of auditor of "), lines
        start_url = lines[1].removeprefix("open ").strip()
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/login\?token=([\w-]{40,})", start_url)
        assert match, start_url
        port = int(match.group(1))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", start_url.split(str(port), 1)[1])
        login = connection.getresponse()
        login.read()
        assert login.status == 303
        cookie = login.getheader("Set-Cookie") or ""
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        connection.request("GET", "/", headers={"Cookie": cookie.split(";", 1)[0]})
        home = connection.getresponse()
        assert home.status == 200
        assert world.auditor.identity.member_key.hex() in home.read().decode()
        connection.close()
        # Bound to 127.0.0.1 only, not to every address: another loopback address of this
        # host (Linux routes all of 127/8 to lo) finds nothing listening on the port.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    assert process.returncode == 130  # the front end's "interrupted"


def _event_ids(page: Page) -> set[str]:
    events = page.locator("tbody .event")
    return {str(events.nth(index).get_attribute("title")) for index in range(events.count())}


def test_a_grant_of_every_record_lists_them_to_the_clinician(
    browser: Browser, world: World
) -> None:
    """The patient shares all its records (no record id): the clinician lists them under
    "Shared with me"; a bad key in the form is refused clearly and grants nothing; the
    auditor finds the clinician's reads in the patient's trail; the patient revokes."""
    author = signed_in(browser, world.author)
    patient = signed_in(browser, world.patient)
    reader = signed_in(browser, world.reader)
    auditor = signed_in(browser, world.auditor)
    record_hex = _store(author, world.author, world.patient_id, SHARED_MARKER)
    patient.get_by_role("link", name="Grants", exact=True).click()
    active_before = patient.locator(".consent-status", has_text="active").count()

    patient.get_by_label("Clinician's member key").fill("not-a-key")
    patient.get_by_role("button", name="Grant access").click()
    expect(patient.get_by_role("alert")).to_contain_text("must be 64 hexadecimal characters")
    assert patient.locator(".consent-status", has_text="active").count() == active_before

    patient.get_by_label("Clinician's member key").fill(world.reader.identity.member_key.hex())
    patient.get_by_label("Expires after (hours)").fill("1")
    patient.get_by_role("button", name="Grant access").click()
    expect(patient.get_by_role("status")).to_contain_text("Access granted")
    expect(patient.locator("tbody tr").first).to_contain_text("all my records")

    # The patient grant is listed under "Shared with me"; its link lists the patient's records.
    reader.goto(world.reader.base_url + "/shared")
    patient_row = reader.locator(
        "tr", has=reader.locator(f'[title="{world.patient_id.hex()}"]'), has_text="every record"
    )
    patient_row.get_by_role("link", name="List records").click()
    reader.wait_for_url(re.compile(f"/shared\\?patient={world.patient_id.hex()}$"))
    listed = reader.locator("tr", has=reader.locator(".record-id", has_text=record_hex))
    listed.get_by_role("link", name="Open").click()
    expect(reader.locator("#plaintext")).to_have_text(SHARED_MARKER)
    for _ in range(2):  # two reads more: three in the trail at least, for the paging below
        reader.reload()
        expect(reader.locator("#plaintext")).to_have_text(SHARED_MARKER)

    auditor.get_by_role("link", name="Access trails", exact=True).click()
    auditor.get_by_label("Patient id").fill(world.patient_id.hex())
    auditor.get_by_role("button", name="Show trail").click()
    reads = auditor.locator(
        "tbody tr", has=auditor.locator(f'[title="{world.reader.portal.member_id}"]')
    )
    expect(reads.first).to_be_visible()
    assert reads.count() >= 3
    # Paged by the node's cursor: two events a page, "Older events" goes back.
    world.auditor.portal.trail_page_size = 2
    try:
        auditor.reload()
        expect(auditor.locator("tbody tr")).to_have_count(2)
        newest = _event_ids(auditor)
        auditor.get_by_role("link", name="Older events").click()
        expect(auditor.locator("tbody tr").first).to_be_visible()
        older = _event_ids(auditor)
        assert 1 <= len(older) <= 2 and not older & newest
    finally:
        world.auditor.portal.trail_page_size = TRAIL_PAGE

    patient.locator("tbody tr").first.get_by_role("button", name="Revoke").click()
    expect(patient.get_by_role("status")).to_contain_text("Grant revoked")
    reader.goto(world.reader.base_url + f"/shared?patient={world.patient_id.hex()}")
    expect(reader.get_by_role("alert")).to_contain_text("Refused")


def _forms_of(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


def test_no_member_key_or_plaintext_reaches_a_node(browser: Browser, world: World) -> None:
    """Last in the module: the recordings then hold the traffic of every test before it too
    (stores, grants, reads, break-glass, a review closed, revocations), and of this one's
    store, open and export."""
    marker = f"PORTAL-LEAK-PLAINTEXT-{time.monotonic_ns()}"
    author = signed_in(browser, world.author)
    patient = signed_in(browser, world.patient)
    record_hex = _store(author, world.author, world.patient_id, marker, as_file=True)
    patient.goto(world.patient.base_url + f"/records/{record_hex}")
    expect(patient.locator("#plaintext")).to_have_text(marker)
    with patient.expect_download() as download:
        patient.goto(world.patient.base_url + "/export")
        patient.get_by_role("button", name="Download my export").click()
    assert download.value.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(download.value.path()) as export:
        bundle = json.loads(export.read("bundle.json"))
        assert bundle["resourceType"] == "Bundle"
        assert export.read(f"records/{record_hex}.bin") == marker.encode()

    received = world.received_by_nodes()
    connections = sum(proxy.connections for proxy in world.proxies)
    print(f"the nodes received {len(received)} bytes over {connections} connections")
    assert len(received) > 10_000, "the proxies saw the portals' traffic"
    assert f"/records/{record_hex}".encode() in received, "the record's reads went through them"
    members = (world.patient, world.author, world.reader, world.auditor)
    for member in members:
        for secret in member.secrets:
            for form in _forms_of(secret):
                assert form not in received, "a member's private key reached a node"
    for text in (marker, STORY_MARKER, GLASS_MARKER, SHARED_MARKER):
        for form in _forms_of(text.encode()):
            assert form not in received, f"record plaintext reached a node: {text}"
