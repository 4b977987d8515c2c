"""The node as its RPC sees it: what the routes read and ask of it, and nothing more.

The RPC package never imports the node. `emrchain/node/rpc_view.py` adapts a running node to
`NodeView`, and the server, the block and patient streams and the record routes take that.
Committed blocks, certificates, results, proofs and state are read through `ChainReader` (the
block store has exactly these methods); `/status` is one `NodeStatus` snapshot that the node
assembles from its own parts, so no route reaches into the consensus driver, the mempool or
the peer manager.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from emrchain.state.result import TxResult
from emrchain.types import Block

if TYPE_CHECKING:
    from emrchain.analytics.worker import Contribution
    from emrchain.config.node import NodeConfig
    from emrchain.mempool import Admission, MempoolStats
    from emrchain.p2p.stats import P2PStats, PeerStanding
    from emrchain.records.service import RecordService
    from emrchain.rpc.commit_waits import CommitWaits
    from emrchain.state.view import CommittedState
    from emrchain.store.block_store import TxProof
    from emrchain.store.database import ChainDatabase
    from emrchain.types import CommitCertificate, Evidence, ValidatorSet

CommitListener = Callable[[Block, Sequence[bytes], list[TxResult]], None]
"""Called on the event loop after each block is durably committed: the block, its tx ids and
its results, in order."""


class ChainReader(Protocol):
    """Reads of the committed chain."""

    def state_view(self) -> CommittedState: ...

    def block(self, height: int) -> Block | None: ...

    def commit(self, height: int) -> CommitCertificate | None: ...

    def tx_results(self, height: int) -> list[TxResult] | None: ...

    def tx_proof(self, tx_id: bytes) -> TxProof | None: ...

    def validator_set(self, height: int) -> ValidatorSet | None: ...

    @property
    def database(self) -> ChainDatabase:
        """The database under the committed state, for bounded prefix scans (`state_scan.py`)."""
        ...

    def base_height(self) -> int:
        """The lowest height whose block is kept (above a state-sync snapshot, or pruning)."""
        ...


@dataclass(frozen=True, slots=True)
class EvidenceReport:
    """`GET /evidence`: misbehaviour evidence committed (with the height of the block that
    carried it) and waiting in this node's pool."""

    committed: list[tuple[int, Evidence]]
    pending: list[Evidence]


@dataclass(frozen=True, slots=True)
class ConsensusPosition:
    height: int
    round: int
    step: str


@dataclass(frozen=True, slots=True)
class NodeCounters:
    """Totals since the node started, beyond the mempool's: where admission work went and how
    often the store's read shortcuts answered (0 when configured off)."""

    preverified_txs: int
    gossip_batches_dropped: int
    undecodable_messages: int
    state_cache_hits: int
    state_cache_misses: int
    state_cache_entries: int
    absence_filter_keys: int


