"""The portal's web application: one aiohttp app around one `EmrClient` of the member.

Every page is rendered here from what the client returns; every action is a POST form the
client turns into a signed transaction or an audited read. Decrypted records live in memory
for the length of one answer: nothing is written to disk but what the browser downloads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import time
import zipfile
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from emrchain.client.envelope import DEFAULT_MAX_PLAINTEXT_BYTES, EnvelopeError
from emrchain.client.export import collect_export
from emrchain.client.fhir_content import fhir_resource_of
from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import EmrClientError, NotFound, RequestFailedError
from emrchain.client.rpc import EmrClient, TlsOptions
from emrchain.portal import pages
from emrchain.portal.pages import error_box, field, form, h, notice_box, select, short, table, utc
from emrchain.portal.security import LocalGuard
from emrchain.schema import AccessAction, RecordType, ReviewOutcome

HOST = "127.0.0.1"
"""The only address the portal binds: it serves the member's own browser, nobody else."""
MAX_FORM_BYTES = DEFAULT_MAX_PLAINTEXT_BYTES + (1 << 20)
"""The largest form the portal reads: a record file of the client's largest plaintext, and
the form's other fields."""
MAX_GRANT_HOURS = 24 * 365
MAX_BREAK_GLASS_MINUTES = 24 * 60
MAX_STORED_SHOWN = 100
"""Records stored through this portal that "Shared with me" lists (the latest)."""
TRAIL_PAGE = 200
"""Access events shown per trail page (newest first)."""
CLIENT_KEY: web.AppKey[Portal] = web.AppKey("portal")

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Portal:
    """One member's portal: its identity, its client, what the node says of its account."""

    identity: MemberIdentity
    node_url: str
    tls: TlsOptions = dataclasses.field(default_factory=TlsOptions)
    """How to check an https:// node (as the client commands' --ca-file and client certificate)."""
    guard: LocalGuard = dataclasses.field(default_factory=LocalGuard)
    trail_page_size: int = TRAIL_PAGE
    client: EmrClient | None = None
    role: str = ""
    organization_id: str = ""
    member_id: str = ""
    patient_id: bytes = b""
    stored: deque[tuple[str, str, str]] = dataclasses.field(
        default_factory=lambda: deque(maxlen=MAX_STORED_SHOWN)
    )
    """(record id, patient id, type) of the latest records stored through this portal since
    start (in memory only)."""

    async def start_client(self) -> None:
        self.client = EmrClient(self.node_url, self.identity, tls=self.tls)
        try:
            member = (await self.client.account()).get("member") or {}
        except BaseException:
            await self.client.close()  # the app's cleanup does not run when startup fails
            raise
        self.role = str(member.get("role") or "")
        self.organization_id = str(member.get("organization_id") or "")
        self.member_id = str(member.get("member_id") or "")
        patient_hex = member.get("patient_id")
        if self.role == "patient" and isinstance(patient_hex, str):
            self.patient_id = bytes.fromhex(patient_hex)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    @property
    def emr(self) -> EmrClient:
        assert self.client is not None, "the portal's client starts with the app"
        return self.client

    # ------------------------------------------------------------------ rendering

    def who(self) -> str:
        key = self.identity.member_key.hex()
        return f"{self.role or 'not a member'} of {self.organization_id or '?'} · key {key[:12]}…"

    def csrf(self, request: web.Request) -> str:
        session = self.guard.session_of(request)
        return self.guard.csrf_token(session or "")

    def page(self, title: str, body: str, *, status: int = 200, message: str = "") -> web.Response:
        text = pages.layout(title, body, role=self.role, who=self.who(), message=message)
        return web.Response(status=status, text=text, content_type="text/html", charset="utf-8")

    def failed(self, title: str, error: Exception, *, status: int = 502) -> web.Response:
        return self.page(title, "", status=status, message=error_box(explain(error)))

    def refused_role(self, what: str) -> web.Response:
        return self.page(what, "", status=403, message=error_box(
            f"{what} is not for a {self.role or 'non-member'} account."
        ))  # fmt: skip

    def need(self, *roles: str) -> bool:
        return self.role in roles


