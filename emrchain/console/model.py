"""The operator console's view model: plain data in, the JSON `/console/state` serves out.

Every panel is a table (caption, column headers, rows of text cells), so the page renders the
same figures whether the server writes them (first paint, no script needed) or the page's
script redraws them from `/console/state`. A row may carry a `state` ("ok", "warn", "bad") that
the page colours; the cells always say the same thing in words, so colour is never the only
signal. Nothing here reads a clock or does I/O: the RPC layer (`emrchain/rpc/console.py`)
gathers the inputs and passes the time in.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emrchain.types import CommitCertificate, ValidatorSet

BUCKET_MS = 10_000
"""Widest chart bar: the blocks whose time falls in 10 s of block time."""
MIN_BUCKET_MS = 1_000
CHART_BUCKETS = 30
"""Bars in the chart: at most the last 5 minutes of block time. A shorter history (a node that
just started) gets narrower bars, whole seconds, at least MIN_BUCKET_MS, so it still shows a
shape."""
KEY_PREFIX_CHARACTERS = 16
"""Validators and peers are named by the first 16 hex characters of their public key."""
MAX_ALERTS_SHOWN = 50
"""More firing alerts than this are summarised as a count (the page stays readable)."""


@dataclass(frozen=True, slots=True)
class BlockSample:
    """One committed block as the chart needs it."""

    height: int
    time_ms: int
    """The block header's time (the proposer's clock, checked by consensus)."""
    tx_count: int


class RecentBlocks:
    """The last `capacity` committed blocks, oldest dropped first (`console_history_blocks`)."""

    def __init__(self, capacity: int) -> None:
        self._samples: deque[BlockSample] = deque(maxlen=capacity)

    def record(self, height: int, time_ms: int, tx_count: int) -> None:
        self._samples.append(BlockSample(height, time_ms, tx_count))

    def samples(self) -> list[BlockSample]:
        return list(self._samples)


@dataclass(frozen=True, slots=True)
class Bucket:
    """The blocks whose time falls in (end_ms - width_ms, end_ms]."""

    end_ms: int
    width_ms: int
    blocks: int
    txs: int
    mean_interval_ms: int | None
    """Mean time between each of these blocks and the block before it (None: no pair known)."""

    @property
    def txs_per_s(self) -> float:
        return round(self.txs * 1000 / self.width_ms, 1)


def buckets(samples: Sequence[BlockSample]) -> list[Bucket]:
    """Up to CHART_BUCKETS bars ending at the newest block's time, oldest first; bars before the
    oldest sample are left out (the node did not see those blocks), empty ones within are kept
    (a stalled chain shows as bars of 0 blocks)."""
    if not samples:
        return []
    newest_ms = samples[-1].time_ms
    span = newest_ms - samples[0].time_ms
    width_ms = bucket_width_ms(span)
    count = min(CHART_BUCKETS, span // width_ms + 1)
    time_by_height = {sample.height: sample.time_ms for sample in samples}
    blocks = [0] * count
    txs = [0] * count
    intervals: list[list[int]] = [[] for _ in range(count)]
    for sample in samples:
        back = (newest_ms - sample.time_ms) // width_ms
        if back >= count:
            continue
        index = count - 1 - back
        blocks[index] += 1
        txs[index] += sample.tx_count
        previous_ms = time_by_height.get(sample.height - 1)
        if previous_ms is not None:
            intervals[index].append(sample.time_ms - previous_ms)
    return [
        Bucket(
            end_ms=newest_ms - (count - 1 - index) * width_ms,
            width_ms=width_ms,
            blocks=blocks[index],
            txs=txs[index],
            mean_interval_ms=sum(intervals[index]) // len(intervals[index])
            if intervals[index]
            else None,
        )
        for index in range(count)
    ]


def bucket_width_ms(span_ms: int) -> int:
    """The bar width that spreads `span_ms` of history over CHART_BUCKETS bars: whole seconds,
    MIN_BUCKET_MS..BUCKET_MS."""
    seconds = -(-span_ms // (CHART_BUCKETS * 1000))
    return min(BUCKET_MS, max(MIN_BUCKET_MS, seconds * 1000))


def clock_time(time_ms: int) -> str:
    """`HH:MM:SS` UTC of a block time."""
    return time.strftime("%H:%M:%S", time.gmtime(time_ms // 1000))


def row(cells: Iterable[object], *, key: str = "", state: str = "") -> dict[str, Any]:
    return {"key": key, "state": state, "cells": [str(cell) for cell in cells]}


def table(
    identifier: str, caption: str, headers: Sequence[str], rows: list[dict[str, Any]], empty: str
) -> dict[str, Any]:
    """One panel: `empty` is shown (as one full-width cell) when there are no rows."""
    return {
        "id": identifier,
        "caption": caption,
        "headers": list(headers),
        "rows": rows,
        "empty": empty,
    }


def throughput_table(bars: Sequence[Bucket]) -> dict[str, Any]:
    """The chart's text alternative: the same figures, one row per bar, newest first."""
    rows = [
        row(
            (
                clock_time(bar.end_ms),
                bar.blocks,
                "—" if bar.mean_interval_ms is None else bar.mean_interval_ms,
                bar.txs,
                f"{bar.txs_per_s:.1f}",
            ),
            key=str(bar.end_ms),
            state="" if bar.blocks else "warn",
        )
        for bar in reversed(bars)
    ]
    return table(
        "throughput",
        f"Blocks per {bars[0].width_ms // 1000 if bars else BUCKET_MS // 1000} s of block time "
        "(the chart's figures), newest first",
        ("Ending at (UTC)", "Blocks", "Mean block interval (ms)", "Transactions", "Txs/s"),
        rows,
        "No block committed since the node started.",
    )


