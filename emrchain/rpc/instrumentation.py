"""The operations endpoints on `[instrumentation] listen_address`: /metrics, /health, /ready,
and the read-only operator console /console (`emrchain/rpc/console.py`, docs/console.md).

`/metrics` is rendered by `prometheus_client` from one registry per node: the event metrics of
`emrchain/metrics.py`, the library's process collector, and `NodeCollector`, which reads the
node's own counters through `NodeView` when Prometheus scrapes (nothing on the hot path).
`/health` says whether the node's event loop is alive (a heartbeat task it runs); `/ready`
whether the node should get traffic: caught up with its peers, enough peers for a quorum, and
every configured dependency reachable. Both answer JSON saying why. docs/spec/metrics.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from emrchain import metrics
from emrchain.api.signing import HEADER_KEY
from emrchain.rpc.console import Console
from emrchain.rpc.errors import RpcError
from emrchain.rpc.node_view import NodeView
from emrchain.throttled_log import ThrottledLog

if TYPE_CHECKING:
    from emrchain.config.node import InstrumentationSection

logger = logging.getLogger(__name__)
PEER_LABEL_HEX_CHARACTERS = 16
"""Peers are labelled by the first 16 characters of their node id (bounded by the validators)."""


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{metrics.NAMESPACE}_{name}", documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{metrics.NAMESPACE}_{name}", documentation, value=value)


def _labelled_counter(
    name: str, documentation: str, label: str, values: dict[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{metrics.NAMESPACE}_{name}", documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class NodeCollector(Collector):
    """The node's counters, read through `NodeView` at scrape time."""

    def __init__(self, node: NodeView) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        status, operations = node.status(), node.operations()
        yield from self._consensus(status, operations)
        yield from self._mempool(status)
        yield from self._p2p(status, operations)
        yield from self._store_and_records(status, operations)

    def _consensus(self, status: Any, operations: Any) -> Iterator[Metric]:
        node, consensus = self._node, status.consensus
        yield _gauge("consensus_height", "Last committed height.", node.height)
        yield _gauge(
            "consensus_round",
            "Round consensus is in at the current height.",
            consensus.round if consensus else 0,
        )
        yield _gauge(
            "consensus_validators", "Validators in the next height's set.", operations.validators
        )
        yield _gauge(
            "node_halted", "1 once the node halted (it then stops).", node.halt_reason is not None
        )
        yield _counter(
            "consensus_refused_signatures",
            "Consensus messages refused for a bad signature.",
            status.refused_signatures,
        )
        yield _counter(
            "consensus_evidence_committed",
            "Evidence items committed on the chain (each jails its offender).",
            operations.evidence_committed,
        )
        yield _gauge(
            "consensus_evidence_pending",
            "Evidence items in this node's pool, waiting for a block.",
            operations.evidence_pending,
        )
        yield _counter(
            "blocksync_blocks_synced", "Blocks applied through block sync.", status.blocks_synced
        )
        sync = status.sync
        yield _labelled_counter(
            "blocksync_peer_blocks",
            "Blocks applied through block sync, by the peer that sent them.",
            "peer",
            sync.blocks_by_peer,
        )
        yield _labelled_counter(
            "blocksync_peer_requests",
            "Block-sync requests sent, by peer.",
            "peer",
            sync.requests_by_peer,
        )
        yield _gauge(
            "blocksync_requests_in_flight",
            "Block-sync requests unanswered.",
            sync.requests_in_flight,
        )
        yield _gauge(
            "blocksync_buffered_blocks",
            "Blocks received ahead of the next height, waiting to be applied in order.",
            sync.buffered_blocks,
        )
        yield _counter(
            "blocksync_timeouts",
            "Block-sync requests that timed out (peer demoted).",
            sync.timeouts,
        )
        yield _counter(
            "blocksync_refused_responses",
            "Block-sync responses refused (unrequested or unverifiable; peer reported).",
            sync.responses_refused,
        )
        yield _gauge(
            "blocksync_best_peer_height",
            "A height some honest peer reported ((f + 1)-th highest claim).",
            operations.best_peer_height,
        )

    def _mempool(self, status: Any) -> Iterator[Metric]:
        mempool, limits = status.mempool, self._node.config.mempool
        yield _gauge("mempool_size_txs", "Pending transactions.", mempool.size_txs)
        yield _gauge("mempool_size_bytes", "Bytes of pending transactions.", mempool.size_bytes)
        yield _gauge("mempool_max_txs", "[mempool] max_txs.", limits.max_txs)
        yield _gauge("mempool_max_bytes", "[mempool] max_bytes.", limits.max_bytes)
        yield _counter("mempool_admitted_txs", "Transactions admitted.", mempool.admitted_txs)
        yield _labelled_counter(
            "mempool_refused_txs",
            "Transactions refused at admission, by verdict code.",
            "code",
            dict(mempool.refused_txs_by_code),
        )

    def _p2p(self, status: Any, operations: Any) -> Iterator[Metric]:
        p2p = operations.p2p
        yield _gauge("p2p_peers", "Connected peers.", len(status.peers))
        yield _gauge(
            "p2p_peers_needed_for_quorum",
            "Peers needed so that, with this node, more than 2/3 of the validators vote.",
            operations.peers_needed_for_quorum,
        )
        for direction in ("in", "out"):
            for unit in ("bytes", "frames"):
                family = CounterMetricFamily(
                    f"{metrics.NAMESPACE}_p2p_{unit}_{direction}",
                    f"Wire {unit} {'received' if direction == 'in' else 'sent'}, by peer.",
                    labels=["peer"],
                )
                for peer, stats in sorted(p2p.peers.items()):
                    family.add_metric(
                        [peer[:PEER_LABEL_HEX_CHARACTERS]], getattr(stats, f"{unit}_{direction}")
                    )
                yield family
        dropped = {
            "send_queue_full": p2p.send_queue_drops,
            "not_connected": p2p.send_not_connected,
            "gossip_inbox_full": status.counters.gossip_batches_dropped,
            "undecodable": status.counters.undecodable_messages,
        }
        yield _labelled_counter(
            "p2p_dropped_messages", "Messages dropped, by reason.", "reason", dropped
        )
        yield _labelled_counter(
            "p2p_handshake_failures",
            "Failed handshakes, by reason.",
            "reason",
            dict(p2p.handshake_failures),
        )
        yield _labelled_counter(
            "p2p_misbehaviour_reports",
            "Misbehaviour reports, by kind.",
            "kind",
            dict(p2p.misbehaviour),
        )
        yield _counter("p2p_bans", "Peers banned for misbehaviour.", p2p.bans)
        yield _gauge("p2p_bans_in_force", "Peers banned now.", status.p2p.bans_in_force)
        strikes = GaugeMetricFamily(
            f"{metrics.NAMESPACE}_p2p_peer_strikes",
            "Unexpired misbehaviour strikes of each connected peer, all kinds together.",
            labels=["peer"],
        )
        for peer, kinds in sorted(status.p2p.strikes.items()):
            strikes.add_metric([peer[:PEER_LABEL_HEX_CHARACTERS]], sum(kinds.values()))
        yield strikes

    def _store_and_records(self, status: Any, operations: Any) -> Iterator[Metric]:
        counters = status.counters
        yield _gauge(
            "store_data_bytes", "Bytes of files in the data directory.", operations.data_bytes
        )
        yield _gauge(
            "disk_free_bytes",
            "Free bytes on the data directory's filesystem.",
            operations.disk_free_bytes,
        )
        yield _gauge(
            "disk_total_bytes",
            "Size of the data directory's filesystem.",
            operations.disk_total_bytes,
        )
        yield _labelled_counter(
            "store_state_cache_lookups",
            "Committed-state cache lookups, by result.",
            "result",
            {"hit": counters.state_cache_hits, "miss": counters.state_cache_misses},
        )
        yield _gauge(
            "records_replication_backlog",
            "Record pins queued or in progress.",
            operations.replication_queued,
        )
        yield _labelled_counter(
            "records_replication_pins",
            "Record pins by outcome (pinned, failed, dropped, retried, copied_from_peers, erased).",
            "outcome",
            operations.replication_counters,
        )
        yield _counter(
            "records_replication_rounds",
            "Replication reconciliation rounds run.",
            operations.replication_rounds,
        )
        yield _gauge(
            "records_under_replicated",
            "Records with fewer observed copies than their replication factor (last round).",
            operations.replication_under_replicated,
        )
        yield _gauge(
            "records_replication_missing",
            "Records this node should pin and had not pinned (last round).",
            operations.replication_missing,
        )
        yield _gauge(
            "records_replication_peers_down",
            "Configured peer IPFS nodes that did not answer the last round.",
            operations.replication_peers_down,
        )
        yield _labelled_counter(
            "records_blob_reads",
            "Blob reads by the store that served them (local, or a peer after a local failure).",
            "source",
            operations.blob_reads,
        )
        yield _labelled_counter(
            "records_blob_repairs",
            "Corrupt local blobs replaced from a replica, by outcome.",
            "outcome",
            operations.blob_repairs,
        )
        yield _gauge(
            "records_erasure_backlog",
            "Committed erasures still in this node's erasure queue (deletion or receipt pending).",
            operations.erasures_in_flight,
        )
        yield _gauge(
            "reviews_open",
            "Break-glass and re-enrolment reviews in the chain's queue not yet closed.",
            operations.reviews_open,
        )
        yield _counter(
            "notifications_delivered",
            "Review events a webhook accepted (2xx).",
            operations.notifications_delivered,
        )
        yield _counter(
            "notifications_failed",
            "Webhook attempts that did not deliver (retried) or were refused for good (4xx).",
            operations.notifications_failed,
        )


