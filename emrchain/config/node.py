"""The node configuration, `<home>/config/node.toml`: one frozen dataclass per section.

Every key has a default, so an empty file is a valid config. Loading is strict: an unknown
section or key, a value of the wrong type or outside its range, or settings that contradict
each other are refused with a `ConfigError` naming the file and the key. The full reference is
`docs/spec/config.md`; `configs/node.toml` is the same content as a commented example.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from emrchain import schema
from emrchain.config import toml_writer
from emrchain.config.address import Address, PeerAddress
from emrchain.config.errors import ConfigError
from emrchain.config.replication_settings import (
    MAX_REPLICATION_FACTOR,
    FactorsByType,
    IpfsPeers,
)
from emrchain.config.settings import (
    Boolean,
    Choice,
    HomePath,
    Integer,
    ListenAddress,
    Name,
    OptionalHomePath,
    OrganizationUrls,
    PeerList,
    Setting,
    UrlList,
    setting,
    settings_of,
)
from emrchain.types.execution import MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES
from emrchain.types.limits import (
    MAX_BLOCK_BYTES_CEILING,
    MAX_BLOCK_TXS_CEILING,
    MAX_EVIDENCE_PER_BLOCK_CEILING,
    MAX_GOSSIP_TXS,
    MAX_ROUND,
    MAX_VALIDATORS_CEILING,
    Limits,
)

CONFIG_DIR = "config"
NODE_CONFIG_FILE = "config/node.toml"
"""Where the node config lives, relative to the home; the other paths are set inside it."""

MONIKER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
MONIKER_EXPLANATION = "1..64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"

MIB = 1024 * 1024

MAX_FRAME_BYTES_CEILING = 64 * MIB
"""A frame's u32 length prefix could say 4 GiB; a peer may make the node buffer a whole frame
per connection, so frames stay far below that."""

GOSSIP_FRAME_SLACK_BYTES = 64
"""A gossip message is its transactions plus 4 bytes per transaction plus a few header bytes;
this much room is left in the frame for the header and the frame's own overhead."""


@dataclass(frozen=True)
class NodeSection:
    moniker: str = setting(
        "node",
        "Human-readable name of this node, used in logs and as its validator name in genesis.",
        Name(MONIKER_PATTERN, MONIKER_EXPLANATION),
    )
    data_dir: str = setting(
        "data",
        "Chain data and consensus signing state (unsafe-reset-all deletes this directory).",
        HomePath(),
    )
    genesis_file: str = setting("config/genesis.json", "The chain's genesis document.", HomePath())
    organization_id: str = setting(
        "",
        "The organisation (hospital) this node serves records for; empty for none.",
        Name(r"[a-z0-9._-]{0,64}", "0..64 characters of a-z 0-9 . _ -"),
    )


# At least 10 ms, so a value meant in seconds (`5`) fails loudly; at most a day.
_P2P_TIMEOUT = Integer(10, 86_400_000, "milliseconds")


@dataclass(frozen=True)
class P2PSection:
    # setting() is dataclasses.field() with metadata, and Address is frozen (immutable).
    listen_address: Address = setting(  # noqa: RUF009
        Address("0.0.0.0", 26656),
        "Where to accept connections from other validators.",
        ListenAddress(),
    )
    persistent_peers: tuple[PeerAddress, ...] = setting(
        (),
        "Peers to keep connected to, redialled when the connection drops.",
        PeerList(MAX_VALIDATORS_CEILING),
    )
    handshake_timeout_ms: int = setting(
        5_000,
        "A connection that has not completed the authenticated handshake by then is closed.",
        Integer(100, 60_000, "milliseconds"),
    )
    max_frame_bytes: int = setting(
        32 * MIB,
        "Largest message frame accepted or sent; must carry a full block (limits.max_block_bytes). "
        "A peer may make this node buffer one frame per connection.",
        Integer(1_024, MAX_FRAME_BYTES_CEILING, "bytes"),
    )
    send_queue_max_messages: int = setting(
        1_024,
        "Most messages queued for sending to one peer.",
        Integer(1, 1_000_000, "messages"),
    )
    reconnect_initial_ms: int = setting(
        500,
        "First delay before redialling a lost peer; later attempts back off.",
        Integer(10, 600_000, "milliseconds"),
    )
    reconnect_max_ms: int = setting(
        30_000,
        "Longest delay between redials; at least reconnect_initial_ms.",
        Integer(10, 3_600_000, "milliseconds"),
    )
    dial_timeout_ms: int = setting(
        3_000, "A dial that has not connected by then is abandoned.", _P2P_TIMEOUT
    )
    ping_interval_ms: int = setting(
        10_000, "How often a keepalive frame is sent on an idle connection.", _P2P_TIMEOUT
    )
    idle_timeout_ms: int = setting(
        30_000,
        "A peer silent for this long is dropped (how a peer that vanished without closing is "
        "noticed); at least twice ping_interval_ms.",
        _P2P_TIMEOUT,
    )
    close_timeout_ms: int = setting(
        1_000, "How long a closing connection may flush before it is aborted.", _P2P_TIMEOUT
    )
    receive_queue_max_messages: int = setting(
        4_096,
        "Received messages waiting for the node; when full, the node stops reading from its "
        "peers (TCP backpressure).",
        Integer(1, 1_000_000, "messages"),
    )
    max_read_buffer_bytes: int = setting(
        256 * 1024,
        "Read-ahead of one connection's socket beyond the frame being read.",
        Integer(1_024, 1 << 30, "bytes"),
    )
    max_write_buffer_bytes: int = setting(
        MIB,
        "Bytes of frames coalesced into one socket write, and the connection's high-water mark.",
        Integer(1_024, 1 << 30, "bytes"),
    )
    max_pending_handshakes: int = setting(
        16,
        "Inbound connections whose dialer has not authenticated yet; more are closed at once.",
        Integer(2, 10_000, "connections"),
    )
    max_pending_handshakes_per_address: int = setting(
        4,
        "Inbound connections from one source address (an IPv6 /64) not yet authenticated; more "
        "from that address are closed at once. Below max_pending_handshakes, so one address "
        "cannot hold every slot.",
        Integer(1, 10_000, "connections"),
    )
    hello_timeout_ms: int = setting(
        1_000,
        "An inbound connection whose dialer has not sent its hello and a verified authentication "
        "by then is closed, freeing its pre-authentication slot (handshake_timeout_ms applies "
        "instead when it is shorter).",
        Integer(100, 60_000, "milliseconds"),
    )
    misbehaviour_ban_threshold: int = setting(
        10,
        "Reports of one kind of misbehaviour (invalid block, flood, protocol violation, bad sync "
        "response) after which a peer is disconnected and banned; one invalid signature or "
        "equivocation is enough.",
        Integer(1, 1_000_000, "reports"),
    )
    ban_duration_ms: int = setting(
        600_000,
        "How long a banned peer is refused at the handshake and not dialled.",
        Integer(1_000, 7 * 86_400_000, "milliseconds"),
    )
    strike_decay_ms: int = setting(
        60_000,
        "How long one report of a minor misbehaviour (all but an invalid signature or "
        "equivocation) counts towards misbehaviour_ban_threshold: a peer is banned only for "
        "that many reports of one kind within this time, so a slow honest peer that lets a "
        "block-sync request time out now and then is never banned.",
        Integer(1_000, 7 * 86_400_000, "milliseconds"),
    )
    log_interval_ms: int = setting(
        10_000,
        "At most one log line per interval about refused connections and one about "
        "misbehaviour reports (bans are always logged); the next line counts those left out.",
        Integer(0, 3_600_000, "milliseconds"),
    )
    max_dialled_registry_peers: int = setting(
        64,
        "Most peers dialled at the address they advertise on chain (validators' and registered "
        "nodes' entries, docs/spec/p2p.md §4.1), besides persistent_peers; the lowest node ids "
        "are dialled first.",
        Integer(0, 10_000, "peers"),
    )