@dataclass(frozen=True, slots=True)
class SyncCounters:
    """Block sync since the node started (`/status` "sync", docs/spec/consensus.md §4.6)."""

    blocks_by_peer: dict[str, int]
    """Blocks applied from each peer's responses."""
    requests_by_peer: dict[str, int]
    """Block requests sent to each peer."""
    requests_in_flight: int
    buffered_blocks: int
    """Blocks received ahead of the next height, waiting for the gap below them."""
    buffered_bytes: int
    timeouts: int
    responses_refused: int
    pruned_answers: int = 0
    """Requests peers answered `BlockPruned` (below their base; asked of another peer)."""


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What `/status` reports of the node beyond its chain id and head."""

    node_id: str
    validator: bytes
    latest_block_id: bytes | None
    """None before the first block."""
    latest_app_hash: bytes
    consensus: ConsensusPosition | None
    """None until consensus has started."""
    peers: list[str]
    p2p: PeerStanding
    """Strikes of the connected peers, bans in force (docs/spec/p2p.md §5.2)."""
    evidence: list[bytes]
    """Encoded equivocation evidence the node has seen."""
    refused_signatures: int
    blocks_synced: int
    sync: SyncCounters
    mempool: MempoolStats
    counters: NodeCounters


@dataclass(frozen=True, slots=True)
class OperationsSnapshot:
    """What the metrics and readiness endpoints read beyond `NodeStatus` (docs/spec/metrics.md)."""

    validators: int
    """Validators in the set of the next height."""
    peers_needed_for_quorum: int
    """Connected validator peers this node needs so that, with its own vote, more than two
    thirds of the validators can vote (equal voting power assumed, as genesis gives)."""
    best_peer_height: int
    """A height some honest peer reported, if at most f = (validators - 1) // 3 peers lie: the
    (f + 1)-th highest report in good standing (0 before enough reports)."""
    p2p: P2PStats
    evidence_committed: int
    """Evidence items committed on the chain so far."""
    evidence_pending: int
    """Evidence items in this node's pool, waiting for a block."""
    replication_queued: int
    """Pins queued or in progress (0 without replication)."""
    replication_counters: dict[str, int]
    """Pins done, failed, dropped (queue full) and retried since start."""
    erasures_in_flight: int
    """Committed erasures whose blob, cache entry and custody copy are still being deleted."""
    data_bytes: int
    """Bytes of the files in the data directory."""
    disk_free_bytes: int
    disk_total_bytes: int
    replication_rounds: int = 0
    """Reconciliation rounds run since start."""
    replication_under_replicated: int = 0
    """Records with fewer observed copies than their factor, at the last round."""
    replication_missing: int = 0
    """Records this node should pin and had not pinned, at the last round."""
    replication_peers_down: int = 0
    """Configured peer IPFS nodes that did not answer the last round."""
    blob_reads: dict[str, int] = field(default_factory=lambda: {"local": 0, "peer": 0})
    """Blob reads served by the local store, or by a peer's after the local one failed."""
    blob_repairs: dict[str, int] = field(default_factory=lambda: {"repaired": 0, "failed": 0})
    """Corrupt local blobs replaced from a replica, and attempts that failed."""
    reviews_open: int = 0
    """Break-glass and re-enrolment reviews in the chain's queue no auditor closed yet."""
    notifications_delivered: int = 0
    """Review events a webhook answered 2xx, since start."""
    notifications_failed: int = 0
    """Webhook attempts that did not deliver (retried) or were refused for good, since start."""


@dataclass(frozen=True, slots=True)
class DependencyStatus:
    """One configured dependency as a readiness probe found it."""

    name: str
    reachable: bool
    detail: str


class NodeView(Protocol):
    """The narrow interface between a node and the RPC that serves it."""

    @property
    def config(self) -> NodeConfig: ...

    @property
    def chain_id(self) -> bytes: ...

    @property
    def node_public_key(self) -> bytes:
        """The node's P2P key: signed requests name it, so they cannot be replayed elsewhere."""
        ...

    @property
    def height(self) -> int:
        """The last committed height."""
        ...

    @property
    def halt_reason(self) -> str | None: ...

    @property
    def chain(self) -> ChainReader: ...

    @property
    def records(self) -> RecordService: ...

    @property
    def commit_waits(self) -> CommitWaits:
        """Where reads wait for their access event's commit."""
        ...

    @property
    def submit_waits(self) -> CommitWaits:
        """Where `POST /txs?wait=commit` waits (shared: several requests, one transaction)."""
        ...

    def admit(self, txs: list[bytes]) -> Awaitable[list[Admission]]:
        """Admit a client's batch through the admission pipeline (signatures verified off the
        event loop)."""
        ...

    def admit_now(self, txs: Sequence[bytes]) -> list[Admission]:
        """Admit on the event loop, at once (a read's access event)."""
        ...

    def is_pending(self, tx_id: bytes) -> bool: ...

    def pending_nonces(self, sender: bytes) -> tuple[int, int] | None:
        """(committed nonce, highest pending nonce) of `sender`, or None if none is pending."""
        ...

    def add_commit_listener(self, listener: CommitListener) -> None: ...

    def status(self) -> NodeStatus: ...

    def operations(self) -> OperationsSnapshot:
        """Counters for `/metrics` and `/ready`, read at scrape time."""
        ...

    def probe_dependencies(self, timeout_s: float) -> Awaitable[list[DependencyStatus]]:
        """Reach each configured dependency (Redis, IPFS, HSM) now, each within `timeout_s`."""
        ...

    def evidence(self) -> EvidenceReport: ...

    def replication(self) -> dict[str, Any]:
        """The `GET /records/replication` reply (docs/spec/records.md §10)."""
        ...

    def study_contribution(self, study_id: bytes, query_id: bytes) -> Contribution | None:
        """This organisation's computed contribution to a study query (analytics.md §4)."""
        ...
