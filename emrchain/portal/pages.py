"""HTML for the portal: server-rendered pages, no script. Every value is escaped here."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from html import escape

from emrchain.portal.security import CSRF_FIELD

NAVIGATION = {
    "patient": (
        ("/records", "My records"),
        ("/timeline", "Who read my records"),
        ("/grants", "Grants"),
        ("/emergencies", "Break-glass events"),
        ("/export", "Export"),
    ),
    "clinician": (
        ("/shared", "Shared with me"),
        ("/records/new", "Store a record"),
        ("/break-glass", "Break the glass"),
    ),
    "auditor": (("/reviews", "Open reviews"), ("/trail", "Access trails")),
    "admin": (("/trail", "Access trails"),),
}


def h(value: object) -> str:
    return escape(str(value), quote=True)


def utc(time_ms: object) -> str:
    """A chain time (ms since the epoch) as UTC text; empty for none."""
    if not isinstance(time_ms, int) or time_ms <= 0:
        return ""
    moment = datetime.datetime.fromtimestamp(time_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def layout(title: str, body: str, *, role: str, who: str, message: str = "") -> str:
    links = "".join(
        f'<li><a href="{h(path)}">{h(text)}</a></li>' for path, text in NAVIGATION.get(role, ())
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)} — emrchain portal</title>"
        '<link rel="stylesheet" href="/static/portal.css"></head><body>'
        '<a class="skip" href="#main">Skip to the content</a>'
        f'<header><a href="/"><strong>emrchain portal</strong></a>'
        f' <span class="who">{h(who)}</span>'
        f'<nav aria-label="Main"><ul>{links}</ul></nav></header>'
        f'<main id="main"><h1>{h(title)}</h1>{message}{body}</main></body></html>'
    )


def error_box(text: str) -> str:
    return f'<div class="error" role="alert"><p>{h(text)}</p></div>'


def notice_box(body_html: str) -> str:
    return f'<div class="notice" role="status">{body_html}</div>'


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """`rows` hold HTML already escaped (cells may carry links and forms)."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f"<p>{h(caption)}: none.</p>"
    head = "".join(f'<th scope="col">{h(name)}</th>' for name in headers)
    return (
        f"<table><caption>{h(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def form(
    action: str, csrf: str, fields: str, button: str, *, css_class: str = "",
    multipart: bool = False,
) -> str:  # fmt: skip
    """A POST form carrying the session's CSRF token (`multipart`: it sends a file)."""
    klass = f' class="{h(css_class)}"' if css_class else ""
    encoding = ' enctype="multipart/form-data"' if multipart else ""
    return (
        f'<form method="post" action="{h(action)}"{klass}{encoding}>'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{h(csrf)}">{fields}'
        f'<button type="submit">{h(button)}</button></form>'
    )


def field(
    name: str, label: str, *, kind: str = "text", value: str = "", required: bool = True,
    extra: str = "", hint: str = "",
) -> str:  # fmt: skip
    hint_id = f"{name}-hint"
    described = f' aria-describedby="{hint_id}"' if hint else ""
    hint_html = f'<p class="muted" id="{hint_id}">{h(hint)}</p>' if hint else ""
    needed = " required" if required else ""
    return (
        f'<label for="{h(name)}">{h(label)}</label>'
        f'<input id="{h(name)}" name="{h(name)}" type="{h(kind)}" value="{h(value)}"'
        f"{needed}{described} {extra}>{hint_html}"
    )


def select(name: str, label: str, options: Sequence[tuple[str, str]], chosen: str = "") -> str:
    choices = "".join(
        f'<option value="{h(value)}"{" selected" if value == chosen else ""}>{h(text)}</option>'
        for value, text in options
    )
    return (
        f'<label for="{h(name)}">{h(label)}</label>'
        f'<select id="{h(name)}" name="{h(name)}">{choices}</select>'
    )


def textarea(name: str, label: str, *, required: bool = True) -> str:
    needed = " required" if required else ""
    return (
        f'<label for="{h(name)}">{h(label)}</label>'
        f'<textarea id="{h(name)}" name="{h(name)}"{needed}></textarea>'
    )


def short(hex_text: object) -> str:
    text = str(hex_text or "")
    return f'<code class="id" title="{h(text)}">{h(text[:16])}…</code>' if text else ""