@dataclass(frozen=True)
class RpcSection:
    listen_address: Address = setting(  # noqa: RUF009
        Address("127.0.0.1", 26657),
        "Where the HTTP API listens; loopback by default (set tls_* to serve HTTPS elsewhere).",
        ListenAddress(),
    )
    max_body_bytes: int = setting(
        8 * MIB,
        "Largest POST /txs body (JSON or binary); at least limits.max_tx_bytes. A larger "
        "declared body is refused (413) before it is read.",
        Integer(1_024, 1 << 30, "bytes"),
    )
    max_other_body_bytes: int = setting(
        4_096,
        "Largest body of every request other than POST /txs and record uploads (GETs and "
        "WebSocket upgrades send none).",
        Integer(0, MIB, "bytes"),
    )
    max_buffered_body_bytes: int = setting(
        256 * MIB,
        "Most request body bytes held in memory at once, all requests together; a body that "
        "does not fit is refused (503 busy, Retry-After). At least max_body_bytes and "
        "[records] max_record_bytes.",
        Integer(1_024, 1 << 40, "bytes"),
    )
    max_batch_txs: int = setting(
        1_000,
        "Most transactions accepted in one POST /txs request.",
        Integer(1, 1_000_000, "transactions"),
    )
    request_timeout_ms: int = setting(
        10_000,
        "A request not answered by then fails with a timeout (503); a client that takes no "
        "reply bytes for this long is disconnected.",
        Integer(100, 600_000, "milliseconds"),
    )
    commit_wait_timeout_ms: int = setting(
        8_000,
        "How long POST /txs?wait=commit waits for the batch's accepted transactions to be "
        "committed; then it answers 504 commit_timeout (they may still commit). Below "
        "request_timeout_ms.",
        Integer(100, 600_000, "milliseconds"),
    )
    max_txs_waiting_for_commit: int = setting(
        10_000,
        "Most transactions that POST /txs?wait=commit requests wait for at once, all requests "
        "together; a request that would exceed it answers 503 with Retry-After before anything "
        "is admitted.",
        Integer(1, 1_000_000, "transactions"),
    )
    shutdown_grace_ms: int = setting(
        200,
        "When the node stops: how long an open request gets to finish (a stream subscription "
        "is closed at once, code 1001, and gets this long for its close handshake) before it "
        "is cancelled, and then again before its connection is cut. The RPC is closed within "
        "about twice this.",
        Integer(0, 60_000, "milliseconds"),
    )
    max_header_bytes: int = setting(
        8_190,
        "Longest request line or header line the HTTP parser accepts (longer: 400).",
        Integer(1_024, 65_536, "bytes"),
    )
    max_headers: int = setting(
        128,
        "Most header lines in one HTTP request (more: 400).",
        Integer(16, 1_024, "header lines"),
    )
    max_stream_subscribers: int = setting(
        16,
        "Most clients subscribed to each WebSocket stream at once (more: 503).",
        Integer(1, 10_000, "subscribers"),
    )
    max_stream_queued_blocks: int = setting(
        256,
        "Most committed blocks queued for one stream subscriber; one that falls further "
        "behind is disconnected (close code 1013).",
        Integer(1, 100_000, "blocks"),
    )
    stream_send_timeout_ms: int = setting(
        10_000,
        "A stream subscriber that does not take a frame within this time is disconnected.",
        Integer(100, 600_000, "milliseconds"),
    )
    max_stream_subscribers_per_address: int = setting(
        4,
        "Most /ws/blocks subscriptions from one client address (more: 429); at most "
        "max_stream_subscribers.",
        Integer(1, 10_000, "subscribers"),
    )
    max_stream_subscribers_per_member: int = setting(
        4,
        "Most /ws/patients subscriptions of one member (more: 429); at most "
        "max_stream_subscribers.",
        Integer(1, 10_000, "subscribers"),
    )
    page_limit_default: int = setting(
        100,
        "Items one page of a listing returns when the request names no ?limit= (a patient's "
        "records, consents, access events); at most page_limit_max.",
        Integer(1, 4_096, "items"),
    )
    page_limit_max: int = setting(
        1_000,
        "Most items one page of a listing returns (?limit= above it: 400 bad_limit); older "
        "pages are reached with the reply's next cursor, back to the first item ever.",
        Integer(1, 4_096, "items"),
    )
    max_connections: int = setting(
        1_024,
        "Most open client connections, HTTP and WebSocket; one more is answered 503 and "
        "closed. The node raises its open-file limit to fit these and its own files, and "
        "refuses to start if the hard limit is lower.",
        Integer(1, 1_000_000, "connections"),
    )
    max_connections_per_address: int = setting(
        128,
        "Most open connections from one client address (an IPv6 /64 is one address); one "
        "more is answered 429 and closed. At most max_connections.",
        Integer(1, 1_000_000, "connections"),
    )
    listen_backlog: int = setting(
        128,
        "Connections the kernel queues before the node accepts them.",
        Integer(1, 65_535, "connections"),
    )
    header_timeout_ms: int = setting(
        5_000,
        "A new connection (TLS handshake included) that has not sent its first request's "
        "headers within this time is closed.",
        Integer(100, 600_000, "milliseconds"),
    )
    idle_timeout_ms: int = setting(
        15_000,
        "A connection that has not sent the next request's headers within this time of the "
        "last reply is closed.",
        Integer(100, 3_600_000, "milliseconds"),
    )
    address_requests_per_second: int = setting(
        1_000,
        "Sustained requests per second from one client address on unsigned routes, and "
        "failed authentications (more: 429 with Retry-After).",
        Integer(1, 1_000_000, "requests per second"),
    )
    address_request_burst: int = setting(
        2_000,
        "Requests one client address may send at once above its sustained rate.",
        Integer(1, 10_000_000, "requests"),
    )
    member_requests_per_second: int = setting(
        50,
        "Sustained signed requests per second of one member (more: 429 with Retry-After).",
        Integer(1, 1_000_000, "requests per second"),
    )
    member_request_burst: int = setting(
        100,
        "Signed requests one member may send at once above its sustained rate.",
        Integer(1, 10_000_000, "requests"),
    )
    error_log_interval_ms: int = setting(
        10_000,
        "At most one log line per kind of client fault (refused connection, accept error, "
        "malformed request) per interval; the next line counts those left out.",
        Integer(0, 3_600_000, "milliseconds"),
    )
    tls_certificate_file: str = setting(
        "",
        "PEM certificate chain the RPC presents (HTTPS); empty: plain HTTP. Needs tls_key_file.",
        OptionalHomePath(),
    )
    tls_key_file: str = setting(
        "", "PEM private key of tls_certificate_file, mode 0600.", OptionalHomePath()
    )
    tls_client_ca_file: str = setting(
        "",
        "PEM CA certificates: set, every client must present a certificate they signed "
        "(mutual TLS); empty: no client certificate is asked for. Needs tls_certificate_file.",
        OptionalHomePath(),
    )
    fhir_max_count: int = setting(
        100,
        "Most resources one /fhir search returns (its _count is 1..this; the default when "
        "absent).",
        Integer(1, 1_000, "resources"),
    )
    fhir_max_scan: int = setting(
        10_000,
        "Most entries (records, grants, access events) one filtered /fhir search reads from "
        "state; a search that reaches it answers the matches found so far, without a total.",
        Integer(100, 1_000_000, "entries"),
    )


