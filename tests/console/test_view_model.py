"""The operator console's view model: chart buckets, validators' signing states, Alertmanager's
reply, the page's HTML, and the colours' contrast (docs/console.md)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from emrchain.console import model, page
from emrchain.types import CommitCertificate, CommitSignature, Validator, ValidatorSet

KEYS = [bytes([index + 1]) * 32 for index in range(4)]
CSS = Path(model.__file__).parent / "static" / "console.css"


def certificate(height: int, signers: list[int]) -> CommitCertificate:
    return CommitCertificate(
        height, 0, bytes(32), tuple(CommitSignature(KEYS[i], bytes(64)) for i in signers)
    )


def test_buckets_end_at_the_newest_block_and_keep_empty_ones_within() -> None:
    samples = [
        model.BlockSample(1, 700_000, 5),  # older than the 30 bars: left out
        model.BlockSample(2, 705_000, 15),
        # almost 5 minutes without a block, then two
        model.BlockSample(3, 995_000, 0),
        model.BlockSample(4, 1_000_000, 40),
    ]
    bars = model.buckets(samples)
    assert len(bars) == model.CHART_BUCKETS
    assert {bar.width_ms for bar in bars} == {model.BUCKET_MS}
    assert bars[-1].end_ms == 1_000_000 and bars[0].end_ms == 710_000
    assert [bar.blocks for bar in bars] == [1] + [0] * 28 + [2]
    assert (bars[0].txs, bars[-1].txs, bars[-1].txs_per_s) == (15, 40, 4.0)
    # 2 follows 1 by 5 s; 3 follows 2 by 290 s and 4 follows 3 by 5 s.
    assert bars[0].mean_interval_ms == 5_000 and bars[-1].mean_interval_ms == 147_500
    assert bars[1].mean_interval_ms is None


def test_a_short_history_gets_narrower_bars() -> None:
    samples = [model.BlockSample(h, h * 250, 2) for h in range(1, 41)]  # 10 s, 4 blocks a second
    bars = model.buckets(samples)
    assert {bar.width_ms for bar in bars} == {model.MIN_BUCKET_MS}
    assert len(bars) == 10 and bars[-1].blocks == 4 and bars[-1].txs_per_s == 8.0
    assert model.bucket_width_ms(0) == model.MIN_BUCKET_MS
    assert model.bucket_width_ms(61_000) == 3_000
    assert model.bucket_width_ms(3_600_000) == model.BUCKET_MS


def test_buckets_cover_at_most_the_chart_span() -> None:
    samples = [model.BlockSample(h, h * 1_000, 1) for h in range(1, 1_001)]
    bars = model.buckets(samples)
    assert len(bars) == model.CHART_BUCKETS
    assert sum(bar.blocks for bar in bars) == model.CHART_BUCKETS * model.BUCKET_MS // 1_000
    assert model.buckets([]) == []


def test_the_ring_keeps_the_newest_blocks() -> None:
    ring = model.RecentBlocks(3)
    for height in range(1, 6):
        ring.record(height, height * 10, 0)
    assert [sample.height for sample in ring.samples()] == [3, 4, 5]


def test_signing_states_read_the_window_newest_first() -> None:
    window = [certificate(12, [0, 1, 2]), certificate(11, [0, 1, 3]), certificate(10, [0, 1, 2])]
    states = {i: model.signing(KEYS[i], window) for i in range(4)}
    assert states[0] == model.Signing(3, 3, True, 12)
    assert states[0].state == "signing"
    assert states[3].state == "missed" and states[3].last_signed_height == 11
    absent = model.signing(bytes([9]) * 32, window)
    assert absent.state == "down" and absent.signed == 0 and absent.last_signed_height is None
    assert model.signing(KEYS[0], []).state == "down"


def test_validators_table_says_the_state_in_words_and_marks_this_node() -> None:
    validators = ValidatorSet(Validator(key, 10) for key in KEYS)
    window = [certificate(5, [0, 1, 2]), certificate(4, [0, 1, 2])]
    panel = model.validators_table(validators, window, own_key=KEYS[1])
    rows = {row["key"]: row for row in panel["rows"]}
    assert rows[KEYS[3].hex()]["cells"][2:] == ["down", "0 of 2", "not in the window"]
    assert rows[KEYS[3].hex()]["state"] == "bad"
    assert rows[KEYS[1].hex()]["cells"][0].endswith("(this node)")
    assert rows[KEYS[0].hex()]["cells"][1:4] == ["10", "signing", "2 of 2"]
    assert "last 2 commit certificates" in panel["caption"]


def test_alerts_are_parsed_most_severe_first_and_bad_replies_refused() -> None:
    reply = [
        {"labels": {"alertname": "MempoolFull", "severity": "warning"}, "annotations": {}},
        {
            "labels": {"alertname": "NodeDown", "severity": "critical", "instance": "n3"},
            "annotations": {"summary": "node n3 is down"},
            "startsAt": "2026-12-04T19:00:00Z",
            "status": {"state": "active"},
        },
        {"labels": {"alertname": "Silenced"}, "status": {"state": "suppressed"}},
    ]
    alerts = model.parse_alerts(reply)
    assert [(alert.name, alert.severity) for alert in alerts] == [
        ("NodeDown", "critical"),
        ("MempoolFull", "warning"),
    ]
    panel = model.alerts_table(alerts, "")
    assert panel["rows"][0]["cells"] == [
        "critical",
        "NodeDown",
        "node n3 is down",
        "n3",
        "2026-12-04T19:00:00Z",
    ]
    assert panel["rows"][0]["state"] == "bad" and panel["caption"].endswith(": 2")
    bad_replies: list[object] = [{"alerts": []}, [{"annotations": {}}], ["x"]]
    for bad in bad_replies:
        with pytest.raises(model.AlertmanagerReplyError):
            model.parse_alerts(bad)


def test_alerts_panel_says_why_there_are_none() -> None:
    panel = model.alerts_table(None, "Alerts are not configured.")
    assert panel["rows"] == [] and panel["empty"] == "Alerts are not configured."
    assert model.alerts_table([], "")["empty"] == "No alert is firing."
    many = [model.Alert(f"A{i}", "warning", "", "", "") for i in range(60)]
    panel = model.alerts_table(many, "")
    assert len(panel["rows"]) == model.MAX_ALERTS_SHOWN
    assert panel["caption"].endswith(f": 60, the first {model.MAX_ALERTS_SHOWN} shown")


class Structure(HTMLParser):
    """Collects what the accessibility checks need: tables' captions and header scopes, the
    SVGs' roles and titles, and every element's text."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tables = 0
        self.captions = 0
        self.scoped_headers = 0
        self.headers = 0
        self.images: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        named = dict(attributes)
        self.open.append(tag)
        self.tables += tag == "table"
        self.captions += tag == "caption"
        if tag == "th":
            self.headers += 1
            self.scoped_headers += named.get("scope") in ("col", "row")
        if tag == "svg":
            self.images.append(named)
        for attribute in ("src", "href"):
            if named.get(attribute):
                self.sources.append(str(named[attribute]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def sample_state() -> dict[str, object]:
    samples = [model.BlockSample(h, 1_000_000 + h * 700, h % 3) for h in range(1, 60)]
    bars = model.buckets(samples)
    validators = ValidatorSet(Validator(key, 10) for key in KEYS)
    return {
        "node": "abcdef0123456789",
        "generated": "2026-12-04 19:00:00",
        "height": 59,
        "tables": [
            model.validators_table(validators, [certificate(59, [0, 1, 2])], KEYS[0]),
            model.consensus_table(
                model.Position("devnet", 59, 0, "PROPOSE", None, samples[-1].time_ms), samples
            ),
            model.throughput_table(bars),
            model.alerts_table(None, "Alerts are not configured."),
            model.peers_table([model.PeerTraffic("ab" * 32, 10, 20, 0)], 2),
            model.resources_table(model.Resources(1, 10, 100, 1_000, 5, 50, 100)),
            model.health_table({"caught_up": {"ok": False, "detail": "<b>5 behind</b>"}}),
        ],
        "chart": model.chart(bars),
    }


def test_page_has_captioned_tables_scoped_headers_and_charts_with_text() -> None:
    html = page.render_page(sample_state())
    structure = Structure()
    structure.feed(html)
    assert structure.tables == structure.captions == 7
    assert structure.headers == structure.scoped_headers
    assert [image.get("role") for image in structure.images] == ["img", "img"]
    assert all(image.get("aria-labelledby") for image in structure.images)
    text = " ".join(structure.text)
    assert "down" in text and "failing" in text
    # Text from the node is escaped, never markup.
    assert "<b>5 behind</b>" not in html and "&lt;b&gt;5 behind&lt;/b&gt;" in html
    # Everything the page loads is on its own origin.
    assert all(source.startswith(("/console/", "#")) for source in structure.sources)
    assert html.count('class="bar"') == 2 * len(sample_state()["chart"]["bars"])  # type: ignore[index]


def test_assets_are_only_the_listed_files() -> None:
    assert b"refresh" in page.asset("console.js")
    with pytest.raises(KeyError):
        page.asset("../model.py")


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def rule(selector: str) -> str:
    match = re.search(re.escape(selector) + r"\s*\{([^}]*)\}", CSS.read_text())
    assert match, selector
    return match.group(1)


def colour(declarations: str, property_name: str) -> str:
    match = re.search(rf"(?<![-\w]){property_name}:\s*(#[0-9a-f]{{6}})", declarations)
    assert match, (property_name, declarations)
    return match.group(1)


@pytest.mark.parametrize("selector", ["tr.ok", "tr.warn", "tr.bad", ":root"])
def test_text_colours_meet_wcag_aa(selector: str) -> None:
    declarations = rule(selector)
    assert contrast(colour(declarations, "color"), colour(declarations, "background")) >= 4.5


def test_graphics_and_links_meet_wcag_aa() -> None:
    white = "#ffffff"
    assert contrast(colour(rule("svg .bar"), "fill"), white) >= 3
    assert contrast(colour(rule("a"), "color"), white) >= 4.5
    assert contrast(colour(rule("#updated.bad"), "color"), white) >= 4.5
    assert contrast(colour(rule(":root"), "color"), colour(rule("thead th"), "background")) >= 4.5
    assert contrast(re.search(r"#767676", CSS.read_text()).group(0), white) >= 3  # type: ignore[union-attr]


def test_a_node_with_nothing_yet_renders_every_panel_saying_so() -> None:
    state = {
        "node": "abcdef0123456789",
        "generated": "2026-12-04 19:00:00",
        "height": 0,
        "tables": [
            model.validators_table(ValidatorSet(()), [], KEYS[0]),
            model.consensus_table(model.Position("devnet", 0, None, None, None, None), []),
            model.throughput_table([]),
            model.alerts_table(None, "Alerts are not configured."),
            model.peers_table([], 2),
            model.resources_table(model.Resources(0, 10, 0, 1_000, 0, 0, 0)),
            model.health_table({}),
        ],
        "chart": model.chart([]),
    }
    html = page.render_page(state)
    for sentence in (
        "No validator set is known yet.",
        "No block committed since the node started.",
        "No peer connected.",
        "Alerts are not configured.",
        "not started",
    ):
        assert sentence in html
    assert 'class="bar"' not in html
