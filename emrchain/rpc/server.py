"""Minimal node RPC: health, status, submit transactions, tx status with inclusion proof, blocks.

All bodies are JSON (binary values as lowercase hex); limits come from the `[rpc]` config
section (`docs/spec/rpc.md` §Limits: connections in `connections.py`, rate limits and body
caps in `guard.py`, signed requests in `auth.py`). Errors are
`{"error": {"code": ..., "message": ...}}` with a stable code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emrchain import _core
from emrchain.api.parse import decimal, lower_hex
from emrchain.api.signing import HEADER_KEY
from emrchain.rpc.acknowledgements import admit_and_wait, wants_commit
from emrchain.rpc.auth import Authenticator, NodeIdentity, ReplayHorizon, ReplayLimits
from emrchain.rpc.binary import BinarySubmit
from emrchain.rpc.connections import (
    ConnectionGate,
    ConnectionLimits,
    TlsFiles,
    ensure_file_limit,
    server_tls_context,
)
from emrchain.rpc.custody import CustodyRoutes
from emrchain.rpc.errors import (
    UNHANDLED_ERRORS_LOG,
    RpcError,
    hex_argument,
    json_errors,
    request_timeout,
)
from emrchain.rpc.fhir import FhirRoutes
from emrchain.rpc.guard import (
    BODY_BUDGET,
    BodyBudget,
    RequestGuard,
    RoutePolicy,
    defer_continue,
    read_body,
)
from emrchain.rpc.instrumentation import request_observer
from emrchain.rpc.limits import Rate, RateLimiter
from emrchain.rpc.node_view import NodeView
from emrchain.rpc.openapi import MAX_HEIGHT, DocumentLimits
from emrchain.rpc.openapi import document as openapi_document
from emrchain.rpc.patient_stream import PatientEventStream
from emrchain.rpc.records import RecordRoutes
from emrchain.rpc.reviews import ReviewRoutes
from emrchain.rpc.shared import SharedRoutes
from emrchain.rpc.stream import BlockStream, StreamLimits
from emrchain.rpc.studies import StudyRoutes
from emrchain.schema import Role
from emrchain.state.emr import queries
from emrchain.state.keys import nonce_key
from emrchain.store.errors import HeightPrunedError
from emrchain.throttled_log import ThrottledLog, ThrottleFilter
from emrchain.types import Block, ConflictingProposalEvidence, Evidence, envelope

if TYPE_CHECKING:
    from emrchain.config.node import NodeConfig
    from emrchain.p2p.stats import PeerStanding

logger = logging.getLogger(__name__)
REPLAY_HORIZON_FILE = "rpc_replay_horizon"
"""In the data directory: the newest signed-request timestamp the node may have accepted."""
UPLOAD_ROUTE = ("PUT", "/records/{record_id}/custody")
SUBMIT_ROUTE = ("POST", "/txs")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def status_json(node: NodeView) -> dict[str, Any]:
    """The `/status` reply (`docs/spec/rpc.md`)."""
    status = node.status()
    consensus = status.consensus
    mempool, counters = status.mempool, status.counters
    return {
        "chain_id": node.chain_id.decode(),
        "node_id": status.node_id,
        "validator": status.validator.hex(),
        "core_implementation": _core.IMPLEMENTATION,
        "latest_height": node.height,
        # The lowest height whose block this node keeps (docs/spec/pruning.md).
        "base_height": node.chain.base_height(),
        "latest_block_id": status.latest_block_id.hex() if status.latest_block_id else None,
        "latest_app_hash": status.latest_app_hash.hex(),
        "consensus": {
            "height": consensus.height if consensus else None,
            "round": consensus.round if consensus else None,
            "step": consensus.step if consensus else None,
        },
        "peers": status.peers,
        "p2p": _p2p_json(status.p2p),
        "mempool_txs": mempool.size_txs,
        "evidence": [item.hex() for item in status.evidence],
        "refused_signatures": status.refused_signatures,
        "blocks_synced": status.blocks_synced,
        "sync": dataclasses.asdict(status.sync),
        # Totals since the node started: what an operator (and a benchmark) needs to see where
        # admission work goes without attaching a profiler.
        "counters": {
            "admitted_txs": mempool.admitted_txs,
            "refused_txs_by_code": dict(mempool.refused_txs_by_code),
            "signatures_verified": mempool.signatures_verified,
            "signature_cache_hits": mempool.signature_cache_hits,
            "preverified_txs": counters.preverified_txs,
            "gossip_batches_dropped": counters.gossip_batches_dropped,
            "undecodable_messages": counters.undecodable_messages,
            "state_cache_hits": counters.state_cache_hits,
            "state_cache_misses": counters.state_cache_misses,
            "state_cache_entries": counters.state_cache_entries,
            "absence_filter_keys": counters.absence_filter_keys,
        },
        "halt": node.halt_reason,
    }


def _p2p_json(standing: PeerStanding) -> dict[str, Any]:
    return {
        "peers": {
            peer_id: {"strikes": strikes} for peer_id, strikes in sorted(standing.strikes.items())
        },
        "bans_in_force": standing.bans_in_force,
        "bans": standing.bans,
        "unknown_peer_refusals": standing.unknown_peer_refusals,
    }


def _tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    section = config.rpc
    if not section.tls_certificate_file:
        return None
    return server_tls_context(
        TlsFiles(
            certificate=config.resolve(section.tls_certificate_file),
            key=config.resolve(section.tls_key_file),
            client_ca=config.resolve(section.tls_client_ca_file)
            if section.tls_client_ca_file
            else None,
        )
    )


def header_json(block: Block) -> dict[str, Any]:
    header = block.header
    return {
        "height": header.height,
        "block_id": block.block_id.hex(),
        "time_ms": header.time_ms,
        "previous_block_id": header.previous_block_id.hex(),
        "last_commit_hash": header.last_commit_hash.hex(),
        "tx_root": header.tx_root.hex(),
        "tx_count": header.tx_count,
        "app_hash": header.app_hash.hex(),
        "validators_hash": header.validators_hash.hex(),
        "next_validators_hash": header.next_validators_hash.hex(),
        "evidence_hash": header.evidence_hash.hex(),
        "proposer": header.proposer.hex(),
    }


def evidence_json(item: Evidence) -> dict[str, Any]:
    if isinstance(item, ConflictingProposalEvidence):
        kind, step = "conflicting_proposals", "proposal"
        ids = [item.proposal_a.block_id, item.proposal_b.block_id]
        round_number = item.round
    else:
        kind, step = "duplicate_vote", item.vote_a.type.name.lower()
        ids = [item.vote_a.block_id, item.vote_b.block_id]
        round_number = item.vote_a.round
    return {
        "type": kind,
        "offender": item.validator.hex(),
        "height": item.height,
        "round": round_number,
        "vote_type": step,
        "block_ids": [block_id.hex() for block_id in ids],
        "hash": item.hash.hex(),
    }


def _authenticator(node: NodeView) -> Authenticator:
    config = node.config
    return Authenticator(
        NodeIdentity(node.chain_id, node.node_public_key),
        node.chain.state_view,
        wall_clock_ms,
        ReplayLimits(
            config.records.max_clock_skew_ms,
            config.records.replay_cache_entries,
            config.records.replay_cache_entries_per_member,
        ),
        Rate(config.rpc.member_requests_per_second, config.rpc.member_request_burst),
        ReplayHorizon(config.data_path / REPLAY_HORIZON_FILE),
    )


def _route_policies(
    app: web.Application, document: dict[str, Any], config: NodeConfig
) -> dict[web.AbstractRoute, RoutePolicy]:
    """Each route's policy: signed as the OpenAPI document says (its `security`), and the body
    cap of `docs/spec/rpc.md` §Limits."""
    caps = {
        UPLOAD_ROUTE: config.records.max_record_bytes,
        SUBMIT_ROUTE: config.rpc.max_body_bytes,
    }
    policies = {}
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        method = "GET" if route.method == "HEAD" else route.method
        operation = document["paths"].get(canonical, {}).get(method.lower(), {})
        # Signed routes list only signed requirements; one that also lists `{}` (no
        # signature) serves anonymous callers too and is rate limited like any unsigned route.
        security = operation.get("security", [{}])
        policies[route] = RoutePolicy(
            signed={} not in security,
            max_body_bytes=caps.get((method, canonical), config.rpc.max_other_body_bytes),
        )
    return policies


def _http_logger(interval_s: float) -> logging.Logger:
    """The logger aiohttp reports malformed requests to, one line per interval. A logger of
    this server's own (not from `logging.getLogger`), so each server has its own throttle."""
    http_logger = logging.Logger(f"{__name__}.http")
    http_logger.parent = logger
    http_logger.addFilter(ThrottleFilter(ThrottledLog(http_logger, interval_s)))
    return http_logger