@dataclass(frozen=True)
class ConsensusSection:
    timeout_propose_ms: int = setting(
        3_000,
        "How long to wait for the round's proposal before prevoting nil.",
        Integer(1, 600_000, "milliseconds"),
    )
    timeout_prevote_ms: int = setting(
        1_000,
        "How long to wait for more prevotes after seeing >2/3 of any prevotes.",
        Integer(1, 600_000, "milliseconds"),
    )
    timeout_precommit_ms: int = setting(
        1_000,
        "How long to wait for more precommits after seeing >2/3 of any precommits.",
        Integer(1, 600_000, "milliseconds"),
    )
    timeout_delta_ms: int = setting(
        500,
        "Added to the three timeouts above per round, so slow networks eventually agree.",
        Integer(0, 600_000, "milliseconds"),
    )
    timeout_commit_ms: int = setting(
        1_000,
        "Pause after committing a block before starting the next height.",
        Integer(0, 600_000, "milliseconds"),
    )
    timeout_commit_reads_ms: int = setting(
        10,
        "The pause after a commit instead of timeout_commit_ms while this validator holds an "
        "access event: a reader is served only once its event is committed, so its block "
        "should not wait out timeout_commit_ms. Above timeout_commit_ms it has no effect.",
        Integer(0, 600_000, "milliseconds"),
    )
    create_empty_blocks: bool = setting(
        True,
        "Propose blocks even when the mempool is empty. false: after timeout_commit_ms the next "
        "height starts only when this validator's mempool holds a transaction, a peer's signed "
        "proposal or vote for that height arrives (a validator with transactions started it), "
        "or the last block had transactions (one more block then carries the app hash of their "
        "execution, so the validators compare it at once). An idle chain then makes no blocks, "
        "and its time does not advance; evidence waits for the next block.",
        Boolean(),
    )
    max_round: int = setting(
        1_000,
        "Highest round this node enters or accepts messages for at one height.",
        Integer(1, MAX_ROUND, "rounds"),
    )
    status_interval_ms: int = setting(
        500,
        "How often this node tells its peers its latest block (block sync) and, when its height "
        "has not moved for a whole interval, sends its own messages of that height again.",
        Integer(10, 60_000, "milliseconds"),
    )
    sync_request_timeout_ms: int = setting(
        2_000,
        "A block-sync request unanswered this long (counted in whole status intervals, at least "
        "one) is given up: the peer is demoted and reported, and the next request goes to another "
        "peer.",
        Integer(10, 600_000, "milliseconds"),
    )
    sync_demotion_ms: int = setting(
        30_000,
        "How long block sync ignores the heights a demoted peer claims (one that let a request "
        "time out or answered it wrongly); counted in whole status intervals.",
        Integer(10, 3_600_000, "milliseconds"),
    )
    sync_window_blocks: int = setting(
        32,
        "Block sync fetches ahead: at most this many heights above ours are requested at once "
        "(spread over the peers that have them), and at most this many blocks wait, received "
        "out of order, to be applied in height order.",
        Integer(1, 4_096, "blocks"),
    )
    sync_max_requests_per_peer: int = setting(
        8,
        "Most block-sync requests in flight to one peer, so that the window is spread over "
        "several peers and one slow or lying peer holds few heights.",
        Integer(1, 4_096, "requests"),
    )
    sync_buffer_max_bytes: int = setting(
        64 * MIB,
        "Most bytes of blocks received ahead of the next height and kept until they can be "
        "applied in order; a block that does not fit is asked for again later (the next "
        "height itself is always taken).",
        Integer(1_024, 1 << 34, "bytes"),
    )
    proposal_rounds_ahead: int = setting(
        2,
        "Proposed blocks are kept for rounds up to this many above this node's round (per "
        "round at most two, both signed by the round's proposer); a proposal further ahead is "
        "dropped until its proposer sends it again.",
        Integer(0, 1_000, "rounds"),
    )
    max_clock_drift_ms: int = setting(
        10_000,
        "BFT time: a proposed block is valid only if its time is after the previous block's "
        "and at most this far ahead of this node's clock. Bounds how far apart the "
        "validators' clocks (and how late a proposal) may be; see docs/spec/consensus.md §4.8.",
        Integer(1, 86_400_000, "milliseconds"),
    )
    max_evidence_kept: int = setting(
        1_000,
        "Most evidence items (double votes, conflicting proposals) the evidence pool keeps, "
        "persisted, until a block carries them; the lowest heights go first.",
        Integer(1, 1_000_000, "evidence items"),
    )
    max_events_per_dispatch: int = setting(
        10_000,
        "Most core events handled for one input before the node halts with a bug report (an "
        "event loop that does not settle).",
        Integer(1, 10_000_000, "events"),
    )
    max_own_messages: int = setting(
        64,
        "Most of this validator's own signed messages of the current height kept to send again "
        "to a peer that missed them; at least the proposal, prevote and precommit of one round.",
        Integer(3, 10_000, "messages"),
    )
    future_heights: int = setting(
        4,
        "Proposals and votes up to this many heights above the current one are kept for later "
        "(1: none beyond the next height).",
        Integer(1, 1_000, "heights"),
    )
    max_future_messages: int = setting(
        2_048,
        "Most proposals and votes kept for those future heights from one peer, all heights "
        "together (checked first: signer a validator, signature valid).",
        Integer(0, 1_000_000, "messages"),
    )
    max_future_bytes_per_peer: int = setting(
        64 * MIB,
        "Most bytes of proposals (with their blocks) and votes kept for those future heights "
        "from one peer; beyond it the peer is reported for a flood.",
        Integer(0, 1 << 34, "bytes"),
    )
    max_wal_entries_per_height: int = setting(
        4_096,
        "Most received proposals and votes written to one height's consensus WAL (and replayed "
        "after a restart); beyond it they are still handled, not logged. This validator's own "
        "signed messages are always written.",
        Integer(1, 1_000_000, "messages"),
    )


@dataclass(frozen=True)
class MempoolSection:
    max_txs: int = setting(
        50_000, "Most transactions held in the mempool.", Integer(1, 10_000_000, "transactions")
    )
    max_bytes: int = setting(
        128 * MIB,
        "Most bytes of transactions held in the mempool; at least limits.max_tx_bytes.",
        Integer(schema.ENVELOPE_FIXED_BYTES, 1 << 34, "bytes"),
    )
    max_batch_txs: int = setting(
        1_000,
        "Most transactions admitted in one batch (one call into the core); at most max_txs.",
        Integer(1, 1_000_000, "transactions"),
    )
    max_txs_per_sender: int = setting(
        1_000,
        "Most pending transactions of one sender, so one client cannot fill the pool.",
        Integer(1, 10_000_000, "transactions"),
    )
    recheck_batch_txs: int = setting(
        2_000,
        "Transactions per call of the stateful check when the pool is rechecked after a commit.",
        Integer(1, 1_000_000, "transactions"),
    )
    seen_cache_entries: int = setting(
        200_000,
        "Transaction ids remembered as verified, badly signed or committed, so a transaction "
        "gossiped or submitted again is not verified twice.",
        Integer(1, 100_000_000, "entries"),
    )
    verify_threads: int = setting(
        0,
        "Threads of one batched signature verification; 0 = every core.",
        Integer(0, 256, "threads"),  # 256: the core's own ceiling for verify_transactions
    )
    max_queued_batches: int = setting(
        4,
        "Batches waiting at each admission stage (for verification; verified, for admission). "
        "Small on purpose: one or two batches ahead keep the verifier busy, and a client's batch "
        "never waits behind a long backlog (that wait is latency).",
        Integer(1, 10_000, "batches"),
    )
    gossip_interval_ms: int = setting(
        20,
        "How often pending transactions are sent to each peer.",
        Integer(1, 10_000, "milliseconds"),
    )
    max_gossip_txs: int = setting(
        MAX_GOSSIP_TXS,
        "Most transactions in one gossip message this node sends (a peer decodes at most "
        f"{MAX_GOSSIP_TXS:,}).",
        Integer(1, MAX_GOSSIP_TXS, "transactions"),
    )
    max_gossip_bytes: int = setting(
        4 * MIB,
        "Most transaction bytes in one gossip message; at least limits.max_tx_bytes, and the "
        "message must fit in a [p2p] max_frame_bytes frame.",
        Integer(1_024, 1 << 30, "bytes"),
    )
    max_queued_gossip_batches: int = setting(
        64,
        "Peers' gossip messages waiting for admission; more are dropped (their transactions "
        "stay in their origin's mempool) rather than hold up consensus messages.",
        Integer(1, 100_000, "messages"),
    )
    relay_peer_txs: bool = setting(
        False,
        "Also send peers the transactions received from other peers. Validators are a full mesh, "
        "so a transaction reaches every validator from the node it was submitted to; relaying "
        "sends each one over every link again (measured: 9 transfers per transaction instead "
        "of 3 on a 4-validator devnet).",
        Boolean(),
    )


