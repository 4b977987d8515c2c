"""The operator console's routes on the instrumentation listener: `GET /console` (the page),
`GET /console/state` (its figures as JSON) and the page's stylesheet and script.

Read-only and secret-free: it shows what `/status`, `/metrics` and `/ready` already expose on
this listener (heights, validators' public keys, peers' node ids, sizes, check verdicts) and
Alertmanager's firing alerts; no route changes anything. The figures are gathered here from
`NodeView` and shaped by `emrchain.console.model`; docs/console.md says where each comes from.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from emrchain.console import model, page
from emrchain.rpc.node_view import NodeView
from emrchain.types import ValidatorSet

if TYPE_CHECKING:
    from emrchain.config.node import InstrumentationSection
    from emrchain.types import Block, CommitCertificate

ALERTS_PATH = "/api/v2/alerts?active=true&silenced=false&inhibited=false"
ALERTS_REUSE_S = 2.0
"""A reply of Alertmanager serves every console request for 2 s (many open pages, one fetch)."""
MAX_ALERTS_REPLY_BYTES = 1 << 20
STATE_REUSE_S = 1.0
"""One gathering of the figures (dependency probes, the data directory's size, Alertmanager)
answers every console request for 1 s, so open pages cannot multiply the node's work."""
SECURITY_HEADERS = {
    # Everything the page loads comes from this listener; no inline script, no framing.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Readiness = Callable[[], Awaitable[dict[str, Any]]]


class AlertsReader:
    """Fetches Alertmanager's firing alerts with a deadline; never raises into the route."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self._url = base_url.rstrip("/") + ALERTS_PATH if base_url else ""
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._last: tuple[float, list[model.Alert] | None, str] | None = None

    async def firing(self) -> tuple[list[model.Alert] | None, str]:
        """(alerts, "") or (None, why there are none to show)."""
        if not self._url:
            return None, "Alerts are not configured ([instrumentation] alertmanager_url)."
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < ALERTS_REUSE_S:
            return self._last[1], self._last[2]
        alerts, problem = await self._fetch()
        self._last = (now, alerts, problem)
        return alerts, problem

    async def _fetch(self) -> tuple[list[model.Alert] | None, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
        try:
            async with self._session.get(self._url) as response:
                if response.status != 200:
                    return None, f"Alertmanager answered HTTP {response.status}."
                body = await response.content.read(MAX_ALERTS_REPLY_BYTES)
            return model.parse_alerts(json.loads(body)), ""
        except TimeoutError:
            return None, f"Alertmanager did not answer within {self._timeout_s:g} s."
        except (aiohttp.ClientError, ValueError) as error:
            return None, f"Alertmanager unreachable: {type(error).__name__}: {error}"[:200]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Console:
    """The console's state (recent blocks, the alerts reader) and its routes."""

    def __init__(
        self, node: NodeView, section: InstrumentationSection, readiness: Readiness
    ) -> None:
        self._node = node
        self._section = section
        self._readiness = readiness
        self.recent = model.RecentBlocks(section.console_history_blocks)
        self.alerts = AlertsReader(section.alertmanager_url, section.dependency_timeout_ms / 1000)
        self._last_state: tuple[float, dict[str, Any]] | None = None
        node.add_commit_listener(self._on_commit)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/console", self.page),
            web.get("/console/state", self.state_json),
            web.get("/console/{asset:console\\.(css|js)}", self.asset),
        ]

    def _on_commit(self, block: Block, tx_ids: object, results: object) -> None:
        self.recent.record(block.header.height, block.header.time_ms, len(block.txs))

    async def page(self, request: web.Request) -> web.Response:
        html = page.render_page(await self.state())
        return web.Response(text=html, content_type="text/html", headers=SECURITY_HEADERS)

    async def state_json(self, request: web.Request) -> web.Response:
        return web.json_response(await self.state(), headers=SECURITY_HEADERS)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["asset"]
        return web.Response(
            body=page.asset(name), content_type=page.ASSETS[name], headers=SECURITY_HEADERS
        )

    async def close(self) -> None:
        await self.alerts.close()

    async def state(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._last_state is None or now - self._last_state[0] >= STATE_REUSE_S:
            self._last_state = (now, await self._gather())
        return self._last_state[1]

    async def _gather(self) -> dict[str, Any]:
        node = self._node
        status, operations = node.status(), node.operations()
        readiness, (alerts, problem) = await asyncio.gather(self._readiness(), self.alerts.firing())
        samples = self.recent.samples()
        bars = model.buckets(samples)
        validators = node.chain.validator_set(node.height + 1) or node.chain.validator_set(
            node.height
        )
        mempool = status.mempool
        tables = [
            model.validators_table(
                validators or ValidatorSet(()), self._certificates(), status.validator
            ),
            model.consensus_table(self._position(status, samples), samples),
            model.throughput_table(bars),
            model.alerts_table(alerts, problem),
            model.peers_table(
                [
                    model.PeerTraffic(
                        peer,
                        operations.p2p.peers[peer].bytes_in if peer in operations.p2p.peers else 0,
                        operations.p2p.peers[peer].bytes_out if peer in operations.p2p.peers else 0,
                        sum(status.p2p.strikes.get(peer, {}).values()),
                    )
                    for peer in status.peers
                ],
                operations.peers_needed_for_quorum,
            ),
            model.resources_table(
                model.Resources(
                    mempool_txs=mempool.size_txs,
                    mempool_max_txs=node.config.mempool.max_txs,
                    mempool_bytes=mempool.size_bytes,
                    mempool_max_bytes=node.config.mempool.max_bytes,
                    data_bytes=operations.data_bytes,
                    disk_free_bytes=operations.disk_free_bytes,
                    disk_total_bytes=operations.disk_total_bytes,
                )
            ),
            model.health_table(readiness["checks"]),
        ]
        return {
            "node": status.node_id[: model.KEY_PREFIX_CHARACTERS],
            "generated": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "height": node.height,
            "tables": tables,
            "chart": model.chart(bars),
        }

    def _certificates(self) -> list[CommitCertificate]:
        """The latest `console_signing_window` stored commit certificates, newest first."""
        chain, height = self._node.chain, self._node.height
        lowest = max(height - self._section.console_signing_window + 1, chain.base_height(), 1)
        certificates = []
        for each in range(height, lowest - 1, -1):
            certificate = chain.commit(each)
            if certificate is not None:
                certificates.append(certificate)
        return certificates

    def _position(self, status: Any, samples: list[model.BlockSample]) -> model.Position:
        node = self._node
        latest_time_ms = (
            samples[-1].time_ms if samples and samples[-1].height == node.height else None
        )
        if latest_time_ms is None and node.height:
            block = node.chain.block(node.height)  # None once pruned: shown as unknown
            latest_time_ms = block.header.time_ms if block is not None else None
        consensus = status.consensus
        return model.Position(
            chain_id=node.chain_id.decode("ascii", "replace"),
            height=node.height,
            round=consensus.round if consensus else None,
            step=consensus.step if consensus else None,
            halt_reason=node.halt_reason,
            latest_time_ms=latest_time_ms,
        )