class RpcServer:
    """The aiohttp application of one node, bound to `[rpc] listen_address`."""

    def __init__(self, node: NodeView) -> None:
        self._node = node
        section = node.config.rpc
        self._max_batch_txs = section.max_batch_txs
        self._max_body_bytes = section.max_body_bytes
        self._commit_wait_timeout_s = section.commit_wait_timeout_ms / 1000
        records = node.config.records
        policies: dict[web.AbstractRoute, RoutePolicy] = {}
        self.addresses = RateLimiter(
            Rate(section.address_requests_per_second, section.address_request_burst),
            "from one client address",
        )
        guard = RequestGuard(
            policies, RoutePolicy(False, section.max_other_body_bytes), self.addresses
        )
        # Each route's cap is the guard's (read_body); aiohttp's own is only a backstop.
        self.app = web.Application(
            client_max_size=max(section.max_body_bytes, records.max_record_bytes),
            # json_errors outermost: it turns the timeout's RpcError into a JSON reply too.
            middlewares=[
                json_errors,
                request_observer(ThrottledLog(logger, section.error_log_interval_ms / 1000)),
                request_timeout(section.request_timeout_ms),
                guard.middleware,
            ],
        )
        self.app[BODY_BUDGET] = BodyBudget(section.max_buffered_body_bytes)
        self.app[UNHANDLED_ERRORS_LOG] = ThrottledLog(logger, section.error_log_interval_ms / 1000)
        self._document = openapi_document(
            DocumentLimits(
                max_batch_txs=section.max_batch_txs,
                max_tx_bytes=node.config.limits.max_tx_bytes,
                max_header_bytes=section.max_header_bytes,
                fhir_max_count=section.fhir_max_count,
                page_limit_max=section.page_limit_max,
            )
        )
        self.authenticator = _authenticator(node)
        self.block_stream = BlockStream(
            node, StreamLimits.of(section, section.max_stream_subscribers_per_address)
        )
        self.patient_stream = PatientEventStream(
            node,
            self.authenticator,
            StreamLimits.of(section, section.max_stream_subscribers_per_member),
        )
        self.app.add_routes(
            [
                web.get("/health", self.health),
                web.get("/openapi.json", self.openapi),
                web.get("/status", self.status),
                web.post(
                    "/txs",
                    BinarySubmit(node, self.submit).handle,
                    expect_handler=defer_continue,
                ),
                web.get("/txs/{tx_id}", self.tx_status),
                web.get("/blocks/latest", self.latest_block),
                web.get("/blocks/{height}", self.block),
                web.get("/ws/blocks", self.block_stream.handle),
                web.get("/evidence", self.evidence),
                web.get("/validators/{height}", self.validators),
                web.get("/validators/{validator_key}/nonce", self.validator_nonce),
                # Before the record routes: `/records/{record_id}` would take this path.
                web.get("/records/replication", self.replication),
                *RecordRoutes(node, self.authenticator, wall_clock_ms).routes(),
                *CustodyRoutes(node, self.authenticator).routes(),
                *ReviewRoutes(node, self.authenticator).routes(),
                *StudyRoutes(node, self.authenticator).routes(),
                *SharedRoutes(node, self.authenticator, wall_clock_ms).routes(),
                web.get("/ws/patients/{patient_id}", self.patient_stream.handle),
                *FhirRoutes(node, self.authenticator, wall_clock_ms).routes(),
            ]
        )
        policies.update(_route_policies(self.app, self._document, node.config))
        self._runner: web.AppRunner | None = None
        self._gate: ConnectionGate | None = None
        self.port: int | None = None

    async def start(self) -> None:
        config = self._node.config
        section = config.rpc
        ensure_file_limit(section.max_connections)
        # The HTTP parser's limits and the idle timeout, from [rpc] rather than aiohttp's
        # silent defaults (an idle keep-alive connection lived an hour). No lingering: a
        # request refused before its body was read is closed at once, the body left unread.
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            max_line_size=section.max_header_bytes,
            max_field_size=section.max_header_bytes,
            max_headers=section.max_headers,
            keepalive_timeout=section.idle_timeout_ms / 1000,
            lingering_time=0,
            # On stop, an open request (a stream's close handshake) gets this long, twice.
            shutdown_timeout=section.shutdown_grace_ms / 1000,
            logger=_http_logger(section.error_log_interval_ms / 1000),
        )
        await self._runner.setup()
        assert self._runner.server is not None
        self._gate = ConnectionGate(
            ConnectionLimits(
                max_connections=section.max_connections,
                max_connections_per_address=section.max_connections_per_address,
                listen_backlog=section.listen_backlog,
                header_timeout_s=section.header_timeout_ms / 1000,
                write_stall_timeout_s=section.request_timeout_ms / 1000,
                error_log_interval_s=section.error_log_interval_ms / 1000,
            ),
            self._runner.server,
            _tls_context(config),
        )
        address = section.listen_address
        self.port = await self._gate.start(address.host, address.port)

    async def close(self) -> None:
        """Stop accepting, close every stream subscription (1001), then give open requests
        `[rpc] shutdown_grace_ms` before cutting them: a client never holds up the exit."""
        if self._gate is not None:
            await self._gate.close()
        self.block_stream.stop()
        self.patient_stream.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ handlers

    async def health(self, request: web.Request) -> web.Response:
        node = self._node
        return web.json_response(
            {"ok": node.halt_reason is None, "height": node.height, "halt": node.halt_reason}
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self._document)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(status_json(self._node))

    async def submit(self, request: web.Request) -> web.Response:
        """A JSON batch: a verdict per transaction at admission, or with `?wait=commit` once
        the accepted ones are final (`acknowledgements.py`)."""
        wait_for_commit = wants_commit(request.query.get("wait"))
        raw = await read_body(request)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            # ValueError covers bad JSON, bad UTF-8 and integers past Python's digit limit;
            # RecursionError is a body nested deeper than the parser's stack.
            raise RpcError(400, "bad_json", "body is not JSON (or nests too deeply)") from None
        txs_hex = body.get("txs") if isinstance(body, dict) else None
        if not isinstance(txs_hex, list) or not all(isinstance(item, str) for item in txs_hex):
            raise RpcError(400, "bad_request", 'expected {"txs": ["<hex>", ...]}')
        if not 1 <= len(txs_hex) <= self._max_batch_txs:
            raise RpcError(
                400, "batch_size", f"a batch holds 1..{self._max_batch_txs} transactions"
            )
        try:
            txs = [lower_hex(item) for item in txs_hex]
        except ValueError:
            raise RpcError(400, "bad_hex", "a transaction is not lowercase hex") from None
        # Through the node's admission pipeline, like binary batches: signatures are verified
        # in its worker thread, not on the event loop that runs consensus.
        if wait_for_commit:
            outcomes = await admit_and_wait(
                self._node.submit_waits, txs, self._node.admit, self._commit_wait_timeout_s
            )
            return web.json_response({"results": [outcome.json() for outcome in outcomes]})
        admissions = await self._node.admit(txs)
        return web.json_response(
            {
                "results": [
                    {
                        "tx_id": admission.tx_id.hex(),
                        "accepted": admission.accepted,
                        "code": str(admission.code),
                        "reason": admission.reason,
                    }
                    for admission in admissions
                ]
            }
        )

    async def tx_status(self, request: web.Request) -> web.Response:
        tx_id = hex_argument(request.match_info["tx_id"], 32, "tx id")
        node = self._node
        try:
            proof = node.chain.tx_proof(tx_id)
        except HeightPrunedError as error:
            raise pruned_error(error.height, error.base_height) from None
        if proof is None:
            if node.is_pending(tx_id):
                return web.json_response({"tx_id": tx_id.hex(), "status": "pending"})
            base = node.chain.base_height()
            if base > 1:
                # Pruning deleted the index entries of the blocks below the base too.
                raise RpcError(
                    404,
                    "unknown_tx",
                    f"no such transaction in the mempool or in blocks {base}.. (this node "
                    f"pruned the blocks below {base})",
                    details={"base_height": base},
                )
            raise RpcError(404, "unknown_tx", "no such transaction in the chain or mempool")
        block = node.chain.block(proof.height)
        if block is None:
            raise pruned_error(proof.height, node.chain.base_height())
        results = node.chain.tx_results(proof.height) or []
        result = results[proof.index] if proof.index < len(results) else None
        # The result message can say what the transaction did (a break-glass opened, why a
        # read was refused): only the sender's member and auditors read it; others see the code.
        message = None
        if (
            result is not None
            and block is not None
            and await self._may_read_result(request, block.txs[proof.index])
        ):
            message = result.message
        return web.json_response(
            {
                "tx_id": tx_id.hex(),
                "status": "committed",
                "height": proof.height,
                "index": proof.index,
                "result_code": result.code if result else None,
                "result": message,
                "proof": {
                    "total": proof.total,
                    "index": proof.index,
                    "audit_path": [item.hex() for item in proof.audit_path],
                },
                "header": header_json(block) if block else None,
            }
        )

    async def _may_read_result(self, request: web.Request, tx: bytes) -> bool:
        """A signed request by the transaction's sender (any key of its member) or an
        auditor; an unsigned one sees no message (a badly signed one is refused, 401)."""
        if HEADER_KEY not in request.headers:
            return False
        caller = await self.authenticator.authenticate(request)
        if caller.member.role == Role.AUDITOR:
            return True
        sender = queries.member(self._node.chain.state_view(), envelope.sender(tx))
        return sender is not None and sender.member.member_id == caller.member.member_id

    async def latest_block(self, request: web.Request) -> web.Response:
        return self._block_response(self._node.height)

    async def block(self, request: web.Request) -> web.Response:
        height = decimal(request.match_info["height"], MAX_HEIGHT)
        if height is None:
            raise RpcError(400, "bad_height", f"height must be an integer 0..{MAX_HEIGHT}")
        return self._block_response(height)

    async def replication(self, request: web.Request) -> web.Response:
        """Replication as this node sees it (docs/spec/records.md §10). Signed: it names
        records (ids and CIDs), which members learn only through consent; its counts are on
        /metrics for monitoring."""
        caller = await self.authenticator.authenticate(request)
        member = caller.member
        if not (
            member.role == Role.AUDITOR
            or (
                member.role == Role.ADMIN
                and member.organization_id == self._node.config.node.organization_id
            )
        ):
            raise RpcError(
                403, "role_not_permitted", "for admins of this node's organisation and auditors"
            )
        return web.json_response(self._node.replication())

    async def evidence(self, request: web.Request) -> web.Response:
        """Committed and pending misbehaviour evidence (docs/spec/consensus.md §1.4)."""
        report = self._node.evidence()
        return web.json_response(
            {
                "committed": [
                    {**evidence_json(item), "committed_height": height}
                    for height, item in report.committed
                ],
                "pending": [evidence_json(item) for item in report.pending],
            }
        )

    async def validators(self, request: web.Request) -> web.Response:
        """The validator set of a height (known up to the latest height + 2)."""
        height = decimal(request.match_info["height"], MAX_HEIGHT)
        if height is None:
            raise RpcError(400, "bad_height", f"height must be an integer 0..{MAX_HEIGHT}")
        validator_set = self._node.chain.validator_set(height) if height >= 1 else None
        if validator_set is None:
            raise RpcError(404, "unknown_height", f"no validator set known for height {height}")
        return web.json_response(
            {
                "height": height,
                "hash": validator_set.hash.hex(),
                "validators": [
                    {"public_key": validator.public_key.hex(), "power": validator.power}
                    for validator in validator_set
                ],
            }
        )

    async def validator_nonce(self, request: web.Request) -> web.Response:
        """A validator key's nonces, unsigned: a validator is no member (it has no /accounts
        entry) and what it signs, validator updates, is public on the chain anyway. Only keys
        of the current or the next two sets are answered: a member's nonce counts its
        transactions, which /accounts shows to the member, its admins and auditors only."""
        key = hex_argument(request.match_info["validator_key"], 32, "validator key")
        latest = self._node.height
        sets = (self._node.chain.validator_set(latest + offset) for offset in (0, 1, 2))
        if not any(validator_set and key in validator_set for validator_set in sets):
            raise RpcError(
                404,
                "not_a_validator",
                f"{key.hex()[:16]} is in none of the validator sets of heights "
                f"{latest}..{latest + 2}",
            )
        raw = self._node.chain.state_view().get(nonce_key(key))
        committed = int.from_bytes(raw, "big") if raw else 0
        pending = self._node.pending_nonces(key)
        return web.json_response(
            {
                "validator_key": key.hex(),
                "committed_nonce": committed,
                "next_nonce": (pending[1] if pending else committed) + 1,
            }
        )

    def _block_response(self, height: int) -> web.Response:
        base = self._node.chain.base_height()
        if 1 <= height < base:
            raise pruned_error(height, base)
        block = self._node.chain.block(height) if height >= 1 else None
        if block is None and 1 <= height < self._node.chain.base_height():
            raise pruned_error(height, self._node.chain.base_height())  # pruned just now
        if block is None:
            raise RpcError(404, "unknown_block", f"no block at height {height}")
        commit = self._node.chain.commit(height)
        return web.json_response(
            {
                "header": header_json(block),
                "tx_ids": [tx_id.hex() for tx_id in block.tx_ids],
                "commit": {
                    "round": commit.round,
                    "signers": [entry.validator.hex() for entry in commit.signatures],
                }
                if commit
                else None,
            }
        )


def pruned_error(height: int, base_height: int) -> RpcError:
    """410 `height_pruned`: the block existed but this node deleted it (`[storage]
    retain_blocks`); `base_height` says from where it keeps blocks."""
    return RpcError(
        410,
        "height_pruned",
        f"height {height} is pruned on this node: it keeps blocks from height {base_height} on",
        details={"base_height": base_height},
    )