@dataclass(frozen=True)
class StorageSection:
    backend: str = setting("leveldb", "Database for blocks and state.", Choice(("leveldb",)))
    compression: str = setting(
        "none",
        "Compression of the database's tables. Snappy makes the files ~1.7x smaller but its "
        "compactions took a third of the CPU of a busy 4-validator devnet (BENCHMARKS.md). "
        "Tables written under one setting stay readable under the other, so it can be changed "
        "on an existing home.",
        Choice(("none", "snappy")),
    )
    write_buffer_bytes: int = setting(
        32 * MIB,
        "Size of the database's in-memory write buffer; a larger one means fewer, larger "
        "level-0 tables.",
        Integer(MIB, 1 << 30, "bytes"),
    )
    block_cache_bytes: int = setting(
        64 * MIB,
        "Size of the database's cache of uncompressed table blocks.",
        Integer(MIB, 1 << 40, "bytes"),
    )
    absence_filter_bytes: int = setting(
        16 * MIB,
        "Memory for the filter that answers 'no such record' without a database search when a "
        "new record is anchored (a Bloom filter over the anchored record ids, filled from the "
        "database at start and kept current at each commit; never a wrong answer, only fewer "
        "skipped reads when full: about 16 bits per anchored record keeps ~99.8 % of the misses "
        "off the database). Rounded down to a power of two; 0 turns it off, else at least "
        "1024. Design: emrchain/store/absence.py.",
        Integer(0, 1 << 30, "bytes"),
    )
    state_cache_entries: int = setting(
        65_536,
        "Committed state entries the node keeps in memory across blocks: the entries every "
        "block reads again (its senders' nonce, key index and member entries, its patients' "
        "entries), which otherwise cost a database search per block. Exact: the store drops the "
        "entries a block writes while the block is being written and puts the new values back "
        "once it is durable (emrchain/store/state_cache.py). Emptied when full; 0 turns it off. "
        "About 200 bytes per entry.",
        Integer(0, 100_000_000, "entries"),
    )
    retain_blocks: int = setting(
        0,
        "Blocks to keep: blocks, their commits, results, undo records and tx index entries "
        "below head - retain_blocks + 1 are deleted in the background, unless a reader still "
        "needs them (a state-sync snapshot, a lagging peer, the erasure worker: "
        "docs/spec/pruning.md). RPC answers 410 height_pruned below the kept range. 0 keeps "
        "every block.",
        Integer(0, 1 << 40, "blocks"),
    )
    prune_interval_ms: int = setting(
        10_000,
        "How often the pruner computes the retain height and deletes what lies below it.",
        Integer(100, 86_400_000, "milliseconds"),
    )
    prune_batch_heights: int = setting(
        500,
        "Most heights deleted in one write batch (each batch moves the base atomically, so a "
        "crash leaves the store consistent; smaller batches hold the tx index lock shorter).",
        Integer(1, 100_000, "heights"),
    )
    prune_peer_lag_max_blocks: int = setting(
        10_000,
        "A connected peer syncing from height h keeps blocks from h on, unless it is more than "
        "this far behind the head: one slow or lying peer cannot stop pruning for ever.",
        Integer(0, 1 << 40, "blocks"),
    )
    undo_heights: int = setting(
        4,
        "Heights whose undo record (the state values the block overwrote, written with the "
        "block) is kept, so that `emrchain rollback` can take the node back that many heights "
        "one at a time. 0 writes none (rollback is then refused).",
        Integer(0, 100_000, "heights"),
    )


@dataclass(frozen=True)
class StateSyncSection:
    enable: bool = setting(
        False,
        "A node started on an empty store joins by state sync: it fetches the newest snapshot "
        "more than 2/3 of the validators' voting power vouched for from its peers, checks every "
        "chunk, writes that state and then block-syncs the rest (docs/spec/statesync.md). "
        "Ignored once the store holds a chain.",
        Boolean(),
    )
    snapshot_interval_blocks: int = setting(
        0,
        "Take a state snapshot (in the background, from a consistent database snapshot) at "
        "every height that is a multiple of this, serve it to joining nodes and, as a "
        "validator, vouch for its digest; 0 takes none.",
        Integer(0, 1_000_000_000, "blocks"),
    )
    snapshot_keep: int = setting(
        2,
        "Newest complete snapshots kept on disk; older ones are deleted.",
        Integer(1, 100, "snapshots"),
    )
    chunk_size_bytes: int = setting(
        4 * MIB,
        "Most bytes of state entries in one snapshot chunk (one entry larger than this makes a "
        "chunk of its own); must fit a P2P frame with room to spare.",
        Integer(1_024, 16 * MIB, "bytes"),
    )
    max_chunk_requests_in_flight: int = setting(
        8,
        "Most chunk requests a joining node has outstanding at once, over all peers.",
        Integer(1, 1_024, "requests"),
    )
    max_chunk_requests_per_peer: int = setting(
        4,
        "Most chunk requests a joining node has outstanding at one peer.",
        Integer(1, 1_024, "requests"),
    )
    chunk_request_timeout_ms: int = setting(
        10_000,
        "A chunk request unanswered this long is a strike on the peer and asked of another.",
        Integer(100, 600_000, "milliseconds"),
    )
    discovery_time_ms: int = setting(
        3_000,
        "How long a joining node collects snapshot offers from its peers before choosing one.",
        Integer(100, 600_000, "milliseconds"),
    )
    join_timeout_ms: int = setting(
        600_000,
        "A joining node that has not restored a snapshot by then stops with an error (nothing "
        "is written to its store).",
        Integer(1_000, 86_400_000, "milliseconds"),
    )
    max_chunk_strikes: int = setting(
        3,
        "Bad or late chunks after which a joining node stops asking that peer.",
        Integer(1, 1_000, "strikes"),
    )
    trust_height: int = setting(
        0,
        "With trust_hash: restore only the snapshot of this height, whose block id must be "
        "trust_hash, vouched for by the validator set that block names (instead of trusting the "
        "genesis validator set); 0 trusts the genesis set.",
        Integer(0, (1 << 63) - 1, "height"),
    )
    trust_hash: str = setting(
        "",
        "The block id (64 hex characters) of trust_height, from a source the operator trusts; "
        "empty when trust_height is 0.",
        Name(r"(|[0-9a-f]{64})", "empty or 64 lowercase hex characters"),
    )


@dataclass(frozen=True)
class KeysSection:
    backend: str = setting(
        "file",
        "Where the validator key lives: a key file in the home, or a PKCS#11 HSM (the token, "
        "module and PIN source of [records] hsm_*).",
        Choice(("file", "hsm")),
    )
    hsm_validator_key_label: str = setting(
        "emrchain-validator",
        'Label of the validator\'s Ed25519 key pair in the HSM token (backend = "hsm").',
        Name(r"[A-Za-z0-9._-]{1,32}", "1..32 characters of A-Z a-z 0-9 . _ -"),
    )
    validator_key_file: str = setting(
        "config/validator_key.json",
        "Validator signing key (votes, proposals): JSON with the hex seed, mode 0600.",
        HomePath(),
    )
    node_key_file: str = setting(
        "config/node_key.json",
        "Node key (P2P identity; its public key is the node id): JSON, mode 0600.",
        HomePath(),
    )
    organization_key_file: str = setting(
        "config/organization_key.json",
        "The organisation's X25519 key pair custody wraps are sealed to: JSON, mode 0600.",
        HomePath(),
    )


_ENVIRONMENT_VARIABLE = Name(r"[A-Z_][A-Z0-9_]{0,63}", "an environment variable name")
_HOST_AND_PORT = r"[A-Za-z0-9.\-\[\]:]{1,200}"
# One scheme set per service, so a Redis URL given as the IPFS API (or the reverse) is refused
# at load, not at the first request. Neither may carry a user or password ("@" is not allowed):
# secrets never go in node.toml.
_IPFS_URL = Name(
    rf"https?://{_HOST_AND_PORT}(/[A-Za-z0-9._/-]{{0,200}})?",
    "an http:// or https:// URL of the IPFS node's RPC API, host[:port][/path], without a "
    "user or password (redis:// URLs belong in redis_url)",
)
_ALERTMANAGER_URL = Name(
    rf"(https?://{_HOST_AND_PORT}(/[A-Za-z0-9._/-]{{0,200}})?)?",
    "empty, or an http:// or https:// URL of an Alertmanager, host[:port][/path], without a "
    "user or password",
)
_REDIS_URL = Name(
    rf"rediss?://{_HOST_AND_PORT}(/[0-9]{{1,2}})?|unix:///[A-Za-z0-9._/-]{{1,200}}",
    "a redis://host[:port][/db], rediss://host[:port][/db] (TLS) or unix:///path URL, without "
    "a user or password (see redis_username and redis_password_environment_variable; http:// "
    "URLs belong in ipfs_api_url)",
)