def chart(bars: Sequence[Bucket]) -> dict[str, Any]:
    return {
        "bucket_ms": bars[0].width_ms if bars else BUCKET_MS,
        "bars": [
            {
                "end": clock_time(bar.end_ms),
                "txs_per_s": bar.txs_per_s,
                "mean_interval_ms": bar.mean_interval_ms,
                "blocks": bar.blocks,
            }
            for bar in bars
        ],
    }


@dataclass(frozen=True, slots=True)
class Signing:
    """What the latest commit certificates say of one validator."""

    signed: int
    """Certificates in the window that hold its precommit."""
    window: int
    """Certificates read (fewer than the setting early in a chain, or below a pruned base)."""
    signed_latest: bool
    last_signed_height: int | None

    @property
    def state(self) -> str:
        """ "signing", "missed" (not in the latest certificate, in an earlier one: a commit is
        certified as soon as more than 2/3 have voted, so a slow live validator can miss some),
        or "down" (in none of the window)."""
        if self.signed_latest:
            return "signing"
        return "missed" if self.signed else "down"


def signing(public_key: bytes, certificates: Sequence[CommitCertificate]) -> Signing:
    """`certificates` newest first."""
    heights = [
        certificate.height
        for certificate in certificates
        if any(entry.validator == public_key for entry in certificate.signatures)
    ]
    return Signing(
        signed=len(heights),
        window=len(certificates),
        signed_latest=bool(certificates) and bool(heights) and heights[0] == certificates[0].height,
        last_signed_height=heights[0] if heights else None,
    )


SIGNING_ROW_STATES = {"signing": "ok", "missed": "warn", "down": "bad"}


def validators_table(
    validators: ValidatorSet, certificates: Sequence[CommitCertificate], own_key: bytes
) -> dict[str, Any]:
    rows = []
    for validator in validators:
        record = signing(validator.public_key, certificates)
        name = validator.public_key.hex()[:KEY_PREFIX_CHARACTERS]
        rows.append(
            row(
                (
                    f"{name} (this node)" if validator.public_key == own_key else name,
                    validator.power,
                    record.state,
                    f"{record.signed} of {record.window}",
                    "not in the window"
                    if record.last_signed_height is None
                    else record.last_signed_height,
                ),
                key=validator.public_key.hex(),
                state=SIGNING_ROW_STATES[record.state],
            )
        )
    return table(
        "validators",
        f"Validators of the current set and their precommits in the last {len(certificates)} "
        "commit certificates this node stored",
        ("Validator (key prefix)", "Voting power", "State", "Signed", "Last signed height"),
        rows,
        "No validator set is known yet.",
    )


@dataclass(frozen=True, slots=True)
class Position:
    """Where the node is: its head and the consensus round it is in."""

    chain_id: str
    height: int
    round: int | None
    step: str | None
    halt_reason: str | None
    latest_time_ms: int | None


def consensus_table(position: Position, samples: Sequence[BlockSample]) -> dict[str, Any]:
    last_interval = (
        samples[-1].time_ms - samples[-2].time_ms
        if len(samples) >= 2 and samples[-1].height == samples[-2].height + 1
        else None
    )
    rows = [
        row(("Chain", position.chain_id), key="chain"),
        row(("Height (last committed)", position.height), key="height"),
        row(("Round", "—" if position.round is None else position.round), key="round"),
        row(("Step", position.step or "not started"), key="step"),
        row(
            (
                "Last block time (UTC)",
                "—" if position.latest_time_ms is None else clock_time(position.latest_time_ms),
            ),
            key="latest_time",
        ),
        row(
            ("Last block interval (ms)", "—" if last_interval is None else last_interval),
            key="interval",
        ),
        row(
            ("Node", "halted: " + position.halt_reason if position.halt_reason else "running"),
            key="halted",
            state="bad" if position.halt_reason else "ok",
        ),
    ]
    return table(
        "consensus", "This node's head and consensus position", ("Figure", "Value"), rows, ""
    )


@dataclass(frozen=True, slots=True)
class PeerTraffic:
    node_id: str
    bytes_in: int
    bytes_out: int
    strikes: int