def explain(error: Exception) -> str:
    """A clear sentence for what the client raised."""
    if isinstance(error, NotFound):
        return (
            "Refused: the node did not let you read this "
            f"(HTTP {error.status} {error.code}). You hold no grant in force for it — it may"
            " have been revoked or have expired — or it does not exist."
        )
    if isinstance(error, RequestFailedError):
        return f"Refused by the node: HTTP {error.status} {error.code}: {error}"
    return f"The request failed: {error}"


def hex_bytes(text: object, size: int, what: str) -> bytes:
    value = str(text or "").strip().lower()
    try:
        decoded = bytes.fromhex(value)
    except ValueError:
        decoded = b""
    if len(decoded) != size:
        raise ValueError(f"{what} must be {size * 2} hexadecimal characters")
    return decoded


def bounded_int(text: object, minimum: int, maximum: int, what: str) -> int:
    try:
        value = int(str(text or "").strip())
    except ValueError:
        raise ValueError(f"{what} must be a whole number") from None
    if not minimum <= value <= maximum:
        raise ValueError(f"{what} must be {minimum}..{maximum}")
    return value


# ---------------------------------------------------------------------- pages


def portal_of(request: web.Request) -> Portal:
    return request.app[CLIENT_KEY]


async def home(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    patient = f"<dt>Patient id</dt><dd><code class=id>{h(portal.patient_id.hex())}</code></dd>"
    body = (
        "<dl>"
        "<dt>Member key</dt><dd><code class=id id=member-key>"
        f"{h(portal.identity.member_key.hex())}</code></dd>"
        f"<dt>Member id</dt><dd><code class=id>{h(portal.member_id)}</code></dd>"
        f"<dt>Role</dt><dd>{h(portal.role or 'not a member')}</dd>"
        f"<dt>Organisation</dt><dd>{h(portal.organization_id)}</dd>"
        f"{patient if portal.patient_id else ''}"
        f"<dt>Node</dt><dd><code>{h(portal.node_url)}</code></dd></dl>"
        "<p>Your key stays in this program on your machine: it signs and decrypts here, and"
        " the node receives only signed requests and ciphertext.</p>"
    )
    return portal.page("Your account", body)


def record_rows(portal: Portal, records: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for record in records:
        record_hex = str(record["record_id"])
        actions = (
            "erased"
            if record.get("erased")
            else f'<a href="/records/{h(record_hex)}">Open</a> · '
            f'<a href="/records/{h(record_hex)}/download">Download</a>'
            + (
                f' · <a href="/grants?record={h(record_hex)}">Grant</a>'
                if portal.need("patient")
                else ""
            )
        )
        rows.append([
            f'<code class="id record-id">{h(record_hex)}</code>',
            h(record.get("record_type", "")),
            h(record.get("author_organization", "")),
            h(utc(record.get("anchored_time_ms"))),
            actions,
        ])  # fmt: skip
    return rows


RECORD_HEADERS = ("Record", "Type", "Organisation", "Stored", "Actions")


async def my_records(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("patient"):
        return portal.refused_role("My records")
    try:
        records = [r async for r in portal.emr.all_patient_records(portal.patient_id)]
    except EmrClientError as error:
        return portal.failed("My records", error)
    note = "<p>Opening or downloading a record is a read: it appears in your timeline.</p>"
    return portal.page(
        "My records", note + table("Your records", RECORD_HEADERS, record_rows(portal, records))
    )


async def read_record(portal: Portal, record_hex: str) -> tuple[bytes, str]:
    record_id = hex_bytes(record_hex, 32, "the record id")
    read = await portal.emr.get_record(record_id)
    return read.plaintext, read.status


def shown_plaintext(plaintext: bytes) -> str:
    resource = fhir_resource_of(plaintext)
    if resource is not None:
        return json.dumps(resource, indent=2, ensure_ascii=False)
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(plaintext)} bytes of binary content: download it to open it)"


async def open_record(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    record_hex = request.match_info["record_id"]
    try:
        plaintext, status = await read_record(portal, record_hex)
    except (EmrClientError, EnvelopeError, ValueError) as error:
        return portal.failed("Record", error, status=_status_of(error))
    body = (
        f"<p>Record <code class=id>{h(record_hex)}</code> ({h(status)}), decrypted on this"
        f' machine. <a href="/records/{h(record_hex)}/download">Download</a></p>'
        f'<pre class="plaintext" id="plaintext">{h(shown_plaintext(plaintext))}</pre>'
    )
    if portal.need("patient"):
        body += await record_trail(portal, record_hex)
    return portal.page("Record", body)


async def record_trail(portal: Portal, record_hex: str) -> str:
    """Who read this record and when (the patient's view of one record's trail)."""
    try:
        page = await portal.emr.access_events(
            record_id=bytes.fromhex(record_hex), limit=portal.trail_page_size
        )
    except EmrClientError as error:
        return error_box(explain(error))
    rows = event_rows(portal, page["events"], await granted_members(portal))
    return "<h2>Who read this record</h2>" + table("Reads, newest first", EVENT_HEADERS, rows)


async def granted_members(portal: Portal) -> frozenset[str]:
    consents = [c async for c in portal.emr.all_patient_consents(portal.patient_id)]
    return frozenset(str(c["grantee"]) for c in consents if c.get("grantee_kind") == "member")


async def download_record(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    record_hex = request.match_info["record_id"]
    try:
        plaintext, _ = await read_record(portal, record_hex)
    except (EmrClientError, EnvelopeError, ValueError) as error:
        return portal.failed("Download", error, status=_status_of(error))
    suffix = "json" if fhir_resource_of(plaintext) is not None else "bin"
    return web.Response(
        body=plaintext,
        content_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="record-{record_hex[:16]}.{suffix}"'
        },
    )


def _status_of(error: Exception) -> int:
    if isinstance(error, ValueError):
        return 400
    if isinstance(error, RequestFailedError):
        return 403 if error.status in (403, 404) else 502
    return 502


def event_rows(
    portal: Portal, events: list[dict[str, Any]], grantees: frozenset[str] = frozenset()
) -> list[list[str]]:
    """`grantees`: member ids the patient granted at some time, named as such."""
    rows = []
    for event in events:
        actor = str(event.get("actor", ""))
        who = "you" if actor == portal.member_id else short(actor)
        if actor in grantees:
            who += " (a member you granted)"
        flagged = (
            '<span class="flag">flagged for review</span>'
            if event.get("flagged_for_review")
            else ""
        )
        reason = h(event.get("reason") or "")
        rows.append([
            h(utc(event.get("time_ms"))),
            f'<span class="event" title="event {h(event.get("event_id", ""))}">'
            f"{h(event_what(event))}</span>",
            f"{who} <span class=muted>{h(event.get('actor_organization', ''))}</span>",
            h(event.get("basis", "")),
            short(event.get("record_id")),
            " ".join(part for part in (reason, flagged) if part),
        ])  # fmt: skip
    return rows


def event_what(event: dict[str, Any]) -> str:
    kind = str(event.get("kind", ""))
    action = event.get("action")
    if kind == "access" and isinstance(action, int) and action in set(AccessAction):
        return AccessAction(action).name.lower()
    return kind.replace("_", " ")


EVENT_HEADERS = ("When", "What", "Who", "Basis", "Record", "Reason / review")


async def timeline(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("patient"):
        return portal.refused_role("Timeline")
    try:
        page = await portal.emr.access_events(
            patient_id=portal.patient_id,
            limit=portal.trail_page_size,
            before=request.query.get("before"),
        )
        grantees = await granted_members(portal)
    except EmrClientError as error:
        return portal.failed("Who read my records", error, status=_status_of(error))
    body = (
        f"<p>Every read and break-glass of your records, newest first ({h(page.get('total'))}"
        " in total), from the chain's access trail.</p>"
        + table("Access trail", EVENT_HEADERS, event_rows(portal, page["events"], grantees))
        + older_link("/timeline", {}, page)
    )
    return portal.page("Who read my records", body)


def older_link(path: str, query: dict[str, str], page: dict[str, Any]) -> str:
    """A link to the page of older events, when there is one (the node's opaque cursor)."""
    cursor = page.get("next")
    if not isinstance(cursor, str):
        return ""
    target = path + "?" + urlencode({**query, "before": cursor})
    return f'<p><a href="{h(target)}">Older events</a></p>'


async def emergencies(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("patient"):
        return portal.refused_role("Break-glass events")
    try:
        events = [
            event
            async for event in portal.emr.all_access_events(patient_id=portal.patient_id)
            if event.get("kind") == "break_glass" or event.get("basis") == "break_glass"
        ]
        declarations = [event for event in events if event.get("kind") == "break_glass"]
        reviews = await reviews_of(portal, declarations[:REVIEWS_SHOWN_MAX])
    except EmrClientError as error:
        return portal.failed("Break-glass events", error)
    body = (
        "<p>Emergency access to your records (break-glass), with the reason the clinician gave."
        " Each declaration opens a review by the consortium's auditors; below the events, how"
        f" they judged each (the newest {REVIEWS_SHOWN_MAX} declarations).</p>"
        + table("Break-glass", EVENT_HEADERS, event_rows(portal, events))
        + table("Auditors' reviews of these declarations", REVIEW_HEADERS, reviews)
    )
    return portal.page("Break-glass events", body)


REVIEWS_SHOWN_MAX = 50
"""Declarations whose review the break-glass page asks the node for (one request each)."""
REVIEW_HEADERS = ("Declared", "Reason", "Review", "Outcome", "Auditor's note", "Closed")


async def reviews_of(portal: Portal, declarations: list[dict[str, Any]]) -> list[list[str]]:
    """A row per declaration: its review as the node tells the patient it concerns (a review
    overwritten in the auditors' queue, or never opened, says so)."""
    rows = []
    for event in declarations:
        try:
            review = await portal.emr.review(bytes.fromhex(str(event["event_id"])))
        except NotFound:
            review = {"status": "no longer in the auditors' queue"}
        outcome = str(review.get("outcome") or "").replace("_", " ")
        rows.append([
            h(utc(event.get("time_ms"))),
            h(event.get("reason") or ""),
            h(review.get("status", "")),
            h(outcome or "not yet judged"),
            h(review.get("note") or ""),
            h(utc(review["closed_time_ms"])) if review.get("closed_time_ms") else "",
        ])  # fmt: skip
    return rows


def consent_rows(
    portal: Portal, request: web.Request, consents: list[dict[str, Any]]
) -> list[list[str]]:
    rows = []
    for consent in reversed(consents):  # newest first
        grant_hex = str(consent["grant_id"])
        action = (
            form(
                f"/grants/{grant_hex}/revoke",
                portal.csrf(request),
                "",
                "Revoke",
                css_class="inline",
            )
            if consent.get("status") == "active"
            else ""
        )
        scope = (
            "all my records"
            if consent.get("scope") == "patient"
            else short(consent.get("record_id"))
        )
        rows.append([
            short(consent.get("grantee"))
            + f" <span class=muted>{h(consent.get('grantee_kind'))}</span>",
            scope,
            h(utc(consent.get("granted_time_ms"))),
            h(utc(consent.get("expires_time_ms")) or "never"),
            f'<span class="consent-status">{h(consent.get("status"))}</span>',
            action,
        ])  # fmt: skip
    return rows


async def grants_page(
    request: web.Request, message: str = "", status: int = 200
) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("patient"):
        return portal.refused_role("Grants")
    try:
        consents = [c async for c in portal.emr.all_patient_consents(portal.patient_id)]
    except EmrClientError as error:
        return portal.failed("Grants", error)
    record = request.query.get("record", "")
    fields = (
        field("grantee", "Clinician's member key",
              hint="64 hexadecimal characters; the clinician's portal shows it.")
        + field("record", "Record id", value=record, required=False,
                hint="Leave empty to grant all your records.")
        + field("hours", "Expires after (hours)", kind="number", value="24",
                extra=f'min="1" max="{MAX_GRANT_HOURS}"')
    )  # fmt: skip
    body = (
        "<h2>Give access</h2><p>Granting one record reads it once here, to seal its key for"
        " the grantee: that read is in your timeline.</p>"
        "<fieldset><legend>New grant</legend>"
        + form("/grants", portal.csrf(request), fields, "Grant access")
        + "</fieldset><h2>Your grants</h2>"
        + table("Grants, newest first", ("Grantee", "Scope", "Granted", "Expires", "Status", ""),
                consent_rows(portal, request, consents))
    )  # fmt: skip
    return portal.page("Grants", body, message=message, status=status)


async def give_grant(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("patient"):
        return portal.refused_role("Grants")
    form_data = await request.post()
    try:
        grantee = hex_bytes(form_data.get("grantee"), 32, "the clinician's member key")
        hours = bounded_int(form_data.get("hours"), 1, MAX_GRANT_HOURS, "the expiry in hours")
        record_text = str(form_data.get("record") or "").strip()
        expires_at_ms = time.time_ns() // 1_000_000 + hours * 3_600_000
        if record_text:
            committed = await portal.emr.grant(
                record_id=hex_bytes(record_text, 32, "the record id"),
                grantee_member=grantee,
                expires_at_ms=expires_at_ms,
            )
        else:
            committed = await portal.emr.grant(
                patient_id=portal.patient_id, grantee_member=grantee, expires_at_ms=expires_at_ms
            )
    except (EmrClientError, EnvelopeError, ValueError) as error:
        return await grants_page(request, error_box(explain(error)), _status_of(error))
    done = notice_box(
        f"<p>Access granted (grant <code class=id>{h(committed.tx_id.hex())}</code>,"
        f" height {committed.height}).</p>"
    )
    return await grants_page(request, done)


async def revoke_grant(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("patient"):
        return portal.refused_role("Grants")
    try:
        grant_id = hex_bytes(request.match_info["grant_id"], 32, "the grant id")
        committed = await portal.emr.revoke(grant_id)
    except (EmrClientError, ValueError) as error:
        return await grants_page(request, error_box(explain(error)), _status_of(error))
    return await grants_page(
        request, notice_box(f"<p>Grant revoked at height {committed.height}.</p>")
    )


async def export_page(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("patient"):
        return portal.refused_role("Export")
    body = (
        "<p>Download everything: each record decrypted here and a FHIR R4 Bundle describing"
        " them, your grants and the access trail, as one zip file. Each record is read (an"
        " audited read, in your timeline); nothing is written to this machine's disk but the"
        " file your browser saves.</p>"
        + form("/export", portal.csrf(request), "", "Download my export")
    )
    return portal.page("Export", body)


async def export_download(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("patient"):
        return portal.refused_role("Export")
    try:
        contents = await collect_export(portal.emr, portal.patient_id)
    except EmrClientError as error:
        return portal.failed("Export", error)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, data in contents.files.items():
            zipped.writestr(name, data)
    return web.Response(
        body=archive.getvalue(),
        content_type="application/zip",
        headers={
            "Content-Disposition": "attachment; "
            f'filename="emrchain-export-{portal.patient_id.hex()[:16]}.zip"'
        },
    )


# ---------------------------------------------------------------------- clinicians


def shared_grant_rows(grants: list[dict[str, Any]]) -> list[list[str]]:
    """One row per grant in force naming this member (or its organisation): a record grant
    opens the record, a patient grant lists the patient's records."""
    rows = []
    for grant in grants:
        patient_hex = str(grant["patient_id"])
        record_hex = grant.get("record_id")
        if record_hex:
            what = f'<code class="id shared-record">{h(record_hex)}</code>'
            action = f'<a href="/records/{h(record_hex)}">Open</a>'
        else:
            what = "every record of the patient"
            action = f'<a href="/shared?patient={h(patient_hex)}">List records</a>'
        rows.append([
            what,
            short(patient_hex),
            "your organisation" if grant.get("grantee_kind") == "organization" else "you",
            h(utc(grant.get("expires_time_ms")) or "no expiry"),
            action,
        ])  # fmt: skip
    return rows


SHARED_HEADERS = ("Shared", "Patient", "With", "Expires", "")


async def shared(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("clinician", "admin", "auditor"):
        return portal.refused_role("Shared with me")
    patient_text = request.query.get("patient", "").strip()
    listing = ""
    message = ""
    try:
        grants = [grant async for grant in portal.emr.all_shared_with_me()]
        in_force = table("Shared with you now", SHARED_HEADERS, shared_grant_rows(grants))
    except EmrClientError as error:
        in_force = error_box(explain(error))
    if patient_text:
        try:
            patient_id = hex_bytes(patient_text, 32, "the patient id")
            records = [r async for r in portal.emr.all_patient_records(patient_id)]
            listing = table("The patient's records", RECORD_HEADERS, record_rows(portal, records))
        except (EmrClientError, ValueError) as error:
            message = error_box(explain(error))
    stored_rows = (
        [f'<code class="id">{h(record)}</code>', short(patient), h(kind),
         f'<a href="/records/{h(record)}">Open</a>']
        for record, patient, kind in portal.stored
    )  # fmt: skip
    stored = table(
        "Stored through this portal since it started",
        ("Record", "Patient", "Type", ""),
        stored_rows,
    )
    body = (
        "<p>A patient shares one record or all of them, with you or (for a clinician) your"
        " organisation. Opening a record is a read: it appears in the patient's trail.</p>"
        + in_force
        + '<fieldset><legend>Open a record</legend><form method="get" action="/open">'
        + field("record", "Record id")
        + '<button type="submit">Open record</button></form></fieldset>'
        '<fieldset><legend>A patient\'s records</legend><form method="get" action="/shared">'
        + field("patient", "Patient id", value=patient_text)
        + '<button type="submit">List records</button></form></fieldset>'
        + listing
        + stored
    )
    return portal.page("Shared with me", body, message=message)


async def open_by_id(request: web.Request) -> web.StreamResponse:
    record_text = request.query.get("record", "").strip().lower()
    if len(record_text) != 64 or any(c not in "0123456789abcdef" for c in record_text):
        portal = portal_of(request)
        return portal.page(
            "Record",
            "",
            status=400,
            message=error_box("The record id must be 64 hexadecimal characters."),
        )
    return web.Response(status=303, headers={"Location": f"/records/{record_text}"})


RECORD_TYPE_OPTIONS = tuple((kind.name, kind.name.replace("_", " ").lower()) for kind in RecordType)


async def new_record_page(
    request: web.Request, message: str = "", status: int = 200
) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("clinician", "admin"):
        return portal.refused_role("Store a record")
    fields = (
        field("patient", "Patient id", hint="64 hexadecimal characters.")
        + select("record_type", "Record type", RECORD_TYPE_OPTIONS, "CLINICAL_NOTE")
        + pages.textarea("content", "Content", required=False)
        + field("file", "Or a file", kind="file", required=False,
                hint="A file is stored as it is; without one, the text above is stored.")
    )  # fmt: skip
    body = (
        "<p>The record is sealed here, for the patient and the custodians, before anything"
        " leaves this machine.</p><fieldset><legend>New record</legend>"
        + form("/records", portal.csrf(request), fields, "Store record", multipart=True)
        + "</fieldset>"
    )
    return portal.page("Store a record", body, message=message, status=status)


def submitted_content(form_data: Any) -> bytes:
    """The uploaded file's bytes, else the typed text (UTF-8); neither is refused."""
    upload = form_data.get("file")
    if isinstance(upload, web.FileField):
        content = upload.file.read()
        if content:
            return bytes(content)
    content = str(form_data.get("content") or "").encode("utf-8")
    if not content:
        raise ValueError("the record is empty: type its content or choose a file")
    return content


async def store_record(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("clinician", "admin"):
        return portal.refused_role("Store a record")
    form_data = await request.post()
    try:
        patient_id = hex_bytes(form_data.get("patient"), 32, "the patient id")
        record_type = RecordType[str(form_data.get("record_type") or "")]
        content = submitted_content(form_data)
        stored = await portal.emr.put_record(content, patient_id, record_type)
    except KeyError:
        return await new_record_page(request, error_box("Unknown record type."), 400)
    except (EmrClientError, EnvelopeError, ValueError) as error:
        return await new_record_page(request, error_box(explain(error)), _status_of(error))
    record_hex = stored.record_id.hex()
    portal.stored.append((record_hex, patient_id.hex(), record_type.name))
    done = notice_box(
        f'<p>Stored record <code class=id id="stored-record-id">{h(record_hex)}</code> at'
        f" height {stored.height}, kept by {h(', '.join(stored.custodians))}.</p>"
    )
    return await new_record_page(request, done)


async def break_glass_page(
    request: web.Request, message: str = "", status: int = 200
) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("clinician"):
        return portal.refused_role("Break the glass")
    fields = (
        field("patient", "Patient id")
        + field("record", "Record id", required=False,
                hint="Leave empty for all the patient's records.")
        + field("reason", "Reason", extra='minlength="1" maxlength="256"',
                hint="Mandatory; recorded on the chain and reviewed by the auditors.")
        + field("minutes", "Duration (minutes)", kind="number", value="60",
                extra=f'min="1" max="{MAX_BREAK_GLASS_MINUTES}"')
    )  # fmt: skip
    body = (
        "<p>Emergency access without the patient's grant. The declaration and every read under"
        " it are flagged in the patient's trail and open a review by the auditors.</p>"
        "<fieldset><legend>Declare an emergency</legend>"
        + form("/break-glass", portal.csrf(request), fields, "Break the glass")
        + "</fieldset>"
    )
    return portal.page("Break the glass", body, message=message, status=status)


async def declare_break_glass(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("clinician"):
        return portal.refused_role("Break the glass")
    form_data = await request.post()
    try:
        patient_id = hex_bytes(form_data.get("patient"), 32, "the patient id")
        record_text = str(form_data.get("record") or "").strip()
        record_id = hex_bytes(record_text, 32, "the record id") if record_text else None
        reason = str(form_data.get("reason") or "").strip()
        if not reason:
            raise ValueError("a reason is mandatory")
        minutes = bounded_int(form_data.get("minutes"), 1, MAX_BREAK_GLASS_MINUTES, "the duration")
        committed = await portal.emr.break_glass(patient_id, reason, minutes * 60_000, record_id)
    except (EmrClientError, ValueError) as error:
        return await break_glass_page(request, error_box(explain(error)), _status_of(error))
    done = notice_box(
        "<p>Break-glass declared (review <code class=id id=review-id>"
        f"{h(committed.tx_id.hex())}</code>,"
        f" height {committed.height}) for {minutes} minutes. Open the record from"
        ' <a href="/shared">Shared with me</a>.</p>'
    )
    return await break_glass_page(request, done)


# ---------------------------------------------------------------------- auditors


async def reviews_page(
    request: web.Request, message: str = "", status: int = 200
) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("auditor"):
        return portal.refused_role("Open reviews")
    try:
        reply = await portal.emr.reviews(status="open", limit=1000)
    except EmrClientError as error:
        return portal.failed("Open reviews", error)
    outcomes = tuple((o.name, o.name.replace("_", " ").lower()) for o in ReviewOutcome)
    rows = []
    for review in reply["reviews"]:
        review_hex = str(review["review_id"])
        close_fields = select(f"outcome-{review_hex[:8]}", "Outcome", outcomes).replace(
            f'name="outcome-{review_hex[:8]}"', 'name="outcome"'
        ) + field(f"note-{review_hex[:8]}", "Note", required=False).replace(
            f'name="note-{review_hex[:8]}"', 'name="note"'
        )
        rows.append([
            f'<code class="id review-id">{h(review_hex)}</code>',
            h(review.get("kind")),
            short(review.get("patient_id")),
            short(review.get("actor"))
            + f" <span class=muted>{h(review.get('actor_organization'))}</span>",
            h(review.get("reason")),
            h(utc(review.get("opened_time_ms"))),
            form(f"/reviews/{review_hex}/close", portal.csrf(request), close_fields,
                 "Close review"),
        ])  # fmt: skip
    body = f"<p>{h(reply.get('open'))} open of {h(reply.get('total'))} ever queued.</p>" + table(
        "Open reviews", ("Review", "Kind", "Patient", "Actor", "Reason", "Opened", "Close"), rows
    )
    return portal.page("Open reviews", body, message=message, status=status)


async def close_review(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("auditor"):
        return portal.refused_role("Open reviews")
    form_data = await request.post()
    try:
        review_id = hex_bytes(request.match_info["review_id"], 32, "the review id")
        outcome = ReviewOutcome[str(form_data.get("outcome") or "")]
        committed = await portal.emr.close_review(
            review_id, outcome, str(form_data.get("note") or "")
        )
    except KeyError:
        return await reviews_page(request, error_box("Unknown outcome."), 400)
    except (EmrClientError, ValueError) as error:
        return await reviews_page(request, error_box(explain(error)), _status_of(error))
    return await reviews_page(
        request, notice_box(f"<p>Review closed at height {committed.height}.</p>")
    )


async def trail_page(request: web.Request) -> web.StreamResponse:
    portal = portal_of(request)
    if not portal.need("auditor", "admin"):
        return portal.refused_role("Access trails")
    patient_text = request.query.get("patient", "").strip()
    record_text = request.query.get("record", "").strip()
    before = request.query.get("before")
    listing, message = "", ""
    if patient_text or record_text:
        try:
            if record_text:
                record_id = hex_bytes(record_text, 32, "the record id")
                page = await portal.emr.access_events(
                    record_id=record_id, limit=portal.trail_page_size, before=before
                )
            else:
                patient_id = hex_bytes(patient_text, 32, "the patient id")
                page = await portal.emr.access_events(
                    patient_id=patient_id, limit=portal.trail_page_size, before=before
                )
            shown = {"patient": patient_text} if not record_text else {"record": record_text}
            listing = table(
                "Access trail, newest first", EVENT_HEADERS, event_rows(portal, page["events"])
            ) + older_link("/trail", shown, page)
        except (EmrClientError, ValueError) as error:
            message = error_box(explain(error))
    body = (
        '<fieldset><legend>Trail of</legend><form method="get" action="/trail">'
        + field("patient", "Patient id", value=patient_text, required=False)
        + field("record", "Record id", value=record_text, required=False)
        + '<button type="submit">Show trail</button></form></fieldset>'
        + listing
    )
    return portal.page("Access trails", body, message=message)


# ---------------------------------------------------------------------- the app


def build_app(portal: Portal) -> web.Application:
    app = web.Application(middlewares=[portal.guard.middleware], client_max_size=MAX_FORM_BYTES)
    app[CLIENT_KEY] = portal

    async def started(_: web.Application) -> None:
        await portal.start_client()

    async def stopped(_: web.Application) -> None:
        await portal.close()

    app.on_startup.append(started)
    app.on_cleanup.append(stopped)
    static = Path(str(files("emrchain.portal") / "static"))
    app.router.add_static("/static/", static, show_index=False, follow_symlinks=False)
    routes: list[tuple[str, str, Page]] = [
        ("GET", "/", home),
        ("GET", "/records", my_records),
        ("GET", "/records/new", new_record_page),
        ("POST", "/records", store_record),
        ("GET", "/records/{record_id:[0-9a-fA-F]{64}}", open_record),
        ("GET", "/records/{record_id:[0-9a-fA-F]{64}}/download", download_record),
        ("GET", "/open", open_by_id),
        ("GET", "/timeline", timeline),
        ("GET", "/emergencies", emergencies),
        ("GET", "/grants", grants_page),
        ("POST", "/grants", give_grant),
        ("POST", "/grants/{grant_id}/revoke", revoke_grant),
        ("GET", "/export", export_page),
        ("POST", "/export", export_download),
        ("GET", "/shared", shared),
        ("GET", "/break-glass", break_glass_page),
        ("POST", "/break-glass", declare_break_glass),
        ("GET", "/reviews", reviews_page),
        ("POST", "/reviews/{review_id}/close", close_review),
        ("GET", "/trail", trail_page),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


async def start_portal(portal: Portal, port: int = 0) -> web.AppRunner:
    """Serve `portal` on 127.0.0.1:`port` (0: a free port, then in `portal.guard.port`)."""
    runner = web.AppRunner(build_app(portal), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    server = site._server
    assert server is not None and isinstance(server, asyncio.Server)
    portal.guard.port = int(server.sockets[0].getsockname()[1])
    return runner