@dataclass(frozen=True)
class RecordsSection:
    blob_backend: str = setting(
        "local",
        "Where ciphertext lives: a local directory, or an IPFS node.",
        Choice(("local", "ipfs")),
    )
    blob_dir: str = setting("data/blobs", "Directory of the local blob store.", HomePath())
    ipfs_api_url: str = setting(
        "http://127.0.0.1:5001", "Kubo-compatible RPC API of this hospital's IPFS node.", _IPFS_URL
    )
    ipfs_timeout_ms: int = setting(
        5_000,
        "Deadline of one IPFS call (reads fail with 503 after it).",
        Integer(100, 600_000, "milliseconds"),
    )
    cache_backend: str = setting(
        "memory",
        "Hot cache of ciphertext: in-process LRU, or Redis.",
        Choice(("memory", "redis")),
    )
    cache_max_bytes: int = setting(
        256 * MIB, "Most ciphertext bytes in the in-process cache.", Integer(1, 1 << 40, "bytes")
    )
    cache_max_entries: int = setting(
        100_000, "Most entries in the in-process cache.", Integer(1, 100_000_000, "entries")
    )
    cache_ttl_ms: int = setting(
        600_000, "How long a cached ciphertext stays.", Integer(1_000, 86_400_000, "milliseconds")
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "Redis for the hot cache (redis://, rediss:// for TLS, or unix:///path).",
        _REDIS_URL,
    )
    redis_username: str = setting(
        "",
        "Redis ACL user to AUTH as; empty for the default user.",
        Name(r"[A-Za-z0-9._-]{0,64}", "0..64 characters of A-Z a-z 0-9 . _ -"),
    )
    redis_password_environment_variable: str = setting(
        "EMRCHAIN_REDIS_PASSWORD",
        "Environment variable holding the Redis password (never in this file); unset or empty "
        "for no AUTH.",
        _ENVIRONMENT_VARIABLE,
    )
    redis_tls_ca_file: str = setting(
        "",
        "PEM CA bundle a rediss:// server's certificate must chain to; empty for the system's.",
        Name(r"(/[A-Za-z0-9._/-]{1,300})?", "empty, or an absolute path"),
    )
    vault_dir: str = setting(
        "data/vault", "LevelDB of custody copies (data keys wrapped by the KEK).", HomePath()
    )
    kek_backend: str = setting(
        "file",
        "Where the key-encryption key lives: a key file, or a PKCS#11 HSM.",
        Choice(("file", "hsm")),
    )
    kek_dir: str = setting("config/kek", "Directory of the file KEK versions.", HomePath())
    hsm_module_path: str = setting(
        "/usr/lib/softhsm/libsofthsm2.so",
        "PKCS#11 module of the HSM.",
        Name(r"/[A-Za-z0-9._/-]{1,300}", "an absolute path"),
    )
    hsm_token_label: str = setting(
        "emrchain", "Label of the HSM token.", Name(r"[A-Za-z0-9._ -]{1,32}", "1..32 characters")
    )
    hsm_pin_environment_variable: str = setting(
        "EMRCHAIN_HSM_PIN",
        "Environment variable holding the HSM user PIN (never in this file).",
        _ENVIRONMENT_VARIABLE,
    )
    hsm_kek_label_prefix: str = setting(
        "emrchain-kek",
        "Label prefix of this node's KEK versions in the token (<prefix>-v<version>).",
        Name(r"[A-Za-z0-9._-]{1,20}", "1..20 characters of A-Z a-z 0-9 . _ -"),
    )
    replicate: str = setting(
        "authored_and_granted",
        "Which records' ciphertext this node pins: its organisation's, or also those granted to "
        "it or its members.",
        Choice(("authored_and_granted", "authored")),
    )
    replication_factor: int = setting(
        2,
        "Copies of each record's ciphertext the network keeps, one per organisation's IPFS "
        "node, placed as docs/spec/records.md section 10 says (fewer organisations: all).",
        Integer(1, MAX_REPLICATION_FACTOR, "copies"),
    )
    replication_factor_by_type: tuple[tuple[str, int], ...] = setting(
        (),
        "Per record type, a replication factor that replaces replication_factor.",
        FactorsByType(),
    )
    replication_interval_ms: int = setting(
        60_000,
        "How often the node reconciles its IPFS pins with the placement the chain implies "
        "(also once at start).",
        Integer(1_000, 86_400_000, "milliseconds"),
    )
    replication_peers: tuple[tuple[str, str], ...] = setting(
        (),
        "Other organisations' IPFS RPC APIs: reads fail over to them, corrupt local blobs are "
        "repaired from them, and their pins are counted as replicas.",
        IpfsPeers(64),
    )
    custodian_rpc_urls: tuple[str, ...] = setting(
        (),
        "RPC base URL of other organisations' nodes, as \"<organization_id>=<url>\": the "
        "custody-set RPC tells clients where each custodian of a record answers "
        "(docs/spec/records.md §9).",
        OrganizationUrls(4_096),
    )
    erasure_receipt_key_file: str = setting(
        "config/admin_key.json",
        "Member identity file of an admin of this node's organisation: the node signs its "
        "erasure receipts with it (docs/spec/records.md §9); empty for none (erasures still "
        "run, the chain just never shows this custodian's confirmation).",
        OptionalHomePath(),
    )
    erasure_retry_initial_ms: int = setting(
        1_000,
        "First wait before an erasure that failed (a store down) is tried again; it doubles "
        "per failure. Also how often the erasure queue is looked at.",
        Integer(10, 600_000, "milliseconds"),
    )
    erasure_retry_max_ms: int = setting(
        60_000,
        "Longest wait between two tries of one erasure, and before an uncommitted erasure "
        "receipt is sent again. At least erasure_retry_initial_ms.",
        Integer(10, 86_400_000, "milliseconds"),
    )
    erasure_batch: int = setting(
        100,
        "Erasure queue entries worked per pass (the queue itself is on disk, in the vault).",
        Integer(1, 10_000, "entries"),
    )
    access_event_timeout_ms: int = setting(
        8_000,
        "How long a read waits for its access event to be committed; the read is served only "
        "once it is, else it answers 504 and is not served. Below [rpc] request_timeout_ms.",
        Integer(100, 600_000, "milliseconds"),
    )
    max_reads_waiting: int = setting(
        1_024,
        "Most reads waiting at once for their access event's commit; more answer 503 with "
        "Retry-After before anything goes on chain.",
        Integer(1, 1_000_000, "reads"),
    )
    max_record_bytes: int = setting(
        64 * MIB, "Largest record ciphertext accepted.", Integer(1, 1 << 32, "bytes")
    )
    max_clock_skew_ms: int = setting(
        30_000,
        "Signed requests older or newer than this are refused (401).",
        Integer(1_000, 3_600_000, "milliseconds"),
    )
    replay_cache_entries: int = setting(
        100_000,
        "Request nonces remembered to refuse replays; when full, requests get 503.",
        Integer(1_000, 10_000_000, "entries"),
    )
    replay_cache_entries_per_member: int = setting(
        5_000,
        "Of those, most held for one member; its next signed request gets 429 with "
        "Retry-After. At most replay_cache_entries.",
        Integer(1, 10_000_000, "entries"),
    )


MAX_WEBHOOKS = 16


@dataclass(frozen=True)
class NotificationsSection:
    webhook_urls: tuple[str, ...] = setting(
        (),
        "Where the node POSTs a signed JSON event for each break-glass and re-enrolment review "
        "opened and each review closed (records.md §12); empty: no notifications.",
        UrlList(MAX_WEBHOOKS),
    )
    secret_file: str = setting(
        "config/notifications.secret",
        "The HMAC-SHA256 key the events are signed with (the whole file's bytes, at least 16); "
        "needed when webhook_urls is set. Give the receivers the same file.",
        HomePath(),
    )
    queue_max_events: int = setting(
        1_000,
        "Events read ahead from committed blocks per destination, awaiting delivery (a block "
        "with more is taken whole).",
        Integer(1, 100_000, "events"),
    )
    timeout_ms: int = setting(
        5_000, "Deadline of one POST, answer included.", Integer(100, 60_000, "milliseconds")
    )
    retry_initial_ms: int = setting(
        500,
        "Wait before the first retry of an undelivered event; doubles per attempt.",
        Integer(10, 600_000, "milliseconds"),
    )
    retry_max_ms: int = setting(
        30_000,
        "Longest wait between retries (a receiver that stays down is retried at this pace, "
        "never given up on); at least retry_initial_ms.",
        Integer(10, 3_600_000, "milliseconds"),
    )