def peers_table(peers: Sequence[PeerTraffic], needed_for_quorum: int) -> dict[str, Any]:
    rows = [
        row(
            (peer.node_id[:KEY_PREFIX_CHARACTERS], peer.bytes_in, peer.bytes_out, peer.strikes),
            key=peer.node_id,
            state="warn" if peer.strikes else "",
        )
        for peer in sorted(peers, key=lambda peer: peer.node_id)
    ]
    return table(
        "peers",
        f"Connected peers: {len(peers)} ({needed_for_quorum} needed for a quorum)",
        ("Peer (node id prefix)", "Bytes received", "Bytes sent", "Misbehaviour strikes"),
        rows,
        "No peer connected.",
    )


@dataclass(frozen=True, slots=True)
class Resources:
    mempool_txs: int
    mempool_max_txs: int
    mempool_bytes: int
    mempool_max_bytes: int
    data_bytes: int
    disk_free_bytes: int
    disk_total_bytes: int


def percent(part: int, whole: int) -> str:
    return f"{part * 100 // whole} %" if whole else "—"


def resources_table(resources: Resources) -> dict[str, Any]:
    full = resources.mempool_txs * 10 >= resources.mempool_max_txs * 9
    low_disk = resources.disk_free_bytes * 10 < resources.disk_total_bytes
    return table(
        "resources",
        "Pending transactions and the data directory's disk",
        ("Figure", "Value", "Of limit"),
        [
            row(
                (
                    "Mempool transactions",
                    resources.mempool_txs,
                    percent(resources.mempool_txs, resources.mempool_max_txs),
                ),
                key="mempool_txs",
                state="warn" if full else "",
            ),
            row(
                (
                    "Mempool bytes",
                    resources.mempool_bytes,
                    percent(resources.mempool_bytes, resources.mempool_max_bytes),
                ),
                key="mempool_bytes",
            ),
            row(("Data directory bytes", resources.data_bytes, ""), key="data_bytes"),
            row(
                (
                    "Disk free bytes",
                    resources.disk_free_bytes,
                    percent(resources.disk_free_bytes, resources.disk_total_bytes) + " free",
                ),
                key="disk_free",
                state="warn" if low_disk else "",
            ),
        ],
        "",
    )


def health_table(checks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The `/ready` checks (halted, caught up, peers for a quorum, Redis, IPFS, HSM)."""
    rows = [
        row(
            (name, "ok" if check["ok"] else "failing", check["detail"]),
            key=name,
            state="ok" if check["ok"] else "bad",
        )
        for name, check in checks.items()
    ]
    return table(
        "health",
        "Readiness and dependencies (what /ready checks)",
        ("Check", "Verdict", "Detail"),
        rows,
        "",
    )


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    severity: str
    summary: str
    since: str
    instance: str


class AlertmanagerReplyError(ValueError):
    """Alertmanager's reply is not the list of alerts its API v2 documents."""


def _text(value: object, limit: int = 300) -> str:
    return value[:limit] if isinstance(value, str) else ""


def parse_alerts(reply: object) -> list[Alert]:
    """Alertmanager's `GET /api/v2/alerts` reply: the active ones, most severe first."""
    if not isinstance(reply, list):
        raise AlertmanagerReplyError("expected a JSON array of alerts")
    alerts = []
    for entry in reply:
        if not isinstance(entry, dict) or not isinstance(entry.get("labels"), dict):
            raise AlertmanagerReplyError("an alert without labels")
        status = entry.get("status")
        if isinstance(status, dict) and status.get("state") not in (None, "active"):
            continue
        labels = entry["labels"]
        annotations = entry.get("annotations")
        annotations = annotations if isinstance(annotations, dict) else {}
        alerts.append(
            Alert(
                name=_text(labels.get("alertname")) or "(unnamed)",
                severity=_text(labels.get("severity")) or "none",
                summary=_text(annotations.get("summary")),
                since=_text(entry.get("startsAt"), 40),
                instance=_text(labels.get("instance")),
            )
        )
    order = {"critical": 0, "warning": 1}
    return sorted(alerts, key=lambda alert: (order.get(alert.severity, 2), alert.name))


ALERT_ROW_STATES = {"critical": "bad", "warning": "warn"}


def alerts_table(alerts: Sequence[Alert] | None, problem: str) -> dict[str, Any]:
    """`alerts` None: not fetched, and `problem` says why (not configured, unreachable)."""
    shown = list(alerts or ())[:MAX_ALERTS_SHOWN]
    rows = [
        row(
            (alert.severity, alert.name, alert.summary, alert.instance, alert.since),
            key=f"{alert.name}/{alert.instance}",
            state=ALERT_ROW_STATES.get(alert.severity, ""),
        )
        for alert in shown
    ]
    hidden = len(alerts or ()) - len(shown)
    caption = "Firing alerts (Alertmanager)"
    if alerts is not None:
        caption += f": {len(alerts)}" + (f", the first {len(shown)} shown" if hidden else "")
    return table(
        "alerts",
        caption,
        ("Severity", "Alert", "Summary", "Instance", "Firing since"),
        rows,
        problem or "No alert is firing.",
    )
