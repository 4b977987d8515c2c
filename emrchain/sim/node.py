"""One simulated validator: the node's own consensus runtime on virtual time, with a disk.

Everything around the core (signing guard and its order, WAL, restart and re-send,
retransmission, buffering of future heights) is `emrchain.consensus.runtime.ConsensusRuntime`,
the class the node runs (docs/spec/consensus.md §4). This host only carries out its actions on
the simulator's resources:
- the WAL segments and the guard record go to `PersistentStorage`, all that survives a crash;
  an armed crash strikes right after the WAL write of our next signature or right after its
  guard record (the two crash points of §4.2), before anything is sent;
- broadcasts go onto the simulated network, timeouts onto the virtual clock, decided blocks
  into the storage's block list;
- it serves and applies decided blocks with their commit certificates (`verify_commit`) to
  and from peers that are behind or ahead (block sync, simulated: §4.6), choosing whom to ask
  with the node's own policy (`SyncPeers`: claims are hints, requests rotate, time out and
  demote the peer).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from emrchain.consensus.effects import ReportEvidence, ScheduleTimeout
from emrchain.consensus.events import TimeoutFired
from emrchain.consensus.runtime import (
    Action,
    AppendToWal,
    Broadcast,
    CommitBlock,
    ConsensusMessage,
    ConsensusRuntime,
    DiscardWal,
    PeerFault,
    PersistedConsensus,
    Relay,
    ReportPeer,
    RuntimeLimits,
    SaveSigningState,
    SignedProposal,
)
from emrchain.consensus.signing_guard import SigningState
from emrchain.consensus.state_machine import TendermintCore
from emrchain.consensus.sync_peers import SyncPeers
from emrchain.consensus.wal import segment_header
from emrchain.crypto.keys import Ed25519Signer
from emrchain.sim.application import (
    block_height,
    block_id_of,
    block_time,
    is_valid_block,
    make_block,
)
from emrchain.sim.messages import (
    Message,
    ProposalMessage,
    StatusMessage,
    SyncRequest,
    SyncResponse,
    VoteMessage,
)
from emrchain.sim.scenario import CrashPoint
from emrchain.types.commit import CommitCertificate
from emrchain.types.vote import Vote

if TYPE_CHECKING:
    from collections.abc import Callable

    from emrchain.sim.simulation import Simulation

SYNC_INTERVAL_MS = 400
SIM_MAX_FUTURE_MESSAGES = 96
"""Messages kept per source for heights 2..4 above (`RuntimeLimits.max_future_messages`)."""
SYNC_BATCH = 8
SYNC_REQUEST_TIMEOUT_TICKS = 2
"""A pull unanswered for this many ticks (gossip intervals) is given up, its peer demoted."""
SYNC_DEMOTION_TICKS = 10
"""Ticks a demoted peer's claimed heights are ignored."""
SYNC_WINDOW_BLOCKS = 3
"""Heights pulled at once (the node's `sync_window_blocks`): each pull is answered with a push
of up to SYNC_BATCH blocks from its height, so a small window already spreads pulls over peers."""
SYNC_MAX_REQUESTS_PER_PEER = 1
"""Pulls in flight to one peer (the node's `sync_max_requests_per_peer`)."""
RESTART_COUNTERS = (
    "refused_signatures",
    "resent_after_restart",
    "earlier_signatures_kept",
)
"""`ConsensusRuntime` counters a simulation reports per run (`SimulationResult.restart_path`)."""