@dataclass(frozen=True)
class InstrumentationSection:
    enabled: bool = setting(
        False,
        "Serve Prometheus metrics (/metrics), /health and /ready on listen_address "
        "(docs/spec/metrics.md).",
        Boolean(),
    )
    listen_address: Address = setting(  # noqa: RUF009
        Address("127.0.0.1", 26660),
        "Where the metrics, health and readiness endpoints listen (plain HTTP, no "
        "authentication: keep it on loopback or an operations network).",
        ListenAddress(),
    )
    heartbeat_interval_ms: int = setting(
        1_000,
        "How often the node's event loop records that it is alive (/health reads it).",
        Integer(10, 60_000, "milliseconds"),
    )
    heartbeat_stale_ms: int = setting(
        10_000,
        "/health answers 503 when the loop's last heartbeat is older than this; at least "
        "twice heartbeat_interval_ms.",
        Integer(20, 600_000, "milliseconds"),
    )
    ready_max_blocks_behind: int = setting(
        2,
        "/ready answers 503 while the best height a peer reported is more than this many blocks "
        "above ours (the node is catching up).",
        Integer(0, 1_000_000, "blocks"),
    )
    dependency_timeout_ms: int = setting(
        1_000,
        "Deadline of one readiness probe of a configured dependency (Redis, IPFS, HSM).",
        Integer(10, 60_000, "milliseconds"),
    )
    alertmanager_url: str = setting(
        "",
        "Base URL of the Alertmanager whose firing alerts the operator console (/console) shows, "
        "read from its /api/v2/alerts within dependency_timeout_ms; empty: the console says "
        "alerts are not configured (docs/console.md).",
        _ALERTMANAGER_URL,
    )
    console_history_blocks: int = setting(
        600,
        "Recent blocks (height, time, transaction count) the node keeps in memory for the "
        "console's block interval and throughput chart; the oldest is dropped first.",
        Integer(10, 100_000, "blocks"),
    )
    console_signing_window: int = setting(
        10,
        "How many of the latest commit certificates the console reads to show which validators "
        "signed; a validator absent from all of them is shown as down.",
        Integer(1, 1_000, "commits"),
    )


@dataclass(frozen=True)
class LogSection:
    level: str = setting(
        "info", "Least severe log level written.", Choice(("debug", "info", "warning", "error"))
    )
    format: str = setting(
        "text",
        "text: one human-readable line per event; json: one JSON object per line, with the "
        "event's height, round, peer and request fields when it has them.",
        Choice(("text", "json")),
    )


_ABSOLUTE_PATH_OR_EMPTY = Name(r"(/[A-Za-z0-9._/-]{1,300})?", "empty, or an absolute path")


@dataclass(frozen=True)
class BackupSection:
    interval_ms: int = setting(
        0,
        "How often the node writes a backup archive on its own (docs/spec/backup.md); 0: never "
        "(`emrchain backup create` still works). Needs directory and recipient.",
        Integer(0, 30 * 86_400_000, "milliseconds"),
    )
    directory: str = setting(
        "",
        "Where scheduled backups are written: an absolute path, best on another disk than the "
        "home (a backup inside the home is lost with it).",
        _ABSOLUTE_PATH_OR_EMPTY,
    )
    recipient: str = setting(
        "",
        "The operator's recovery public key (age X25519, age1...; `emrchain backup keygen` "
        "makes one): archives are encrypted to it; its identity file stays off the node.",
        Name(r"(age1[02-9ac-hj-np-z]{58})?", "empty, or an age X25519 recipient (age1...)"),
    )
    keep: int = setting(
        7,
        "Scheduled backups kept in directory (of this chain); older ones are deleted after "
        "each new one.",
        Integer(1, 10_000, "archives"),
    )


LIMITS_SETTINGS: dict[str, Setting] = {
    "max_tx_bytes": Setting(
        "Largest transaction, envelope included.",
        Integer(schema.ENVELOPE_FIXED_BYTES, schema.TX_MAX_BYTES_LIMIT, "bytes"),
    ),
    "max_block_txs": Setting(
        "Most transactions in one block.", Integer(1, MAX_BLOCK_TXS_CEILING, "transactions")
    ),
    "max_block_bytes": Setting(
        "Most transaction bytes in one block; at least max_tx_bytes.",
        Integer(schema.ENVELOPE_FIXED_BYTES, MAX_BLOCK_BYTES_CEILING, "bytes"),
    ),
    "max_validators": Setting(
        "Most validators in a validator set.", Integer(1, MAX_VALIDATORS_CEILING, "validators")
    ),
    "max_evidence_per_block": Setting(
        "Most misbehaviour evidence items in one block.",
        Integer(0, MAX_EVIDENCE_PER_BLOCK_CEILING, "evidence items"),
    ),
}
"""`[limits]` maps onto `emrchain.types.Limits`, which the types package owns."""


@dataclass(frozen=True)
class AnalyticsSection:
    enabled: bool = setting(
        True,
        "Run the study worker (docs/spec/analytics.md §4): after a committed STUDY_QUERY naming "
        "this node's organisation, compute its local noisy contribution over the opted-in "
        "records it holds in custody and serve it to the study's sponsor.",
        Boolean(),
    )
    max_contributions_kept: int = setting(
        1_024,
        "Contributions kept in the vault for the sponsor to fetch, each until the query's "
        "result is anchored; past it, new queries are not computed (logged).",
        Integer(1, 1_000_000, "contributions"),
    )
    max_queries_waiting: int = setting(
        256,
        "Committed queries waiting for their computation (more are refused and logged; the "
        "sponsor sees no contribution from this organisation).",
        Integer(1, 100_000, "queries"),
    )
    max_records_per_query: int = setting(
        100_000,
        "Custody records one computation decrypts at most (the rest are left out and logged).",
        Integer(1, 100_000_000, "records"),
    )


@dataclass(frozen=True)
class Section:
    """One `[name]` table: the class it builds and the settings it accepts."""

    name: str
    doc: str
    factory: type
    settings: Mapping[str, Setting]


SECTIONS: tuple[Section, ...] = (
    Section(
        "node",
        "This node's identity and where its files are.",
        NodeSection,
        settings_of(NodeSection),
    ),
    Section(
        "p2p", "Authenticated connections between validators.", P2PSection, settings_of(P2PSection)
    ),
    Section("rpc", "The HTTP API for clients.", RpcSection, settings_of(RpcSection)),
    Section(
        "consensus",
        "Tendermint round timeouts and block production.",
        ConsensusSection,
        settings_of(ConsensusSection),
    ),
    Section(
        "mempool",
        "Pending transactions awaiting a block.",
        MempoolSection,
        settings_of(MempoolSection),
    ),
    Section(
        "limits",
        "Decoding limits; must equal the genesis consensus_params.",
        Limits,
        LIMITS_SETTINGS,
    ),
    Section("storage", "Persistent storage.", StorageSection, settings_of(StorageSection)),
    Section(
        "statesync",
        "Snapshots of the state, vouched for by the validators, from which a new node joins.",
        StateSyncSection,
        settings_of(StateSyncSection),
    ),
    Section("keys", "Signing keys.", KeysSection, settings_of(KeysSection)),
    Section(
        "records",
        "Record ciphertext, its cache, custody keys and signed-request checks.",
        RecordsSection,
        settings_of(RecordsSection),
    ),
    Section("log", "Logging.", LogSection, settings_of(LogSection)),
    Section(
        "instrumentation",
        "Prometheus metrics, health and readiness for operators.",
        InstrumentationSection,
        settings_of(InstrumentationSection),
    ),
    Section(
        "backup",
        "Encrypted backups the node writes on a schedule.",
        BackupSection,
        settings_of(BackupSection),
    ),
    Section(
        "notifications",
        "Webhooks told of break-glass reviews opened and closed.",
        NotificationsSection,
        settings_of(NotificationsSection),
    ),
    Section(
        "analytics",
        "The study worker: local differentially private contributions to studies.",
        AnalyticsSection,
        settings_of(AnalyticsSection),
    ),
)
SECTIONS_BY_NAME = {section.name: section for section in SECTIONS}