REFUSED_STATUSES = frozenset({401, 403, 429})
KEY_PREFIX_CHARACTERS = 16
"""Refused requests are logged with the first 16 hex characters of the signing key they
named: enough to find the member, too short to be mistaken for the key."""
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
"""Any other method is labelled `other`: a client must not be able to mint label values."""


def request_observer(refusals_log: ThrottledLog) -> Any:
    """aiohttp middleware: each request's duration by route template, method and status, and
    each refusal (401/403/429) counted by its error code and logged, at most one line per
    interval. It sits inside `json_errors`, so it sees the `RpcError` a refusal raises."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        status, reason = 500, "internal_error"
        try:
            response = await handler(request)
            status = response.status
            return response
        except RpcError as error:
            status, reason = error.status, error.code
            raise
        except web.HTTPException as error:
            status, reason = error.status, error.reason.lower().replace(" ", "_")
            raise
        finally:
            route = request.match_info.route.resource
            template = route.canonical if route is not None else UNMATCHED_ROUTE
            method = request.method if request.method in KNOWN_METHODS else "other"
            metrics.RPC_DURATION.labels(template, method, str(status)).observe(
                time.perf_counter() - started
            )
            if status in REFUSED_STATUSES:
                metrics.RPC_REFUSED.labels(str(status), reason).inc()
                _log_refusal(refusals_log, request, status, reason)

    return middleware


def _log_refusal(log: ThrottledLog, request: web.Request, status: int, reason: str) -> None:
    key = request.headers.get(HEADER_KEY, "")
    prefix = "".join(c for c in key[:KEY_PREFIX_CHARACTERS] if c in "0123456789abcdefABCDEF")
    remote = request.remote or "?"
    log.warning(
        "refused %s %r from %s: %d %s (key %s)",
        request.method,
        request.path[:200],
        remote,
        status,
        reason,
        prefix or "none",
        extra={
            "request": {
                "method": request.method,
                "path": request.path[:200],
                "remote": remote,
                "status": status,
                "reason": reason,
                "key_prefix": prefix or None,
            }
        },
    )


class Heartbeat:
    """A task on the node's event loop that records when it last ran."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self.last_beat_s = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            self.last_beat_s = time.monotonic()
            await asyncio.sleep(self._interval_s)

    def age_s(self) -> float:
        return time.monotonic() - self.last_beat_s

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class InstrumentationServer:
    """aiohttp on `[instrumentation] listen_address`, serving one node's operations endpoints."""

    def __init__(self, node: NodeView, section: InstrumentationSection) -> None:
        self._node = node
        self._section = section
        # No `_created` series: they double the series count and no rule reads them.
        disable_created_metrics()
        self.registry = CollectorRegistry()
        metrics.register_event_metrics(self.registry)
        ProcessCollector(namespace="", registry=self.registry)
        self.registry.register(NodeCollector(node))
        self.heartbeat = Heartbeat(section.heartbeat_interval_ms / 1000)
        self.app = web.Application(client_max_size=1024)
        self.app.add_routes(
            [
                web.get("/metrics", self.metrics),
                web.get("/health", self.health),
                web.get("/ready", self.ready),
            ]
        )
        self.console = Console(node, section, lambda: readiness(node, section))
        self.app.add_routes(self.console.routes())
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        self.heartbeat.start()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        address = self._section.listen_address
        site = web.TCPSite(self._runner, address.host, address.port)
        await site.start()
        bound = self._runner.addresses
        self.port = bound[0][1] if bound else address.port
        logger.info("instrumentation (/metrics, /health, /ready, /console) on %s", address)

    async def close(self) -> None:
        await self.heartbeat.stop()
        await self.console.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})

    async def health(self, request: web.Request) -> web.Response:
        node = self._node
        age_ms = int(self.heartbeat.age_s() * 1000)
        problems = []
        if age_ms > self._section.heartbeat_stale_ms:
            problems.append(
                f"event loop heartbeat is {age_ms} ms old "
                f"(limit {self._section.heartbeat_stale_ms} ms)"
            )
        if node.halt_reason is not None:
            problems.append(f"halted: {node.halt_reason}")
        body = {
            "healthy": not problems,
            "heartbeat_age_ms": age_ms,
            "height": node.height,
            "problems": problems,
        }
        return web.json_response(body, status=503 if problems else 200)

    async def ready(self, request: web.Request) -> web.Response:
        body = await readiness(self._node, self._section)
        return web.json_response(body, status=200 if body["ready"] else 503)


async def readiness(node: NodeView, section: InstrumentationSection) -> dict[str, Any]:
    """The `/ready` body: each check with its verdict, and `ready` only if all pass."""
    status, operations = node.status(), node.operations()
    behind = max(operations.best_peer_height - node.height, 0)
    checks: dict[str, dict[str, Any]] = {
        "not_halted": {"ok": node.halt_reason is None, "detail": node.halt_reason or "running"},
        "caught_up": {
            "ok": behind <= section.ready_max_blocks_behind,
            "detail": f"height {node.height}, best peer height {operations.best_peer_height} "
            f"({behind} behind, at most {section.ready_max_blocks_behind} allowed)",
        },
        "peers_for_quorum": {
            "ok": len(status.peers) >= operations.peers_needed_for_quorum,
            "detail": f"{len(status.peers)} peers connected, "
            f"{operations.peers_needed_for_quorum} needed for a quorum of "
            f"{operations.validators} validators",
        },
    }
    for dependency in await node.probe_dependencies(section.dependency_timeout_ms / 1000):
        checks[dependency.name] = {"ok": dependency.reachable, "detail": dependency.detail}
    return {"ready": all(check["ok"] for check in checks.values()), "checks": checks}
