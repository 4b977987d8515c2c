"""The console's HTML, written on the server from the view model (the first paint needs no
script; `static/console.js` then redraws the same tables and the chart from `/console/state`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from typing import Any

POLL_INTERVAL_MS = 3_000
"""How often the page's script asks for `/console/state`."""
CHART_WIDTH = 600
CHART_HEIGHT = 160
CHART_MARGIN = 28
"""Room on the left and below the bars for the axis labels (SVG user units)."""
ASSETS = {"console.css": "text/css", "console.js": "text/javascript"}


def asset(name: str) -> bytes:
    """One of the page's static files (KeyError for any other name)."""
    if name not in ASSETS:  # only the listed files are served
        raise KeyError(name)
    return resources.files("emrchain.console").joinpath("static", name).read_bytes()


def render_table(panel: Mapping[str, Any]) -> str:
    headers = "".join(f'<th scope="col">{escape(header)}</th>' for header in panel["headers"])
    return (
        f'<table id="{escape(panel["id"])}-table" data-empty="{escape(panel["empty"])}">'
        f"<caption>{escape(panel['caption'])}</caption>"
        f"<thead><tr>{headers}</tr></thead>"
        f"<tbody>{render_rows(panel)}</tbody></table>"
    )


def render_rows(panel: Mapping[str, Any]) -> str:
    if not panel["rows"]:
        span = len(panel["headers"])
        return f'<tr><td colspan="{span}">{escape(panel["empty"])}</td></tr>'
    return "".join(
        f'<tr data-key="{escape(row["key"])}" class="{escape(row["state"])}">'
        + "".join(
            (f'<th scope="row">{escape(cell)}</th>' if index == 0 else f"<td>{escape(cell)}</td>")
            for index, cell in enumerate(row["cells"])
        )
        + "</tr>"
        for row in panel["rows"]
    )


def render_chart(identifier: str, title: str, bars: Sequence[Mapping[str, Any]], field: str) -> str:
    """An SVG bar chart of `field` over the bars; `console.js` redraws it the same way."""
    values = [bar[field] or 0 for bar in bars]
    top = max(values, default=0) or 1
    plot_width = CHART_WIDTH - CHART_MARGIN
    plot_height = CHART_HEIGHT - CHART_MARGIN
    width = plot_width / max(len(values), 1)
    rectangles = "".join(
        f'<rect class="bar" x="{CHART_MARGIN + index * width + 1:.1f}" '
        f'y="{plot_height - value * plot_height / top:.1f}" width="{max(width - 2, 1):.1f}" '
        f'height="{value * plot_height / top:.1f}"></rect>'
        for index, value in enumerate(values)
    )
    first = escape(bars[0]["end"]) if bars else ""
    last = escape(bars[-1]["end"]) if bars else ""
    return (
        f'<figure><svg id="{identifier}" data-field="{field}" role="img" '
        f'aria-labelledby="{identifier}-title" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}">'
        f'<title id="{identifier}-title">{escape(title)} (figures in the table below)</title>'
        f'<line class="axis" x1="{CHART_MARGIN}" y1="{plot_height}" x2="{CHART_WIDTH}" '
        f'y2="{plot_height}"></line>'
        f'<text class="label top" x="0" y="12">{_number(top)}</text>'
        f'<text class="label" x="0" y="{plot_height}">0</text>'
        f'<text class="label first" x="{CHART_MARGIN}" y="{CHART_HEIGHT - 6}">{first}</text>'
        f'<text class="label last" x="{CHART_WIDTH}" y="{CHART_HEIGHT - 6}" '
        f'text-anchor="end">{last}</text>'
        f'<g class="bars">{rectangles}</g></svg>'
        f"<figcaption>{escape(title)}</figcaption></figure>"
    )


def _number(value: float) -> str:
    return f"{value:g}"


def render_page(state: Mapping[str, Any]) -> str:
    tables = {panel["id"]: panel for panel in state["tables"]}
    bars = state["chart"]["bars"]

    def panel(identifier: str, heading: str, extra: str = "") -> str:
        return (
            f'<section aria-labelledby="{identifier}-heading">'
            f'<h2 id="{identifier}-heading">{escape(heading)}</h2>'
            f"{extra}{render_table(tables[identifier])}</section>"
        )

    charts = render_chart(
        "throughput-chart", "Throughput (transactions per second)", bars, "txs_per_s"
    ) + render_chart(
        "interval-chart", "Mean block interval (milliseconds)", bars, "mean_interval_ms"
    )
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>emrchain operator console</title>"
        '<link rel="stylesheet" href="/console/console.css">'
        '<script src="/console/console.js" defer></script></head>'
        f'<body data-poll-ms="{POLL_INTERVAL_MS}">'
        '<a class="skip" href="#main">Skip to the figures</a>'
        "<header><h1>emrchain operator console</h1>"
        f"<p>Node <code>{escape(state['node'])}</code>, read-only. "
        f'<span id="updated" role="status">Figures as of {escape(state["generated"])} UTC.</span>'
        "</p></header>"
        '<main id="main">'
        + panel("validators", "Validators")
        + panel("consensus", "Height and round")
        + panel(
            "throughput", "Block interval and throughput", f'<div class="charts">{charts}</div>'
        )
        + panel("alerts", "Alerts")
        + panel("peers", "Peers")
        + panel("resources", "Mempool and storage")
        + panel("health", "Dependencies")
        + "</main></body></html>"
    )