@dataclass(frozen=True)
class NodeConfig:
    """A validated node configuration; paths in it are relative to `home`."""

    home: Path
    node: NodeSection = field(default_factory=NodeSection)
    p2p: P2PSection = field(default_factory=P2PSection)
    rpc: RpcSection = field(default_factory=RpcSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    limits: Limits = field(default_factory=Limits)
    storage: StorageSection = field(default_factory=StorageSection)
    statesync: StateSyncSection = field(default_factory=StateSyncSection)
    keys: KeysSection = field(default_factory=KeysSection)
    records: RecordsSection = field(default_factory=RecordsSection)
    log: LogSection = field(default_factory=LogSection)
    instrumentation: InstrumentationSection = field(default_factory=InstrumentationSection)
    backup: BackupSection = field(default_factory=BackupSection)
    notifications: NotificationsSection = field(default_factory=NotificationsSection)
    analytics: AnalyticsSection = field(default_factory=AnalyticsSection)

    def resolve(self, relative: str) -> Path:
        """An absolute-or-cwd-relative path for a home-relative config path."""
        return self.home / relative

    @property
    def config_path(self) -> Path:
        return self.resolve(NODE_CONFIG_FILE)

    @property
    def data_path(self) -> Path:
        return self.resolve(self.node.data_dir)

    @property
    def genesis_path(self) -> Path:
        return self.resolve(self.node.genesis_file)

    @property
    def validator_key_path(self) -> Path:
        return self.resolve(self.keys.validator_key_file)

    @property
    def node_key_path(self) -> Path:
        return self.resolve(self.keys.node_key_file)

    @property
    def organization_key_path(self) -> Path:
        return self.resolve(self.keys.organization_key_file)


def node_config_path(home: Path) -> Path:
    return home / NODE_CONFIG_FILE


def load_node_config(home: Path) -> NodeConfig:
    """Read and validate `<home>/config/node.toml`; raise ConfigError naming file and key."""
    path = node_config_path(home)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            str(path),
            None,
            "file not found; is this an emrchain home? (create one with `emrchain init`)",
        ) from None
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), None, f"not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise ConfigError(str(path), None, f"cannot read: {error.strerror}") from None
    return parse_node_config_text(text, home=home, source=str(path))


def parse_node_config_text(text: str, *, home: Path, source: str) -> NodeConfig:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, None, f"invalid TOML: {error}") from None
    return parse_node_config(document, home=home, source=source)