class CrashNow(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised while carrying out actions to crash the node exactly there."""


@dataclass
class PersistentStorage:
    """What a node keeps across a crash: its disk."""

    signing_state: bytes | None = None
    blocks: dict[int, tuple[bytes, CommitCertificate]] = field(default_factory=dict)
    wal: dict[int, bytearray] = field(default_factory=dict)
    """WAL segments by height, byte for byte what a node writes to its segment files."""

    @property
    def decided_height(self) -> int:
        return len(self.blocks)


class SimulatedBlocks:
    """`BlockRules` over the simulated application's payloads (`sim/application.py`). With
    `node`, blocks are dated and judged by BFT time on the simulation's virtual clock and the
    node's decided blocks; without (unit tests), undated."""

    def __init__(self, proposer: bytes, node: SimNode | None = None) -> None:
        self._proposer = proposer
        self._node = node

    def identify(self, block: bytes) -> tuple[int, bytes]:
        return block_height(block), block_id_of(block)

    def build(self, height: int, round_number: int) -> bytes:
        node = self._node
        if node is None:
            return make_block(height, round_number, self._proposer)
        time_ms = max(node.sim.now, node.previous_time_ms(height) + 1)
        return make_block(height, round_number, self._proposer, time_ms=time_ms)

    def validate(self, height: int, block: bytes) -> bool:
        node = self._node
        if node is None:
            return is_valid_block(block, height)
        return is_valid_block(
            block, height, previous_time_ms=node.previous_time_ms(height), now_ms=node.sim.now
        )

    def encode(self, block: bytes) -> bytes:
        return block

    def decode(self, data: bytes) -> bytes:
        return bytes(data)


class SimNode:
    """A correct validator. `ByzantineNode` replaces its runtime's signing."""

    correct = True

    def __init__(
        self,
        index: int,
        signer: Ed25519Signer,
        simulation: Simulation,
        make_core: Callable[[bytes], TendermintCore],
    ) -> None:
        self.index = index
        self.signer = signer
        self.key = signer.public_key
        self.sim = simulation
        self._make_core = make_core
        self.storage = PersistentStorage()
        self.alive = False
        self.incarnation = 0
        self.crash_point: CrashPoint | None = None
        self.evidence_reported = 0
        self.peer_reports: Counter[PeerFault] = Counter()
        """Faults the runtime reported against peers (a node would score and ban them)."""
        self.restarts = 0
        self.sync_refused = 0
        """Synced blocks refused because their commit did not verify for them."""
        # The restart path's counters over every incarnation: `RESTART_COUNTERS` of the
        # runtimes that crashed, plus the crash points that struck.
        self._earlier_incarnations: Counter[str] = Counter()

    def make_runtime(self) -> ConsensusRuntime[bytes]:
        return ConsensusRuntime(
            self._make_core(self.key),
            self.signer,
            self.sim.chain_id,
            SimulatedBlocks(self.key, self),
            self.sim.verifier,
            self.runtime_limits(),
        )

    def runtime_limits(self) -> RuntimeLimits:
        """The node's defaults, with a future-height budget small enough that a simulated
        flood reaches it (a simulated message is a few hundred bytes)."""
        return RuntimeLimits(max_future_messages=SIM_MAX_FUTURE_MESSAGES)

    # ------------------------------------------------------------------ lifecycle

    def boot(self) -> None:
        """Start (or restart) from `storage` alone."""
        self.alive = True
        self.incarnation += 1
        self.runtime = self.make_runtime()
        self._last_push: dict[int, int] = {}
        self.sync_peers: SyncPeers[int] = SyncPeers(
            SYNC_REQUEST_TIMEOUT_TICKS,
            SYNC_DEMOTION_TICKS,
            self.sim.validators,
            window_blocks=SYNC_WINDOW_BLOCKS,
            max_requests_per_peer=SYNC_MAX_REQUESTS_PER_PEER,
        )
        self._last_tick_height = -1
        storage = self.storage
        persisted = PersistedConsensus(
            storage.signing_state, {height: bytes(data) for height, data in storage.wal.items()}
        )
        self._execute(
            self.runtime.restart(storage.decided_height + 1, self.sim.validator_set, persisted)
        )

    def crash(self) -> None:
        """Lose everything but `storage`."""
        if self.alive:
            for name in RESTART_COUNTERS:
                self._earlier_incarnations[name] += getattr(self.runtime, name)
        self.alive = False
        self.incarnation += 1
        self.crash_point = None

    def restart_counters(self) -> Counter[str]:
        """Over every incarnation: crashes at each signing crash point and `RESTART_COUNTERS`."""
        totals = Counter(self._earlier_incarnations)
        if self.alive:
            for name in RESTART_COUNTERS:
                totals[name] += getattr(self.runtime, name)
        return totals

    def previous_time_ms(self, height: int) -> int:
        """Time of our decided block at `height - 1` (0 before the first)."""
        previous = self.storage.blocks.get(height - 1)
        return block_time(previous[0]) if previous is not None else 0

    @property
    def crashes_after_persist(self) -> int:
        counters = self._earlier_incarnations
        return counters["crashes_after_wal"] + counters["crashes_after_signing_state"]

    @property
    def crash_armed(self) -> bool:
        return self.crash_point is not None

    @property
    def core(self) -> TendermintCore:
        return self.runtime.core

    @property
    def guard(self) -> SigningState:
        return self.runtime.guard

    @property
    def height(self) -> int:
        return self.runtime.height

    # --------------------------------------------------------------------- inputs

    def deliver(self, source: int, message: Message) -> None:
        """A message arrives from the network."""
        if isinstance(message, VoteMessage | ProposalMessage):
            height = message.height
            current = self.runtime.height
            if height < current:
                self._push_blocks(source, height)
                return
            if height > current:
                # Signed by the sender, but only a hint of how far it is: it may be lying.
                self.sync_peers.claim(source, height - 1)
                self._pull_blocks(stalled=True)
            if isinstance(message, VoteMessage):
                self._execute(self.runtime.on_vote(message.vote, message.key, source=source))
            else:
                runtime = self.runtime
                self._execute(runtime.on_proposal(message.proposal, message.payload, source=source))
        elif isinstance(message, StatusMessage):
            if message.height < self.runtime.height:
                self._push_blocks(source, message.height)
            elif message.height > self.runtime.height:
                self.sync_peers.claim(source, message.height - 1)
        elif isinstance(message, SyncRequest):
            self._push_blocks(source, message.from_height, rate_limited=False)
        elif isinstance(message, SyncResponse):
            self._apply_synced(source, message)

    def timeout(self, event: TimeoutFired) -> None:
        self._execute(self.runtime.on_timeout(event))

    def tick(self) -> None:
        """Every gossip interval: the runtime's retransmission and, while our height has not
        changed since the last tick, our height (a peer ahead then pushes us its blocks)."""
        height = self.runtime.height
        self._execute(self.runtime.on_tick())
        stalled = height == self._last_tick_height
        if stalled:
            self.sim.broadcast(self.index, StatusMessage(height))
        self._last_tick_height = height
        self.sync_peers.tick(self.storage.decided_height)
        self._pull_blocks(stalled=stalled)

    # -------------------------------------------------------------- the actions

    def _execute(self, actions: list[Action]) -> None:
        """Carry out `actions` in order; a commit's next height appends its own."""
        pending: deque[Action] = deque(actions)
        while pending:
            action = pending.popleft()
            if isinstance(action, Broadcast):
                self.sim.broadcast(self.index, _wire(action.message))
            elif isinstance(action, Relay):
                self._relay(action)
            elif isinstance(action, AppendToWal):
                self._append_to_wal(action)
            elif isinstance(action, ScheduleTimeout):
                self.sim.schedule_timeout(
                    self, action.duration_ms, TimeoutFired(action.height, action.round, action.step)
                )
            elif isinstance(action, SaveSigningState):
                self._save_signing_state(action)
            elif isinstance(action, CommitBlock):
                self._commit(action.height, action.block, action.commit)
                pending.extend(self.runtime.start_height(action.height + 1, self.sim.validator_set))
            elif isinstance(action, DiscardWal):
                wal = self.storage.wal
                for height in [height for height in wal if height < action.below_height]:
                    del wal[height]
            elif isinstance(action, ReportEvidence):
                self.evidence_reported += 1
                self.sim.checker.on_evidence(self.sim.now, self.index, action.evidence)
            elif isinstance(action, ReportPeer):
                self.peer_reports[action.fault] += 1

    def _relay(self, action: Relay) -> None:
        """A peer's new vote, to every other node but its source (as the node's driver)."""
        message = _wire(action.message)
        for destination in range(self.sim.validators):
            if destination not in (self.index, action.source):
                self.sim.send(self.index, destination, message)

    def _append_to_wal(self, action: AppendToWal) -> None:
        segment = self.storage.wal.get(action.height)
        if segment is None:
            segment = self.storage.wal[action.height] = bytearray(segment_header(action.height))
        segment += action.record
        if action.sync and self.crash_point is CrashPoint.AFTER_WAL:
            self._earlier_incarnations["crashes_after_wal"] += 1
            raise CrashNow

    def _save_signing_state(self, action: SaveSigningState) -> None:
        self.storage.signing_state = action.state.encode()
        signed = action.signed
        checker, now = self.sim.checker, self.sim.now
        if isinstance(signed, Vote):
            checker.on_vote_signed(now, self.index, signed)
        else:
            checker.on_proposal_signed(now, self.index, signed.proposal, signed.block)
        if self.crash_point is CrashPoint.AFTER_SIGNING_STATE:
            self._earlier_incarnations["crashes_after_signing_state"] += 1
            raise CrashNow

    # ----------------------------------------------------------- blocks and sync

    def _commit(self, height: int, payload: bytes, commit: CommitCertificate) -> None:
        """Persist a decided block (before the next height starts)."""
        self.storage.blocks[height] = (payload, commit)
        self.sim.checker.on_decision(self.sim.now, self.index, height, payload, commit)
        self.sim.note_decision()

    def _push_blocks(self, peer: int, from_height: int, *, rate_limited: bool = True) -> None:
        now = self.sim.now
        if rate_limited and now - self._last_push.get(peer, -SYNC_INTERVAL_MS) < SYNC_INTERVAL_MS:
            return
        blocks = self.storage.blocks
        last = min(self.storage.decided_height, max(from_height, 1) + SYNC_BATCH - 1)
        batch = tuple(blocks[height] for height in range(max(from_height, 1), last + 1))
        if batch:
            self._last_push[peer] = now
            self.sim.send(self.index, peer, SyncResponse(batch))

    def _pull_blocks(self, *, stalled: bool) -> None:
        """Send the pulls the shared policy plans: the window above our height, spread over
        the peers ahead (each answered with a push of blocks from its height)."""
        decided = self.storage.decided_height
        for peer, height in self.sync_peers.plan(decided, stalled=stalled):
            self.sim.send(self.index, peer, SyncRequest(height))
            self.sync_peers.requested(peer, height)

    def _apply_synced(self, source: int, response: SyncResponse) -> None:
        """Apply what verifies and extends our chain, asked for or not (pushes from peers
        ahead are how the simulated sync mostly works); a block whose commit does not verify
        demotes its sender and ends the batch."""
        if response.blocks:
            self.sync_peers.answered(source, response.blocks[0][1].height)
        for payload, commit in response.blocks:
            height = self.runtime.height
            if commit.height < height:
                continue
            if commit.height > height:
                return  # a gap: nothing here is for us yet
            block_id = block_id_of(payload)
            if (
                commit.height != height
                or commit.block_id != block_id
                or not is_valid_block(
                    payload, height, previous_time_ms=self.previous_time_ms(height)
                )
                or not self.sim.commit_is_valid(commit, height, block_id)
            ):
                self.sync_refused += 1
                self.sync_peers.demote(source)
                return
            self._commit(height, payload, commit)
            self._execute(self.runtime.start_height(height + 1, self.sim.validator_set))


def _wire(message: ConsensusMessage) -> VoteMessage | ProposalMessage:
    if isinstance(message, SignedProposal):
        return ProposalMessage.of(message.proposal, message.block)
    return VoteMessage.of(message)