def _suggestion(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _section_holding(key: str) -> str | None:
    for section in SECTIONS:
        if key in section.settings:
            return section.name
    return None


def parse_node_config(document: Mapping[str, Any], *, home: Path, source: str) -> NodeConfig:
    """Build a NodeConfig from a parsed TOML document, refusing anything not declared."""
    built: dict[str, object] = {}
    for name, table in document.items():
        section = SECTIONS_BY_NAME.get(name)
        if section is None:
            if not isinstance(table, dict):
                owner = _section_holding(name)
                hint = f"; it belongs in [{owner}]" if owner else ""
                raise ConfigError(source, name, f"keys must be inside a section{hint}")
            known = ", ".join(f"[{known}]" for known in SECTIONS_BY_NAME)
            raise ConfigError(
                source,
                f"[{name}]",
                f"unknown section{_suggestion(name, list(SECTIONS_BY_NAME))} (known: {known})",
            )
        if not isinstance(table, dict):
            raise ConfigError(source, f"[{name}]", "must be a table ([name] header)")
        built[name] = _parse_section(section, table, source)
    config = NodeConfig(home=home, **built)  # type: ignore[arg-type]
    check_consistency(config, source)
    return config


def _parse_section(section: Section, table: Mapping[str, Any], source: str) -> object:
    values: dict[str, object] = {}
    for key, raw in table.items():
        spec = section.settings.get(key)
        if spec is None:
            hint = _suggestion(key, list(section.settings))
            if not hint and (owner := _section_holding(key)):
                hint = f"; it belongs in [{owner}]"
            raise ConfigError(source, f"[{section.name}] {key}", f"unknown key{hint}")
        try:
            values[key] = spec.kind.parse(raw)
        except ValueError as error:
            raise ConfigError(source, f"[{section.name}] {key}", str(error)) from None
    return section.factory(**values)


def check_consistency(config: NodeConfig, source: str) -> None:
    """Rules across keys; each failure names the key to change."""

    def require(condition: bool, key: str, message: str) -> None:
        if not condition:
            raise ConfigError(source, key, message)

    limits, p2p, rpc, mempool = config.limits, config.p2p, config.rpc, config.mempool
    require(
        limits.max_block_bytes >= limits.max_tx_bytes,
        "[limits] max_block_bytes",
        f"must be at least [limits] max_tx_bytes ({limits.max_tx_bytes}), "
        f"got {limits.max_block_bytes}",
    )
    require(
        p2p.reconnect_max_ms >= p2p.reconnect_initial_ms,
        "[p2p] reconnect_max_ms",
        f"must be at least [p2p] reconnect_initial_ms ({p2p.reconnect_initial_ms}), "
        f"got {p2p.reconnect_max_ms}",
    )
    require(
        p2p.max_pending_handshakes_per_address < p2p.max_pending_handshakes,
        "[p2p] max_pending_handshakes_per_address",
        f"must be below [p2p] max_pending_handshakes ({p2p.max_pending_handshakes}) so one "
        f"address cannot hold every slot, got {p2p.max_pending_handshakes_per_address}",
    )
    require(
        p2p.idle_timeout_ms >= 2 * p2p.ping_interval_ms,
        "[p2p] idle_timeout_ms",
        f"must be at least twice [p2p] ping_interval_ms ({p2p.ping_interval_ms}), so two "
        f"keepalives may be missed, got {p2p.idle_timeout_ms}",
    )
    require(
        p2p.max_frame_bytes >= limits.max_block_bytes,
        "[p2p] max_frame_bytes",
        f"must be at least [limits] max_block_bytes ({limits.max_block_bytes}) so a block "
        f"fits in a frame, got {p2p.max_frame_bytes}",
    )
    require(
        rpc.max_body_bytes >= limits.max_tx_bytes,
        "[rpc] max_body_bytes",
        f"must be at least [limits] max_tx_bytes ({limits.max_tx_bytes}), got {rpc.max_body_bytes}",
    )
    _check_rpc_limits(config, require)
    _check_statesync(config, require)
    require(
        rpc.listen_address != p2p.listen_address,
        "[rpc] listen_address",
        f"must differ from [p2p] listen_address ({p2p.listen_address})",
    )
    require(
        config.records.access_event_timeout_ms < rpc.request_timeout_ms,
        "[records] access_event_timeout_ms",
        f"must be below [rpc] request_timeout_ms ({rpc.request_timeout_ms}) so a read that "
        f"waits for its access event can still answer, got "
        f"{config.records.access_event_timeout_ms}",
    )
    require(
        rpc.commit_wait_timeout_ms < rpc.request_timeout_ms,
        "[rpc] commit_wait_timeout_ms",
        f"must be below [rpc] request_timeout_ms ({rpc.request_timeout_ms}) so a submission "
        f"that waits for its commit can still answer, got {rpc.commit_wait_timeout_ms}",
    )
    require(
        not config.records.redis_tls_ca_file or config.records.redis_url.startswith("rediss://"),
        "[records] redis_tls_ca_file",
        "is only used with a rediss:// redis_url (TLS); empty it or use rediss://",
    )
    _check_instrumentation(config, require)
    require(
        config.backup.interval_ms == 0
        or bool(config.backup.directory and config.backup.recipient),
        "[backup] interval_ms",
        "scheduled backups need [backup] directory and recipient; set both, or interval_ms = 0",
    )
    notifications = config.notifications
    require(
        notifications.retry_initial_ms <= notifications.retry_max_ms,
        "[notifications] retry_max_ms",
        f"must be at least retry_initial_ms ({notifications.retry_initial_ms}), "
        f"got {notifications.retry_max_ms}",
    )
    absence_filter_bytes = config.storage.absence_filter_bytes
    require(
        absence_filter_bytes == 0 or absence_filter_bytes >= 1024,
        "[storage] absence_filter_bytes",
        f"must be 0 (off) or at least 1024, got {absence_filter_bytes}",
    )
    require(
        mempool.max_bytes >= limits.max_tx_bytes,
        "[mempool] max_bytes",
        f"must be at least [limits] max_tx_bytes ({limits.max_tx_bytes}), got {mempool.max_bytes}",
    )
    require(
        mempool.max_batch_txs <= mempool.max_txs,
        "[mempool] max_batch_txs",
        f"must be at most [mempool] max_txs ({mempool.max_txs}), got {mempool.max_batch_txs}",
    )
    require(
        mempool.max_txs_per_sender <= mempool.max_txs,
        "[mempool] max_txs_per_sender",
        f"must be at most [mempool] max_txs ({mempool.max_txs}), got {mempool.max_txs_per_sender}",
    )
    _check_gossip(config, require)
    require(
        config.keys.validator_key_file != config.keys.node_key_file,
        "[keys] node_key_file",
        "must differ from [keys] validator_key_file",
    )
    # unsafe-reset-all deletes data_dir: it must never hold the config or the keys.
    data_dir = PurePosixPath(config.node.data_dir)
    protected = {
        "config file": NODE_CONFIG_FILE,
        "[node] genesis_file": config.node.genesis_file,
        "[keys] validator_key_file": config.keys.validator_key_file,
        "[keys] node_key_file": config.keys.node_key_file,
    }
    for what, path in protected.items():
        require(
            not PurePosixPath(path).is_relative_to(data_dir),
            "[node] data_dir",
            f"{data_dir} would contain the {what} ({path}); the data directory is deleted "
            "by unsafe-reset-all",
        )
    try:
        limits.validate_basic()
    except ValueError as error:  # a guard: the per-key ranges above should already hold
        raise ConfigError(source, "[limits]", str(error)) from None


def _check_instrumentation(config: NodeConfig, require: Callable[[bool, str, str], None]) -> None:
    section = config.instrumentation
    require(
        section.heartbeat_stale_ms >= 2 * section.heartbeat_interval_ms,
        "[instrumentation] heartbeat_stale_ms",
        f"must be at least twice [instrumentation] heartbeat_interval_ms "
        f"({section.heartbeat_interval_ms}), got {section.heartbeat_stale_ms}",
    )
    if section.enabled:
        for other in ("rpc", "p2p"):
            taken = getattr(config, other).listen_address
            require(
                section.listen_address != taken,
                "[instrumentation] listen_address",
                f"must differ from [{other}] listen_address ({taken})",
            )


def _check_gossip(config: NodeConfig, require: Callable[[bool, str, str], None]) -> None:
    """A gossip message holds at least one transaction and fits in one P2P frame."""
    mempool, max_tx_bytes = config.mempool, config.limits.max_tx_bytes
    require(
        mempool.max_gossip_bytes >= max_tx_bytes,
        "[mempool] max_gossip_bytes",
        f"must be at least [limits] max_tx_bytes ({max_tx_bytes}), got {mempool.max_gossip_bytes}",
    )
    largest_message = (
        mempool.max_gossip_bytes + 4 * mempool.max_gossip_txs + GOSSIP_FRAME_SLACK_BYTES
    )
    require(
        largest_message <= config.p2p.max_frame_bytes,
        "[mempool] max_gossip_bytes",
        f"a gossip message of max_gossip_bytes ({mempool.max_gossip_bytes}) plus 4 bytes for "
        f"each of max_gossip_txs ({mempool.max_gossip_txs}) and {GOSSIP_FRAME_SLACK_BYTES} "
        f"bytes of headers must fit in [p2p] max_frame_bytes ({config.p2p.max_frame_bytes})",
    )


STATESYNC_FRAME_SLACK_BYTES = 4_096
"""Room in a P2P frame around one snapshot chunk (message tag, height, index, length)."""


def _check_statesync(config: NodeConfig, require: Callable[[bool, str, str], None]) -> None:
    """With state sync in use, a chunk fits in one P2P frame; the trust options come as a
    pair."""
    statesync = config.statesync
    # A chunk closes before the entry that would take it over chunk_size_bytes, so it holds at
    # most the larger of chunk_size_bytes and one entry (the largest state key and value).
    largest_entry = 6 + MAX_STATE_KEY_BYTES + MAX_STATE_VALUE_BYTES
    largest_chunk = max(statesync.chunk_size_bytes, largest_entry)
    require(
        not (statesync.enable or statesync.snapshot_interval_blocks)
        or largest_chunk + STATESYNC_FRAME_SLACK_BYTES <= config.p2p.max_frame_bytes,
        "[statesync] chunk_size_bytes",
        f"a chunk of up to {largest_chunk} bytes (chunk_size_bytes or one largest state entry) "
        f"plus {STATESYNC_FRAME_SLACK_BYTES} bytes must fit in [p2p] max_frame_bytes "
        f"({config.p2p.max_frame_bytes})",
    )
    require(
        (statesync.trust_height == 0) == (statesync.trust_hash == ""),
        "[statesync] trust_hash",
        "trust_height and trust_hash are set together or not at all",
    )
    require(
        statesync.max_chunk_requests_per_peer <= statesync.max_chunk_requests_in_flight,
        "[statesync] max_chunk_requests_per_peer",
        f"must be at most max_chunk_requests_in_flight "
        f"({statesync.max_chunk_requests_in_flight})",
    )


def _check_rpc_limits(config: NodeConfig, require: Callable[[bool, str, str], None]) -> None:
    """The [rpc] limits that bound one another, and the TLS files that go together."""
    rpc, records = config.rpc, config.records
    largest_body = max(rpc.max_body_bytes, records.max_record_bytes)
    require(
        rpc.max_buffered_body_bytes >= largest_body,
        "[rpc] max_buffered_body_bytes",
        f"must be at least [rpc] max_body_bytes and [records] max_record_bytes "
        f"({largest_body}), got {rpc.max_buffered_body_bytes}",
    )
    require(
        rpc.max_connections_per_address <= rpc.max_connections,
        "[rpc] max_connections_per_address",
        f"must be at most [rpc] max_connections ({rpc.max_connections}), "
        f"got {rpc.max_connections_per_address}",
    )
    require(
        rpc.page_limit_default <= rpc.page_limit_max,
        "[rpc] page_limit_default",
        f"must be at most [rpc] page_limit_max ({rpc.page_limit_max}), "
        f"got {rpc.page_limit_default}",
    )
    for key in ("max_stream_subscribers_per_address", "max_stream_subscribers_per_member"):
        require(
            getattr(rpc, key) <= rpc.max_stream_subscribers,
            f"[rpc] {key}",
            f"must be at most [rpc] max_stream_subscribers ({rpc.max_stream_subscribers}), "
            f"got {getattr(rpc, key)}",
        )
    require(
        records.replay_cache_entries_per_member <= records.replay_cache_entries,
        "[records] replay_cache_entries_per_member",
        f"must be at most [records] replay_cache_entries ({records.replay_cache_entries}), "
        f"got {records.replay_cache_entries_per_member}",
    )
    require(
        bool(rpc.tls_certificate_file) == bool(rpc.tls_key_file),
        "[rpc] tls_key_file",
        "tls_certificate_file and tls_key_file are set together (both, or neither)",
    )
    require(
        not rpc.tls_client_ca_file or bool(rpc.tls_certificate_file),
        "[rpc] tls_client_ca_file",
        "client certificates need TLS: set tls_certificate_file and tls_key_file too",
    )


def config_tables(config: NodeConfig, *, comments: bool = True) -> list[toml_writer.Table]:
    """The config as TOML tables, every key present, each with its doc and allowed values."""
    tables = []
    for section in SECTIONS:
        values = getattr(config, section.name)
        entries = []
        for key, spec in section.settings.items():
            default = getattr(section.factory(), key)
            comment = f"{spec.doc}\n{spec.kind.describe()}; default {_shown(spec, default)}"
            entries.append(
                toml_writer.Entry(
                    key, spec.kind.to_toml(getattr(values, key)), comment if comments else ""
                )
            )
        tables.append(toml_writer.Table(section.name, entries, section.doc if comments else ""))
    return tables


def _shown(spec: Setting, value: object) -> str:
    return toml_writer.format_value(spec.kind.to_toml(value)).replace("\n", " ")


def render_node_config(config: NodeConfig, *, comments: bool = True) -> str:
    """node.toml text for `config`; loading it back yields an equal NodeConfig."""
    header = (
        "# emrchain node configuration. Every key is optional: an absent key takes the default\n"
        "# noted in its comment. Reference: docs/spec/config.md\n\n"
    )
    body = toml_writer.render(config_tables(config, comments=comments))
    return (header if comments else "") + body
