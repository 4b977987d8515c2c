"""The node's host of the consensus runtime: actions become I/O, timers become events.

Everything around the core that must behave the same in the node and in the simulator (the
signing guard's order, the WAL, restart and re-send, retransmission, buffering of future
heights) is `emrchain.consensus.runtime.ConsensusRuntime`, which the simulator drives too. This
module carries out its actions with the node's resources: WAL segment files
(`store/consensus_wal.py`), the guard record in LevelDB (`SigningStateStore`, sync writes), P2P
broadcasts, asyncio timers, and the chain (building, validating and applying blocks). It also
owns what only a node does between heights: the commit pause (`timeout_commit_ms`, shorter
while a reader waits for a block) and, with create_empty_blocks = false, waiting for a reason
to start a height.

Test-only fault hook: `EMRCHAIN_UNSAFE_EXIT_AFTER_SIGNING_STATE=height/round/step` (step one of
PROPOSAL, PREVOTE, PRECOMMIT) makes the process exit with status `FAULT_EXIT_STATUS` right after
it persisted the signing state for exactly that position, before sending the message: the
crash point of docs/spec/consensus.md §4.2 that tests/node/test_restart_wal.py kills a real
validator at. A node with it set logs a CRITICAL line at start; a malformed value stops the
node from starting. It is read from the environment only, never from the node's config.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from emrchain import metrics
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
    Warn,
)
from emrchain.consensus.signing_guard import SignedStep, SigningState
from emrchain.consensus.state_machine import ConsensusState, TendermintCore
from emrchain.crypto.keys import Signer
from emrchain.node.chain import BlockVerdict, Chain
from emrchain.node.messages import Message, ProposalMessage, VoteMessage
from emrchain.node.metrics import StepTimer
from emrchain.p2p import Misbehaviour
from emrchain.store import ConsensusWal, SigningStateStore
from emrchain.throttled_log import ThrottledLog
from emrchain.types import Block, Evidence, Proposal, Vote
from emrchain.types.vote import PROPOSAL_BYTES

logger = logging.getLogger(__name__)

FAULT_ENVIRONMENT_VARIABLE = "EMRCHAIN_UNSAFE_EXIT_AFTER_SIGNING_STATE"
FAULT_EXIT_STATUS = 86
PEER_FAULT_MISBEHAVIOUR = {
    PeerFault.INVALID_SIGNATURE: Misbehaviour.INVALID_SIGNATURE,
    PeerFault.WRONG_PROPOSER: Misbehaviour.PROTOCOL_VIOLATION,
    PeerFault.NOT_A_VALIDATOR: Misbehaviour.PROTOCOL_VIOLATION,
    PeerFault.BLOCK_MISMATCH: Misbehaviour.INVALID_BLOCK,
    PeerFault.INVALID_BLOCK: Misbehaviour.INVALID_BLOCK,
    PeerFault.FLOOD: Misbehaviour.FLOOD,
}
"""How the P2P layer scores each fault the runtime reports (docs/spec/consensus.md §4.7)."""
PEER_FAULT_LOG_INTERVAL_S = 5.0
"""At most one log line per fault kind per interval: peers cause these, so they must not be
able to fill the disk."""
WAL_ENTRY_OVERHEAD_BYTES = 1024 * 1024
"""Beyond max_block_bytes, what a WAL entry of a proposal may hold (header, commit, evidence;
the block decoder's own allowance)."""


@dataclass(frozen=True, slots=True)
class DriverLimits:
    timeout_commit_ms: int
    timeout_commit_reads_ms: int = 0
    """The pause after a commit while the mempool holds an access event: a reader waits for
    that event's block before it is served, so the next height starts after this instead of
    timeout_commit_ms (at most timeout_commit_ms)."""
    max_evidence_kept: int = 1_000
    max_events_per_dispatch: int = 10_000
    max_own_messages: int = 64
    future_heights: int = 4
    """Proposals and votes up to this many heights above our current one are kept for later,
    beyond the core's window (current and next height)."""
    max_future_messages: int = 2_048
    max_future_bytes_per_peer: int = 64 * 1024 * 1024
    proposal_rounds_ahead: int = 2
    max_wal_entries_per_height: int = 4_096
    create_empty_blocks: bool = True
    """False: after timeout_commit, the next height starts only once there is something to
    commit (see `_start_or_wait`); an idle chain then makes no blocks."""

    def runtime_limits(self, max_block_bytes: int) -> RuntimeLimits:
        """The runtime's bounds (`RuntimeLimits`): the fields both classes name, and WAL
        entries as long as a proposal of the largest block."""
        shared: dict[str, Any] = {
            name: getattr(self, name)
            for name in RuntimeLimits.__dataclass_fields__
            if hasattr(self, name)
        }
        max_entry_bytes = 1 + PROPOSAL_BYTES + max_block_bytes + WAL_ENTRY_OVERHEAD_BYTES
        return RuntimeLimits(
            **shared,
            max_wal_entry_bytes=max_entry_bytes,
            max_future_bytes_per_source=self.max_future_bytes_per_peer,
        )


def exit_point_from_environment(
    environment: Mapping[str, str],
) -> tuple[int, int, int] | None:
    """The (height, round, step) of the test-only fault hook, or None if it is not set."""
    value = environment.get(FAULT_ENVIRONMENT_VARIABLE)
    if value is None:
        return None
    try:
        height, round_number, step = value.split("/")
        return (int(height), int(round_number), int(SignedStep[step]))
    except (ValueError, KeyError):
        raise ValueError(
            f"{FAULT_ENVIRONMENT_VARIABLE} must be height/round/step with step PROPOSAL, "
            f"PREVOTE or PRECOMMIT, not {value!r}"
        ) from None


class ChainBlocks:
    """`BlockRules` over the node's chain. Keeps each block's verdict (execution reuses what
    validation computed) and our own block's encoding (the WAL and P2P share it)."""

    def __init__(self, chain: Chain, proposer: bytes) -> None:
        self._chain = chain
        self._proposer = proposer
        # block id -> (height, verdict); pruned when a height starts.
        self._verdicts: dict[bytes, tuple[int, BlockVerdict]] = {}
        self._own_encoding: tuple[bytes, bytes] | None = None
        self._invalid_log = ThrottledLog(logger, PEER_FAULT_LOG_INTERVAL_S)

    def identify(self, block: Block) -> tuple[int, bytes]:
        return block.height, block.block_id

    def build(self, height: int, round_number: int) -> Block:
        block = self._chain.build_block(height, self._proposer)
        self._verdicts[block.block_id] = (height, self._chain.own_block_verdict(block))
        return block

    def validate(self, height: int, block: Block) -> bool:
        if height != self._chain.height + 1:
            return False
        known = self._verdicts.get(block.block_id)
        if known is not None:
            return known[1].valid
        verdict = self._chain.validate_block(block)
        if not verdict.may_become_valid:
            self._verdicts[block.block_id] = (height, verdict)
        if not verdict.valid:
            self._invalid_log.warning(
                "block %d from proposer is invalid: %s", height, verdict.reason
            )
        return verdict.valid

    def verdict(self, block_id: bytes) -> BlockVerdict | None:
        known = self._verdicts.get(block_id)
        return known[1] if known is not None else None

    def encode(self, block: Block) -> bytes:
        block_id = block.block_id
        if self._own_encoding is not None and self._own_encoding[0] == block_id:
            return self._own_encoding[1]
        encoded = block.encode()
        self._own_encoding = (block_id, encoded)
        return encoded

    def decode(self, data: bytes) -> Block:
        return Block.decode(data, self._chain.store.limits)

    def forget_below(self, height: int) -> None:
        for block_id in [key for key, (known, _) in self._verdicts.items() if known < height]:
            del self._verdicts[block_id]


class ChainVerifier:
    """Signature checks of consensus messages on the node's chain id."""

    def __init__(self, chain_id: bytes) -> None:
        self._chain_id = chain_id

    def vote(self, vote: Vote) -> bool:
        return vote.verify(self._chain_id)

    def proposal(self, proposal: Proposal) -> bool:
        return proposal.verify(self._chain_id)


class ConsensusDriver:
    """One validator's consensus loop. All methods run on the node's event loop."""

    def __init__(
        self,
        core: TendermintCore,
        chain: Chain,
        signer: Signer,
        signing_store: SigningStateStore,
        wal: ConsensusWal,
        broadcast: Callable[[Message], None],
        relay: Callable[[Message, object], None],
        limits: DriverLimits,
        environment: Mapping[str, str] = os.environ,
        report_peer: Callable[[str, Misbehaviour], object] | None = None,
    ) -> None:
        """`report_peer(peer id, kind)`: where faults of a peer go
        (`PeerManager.report_misbehaviour`); None: only logged."""
        self._core = core
        self._chain = chain
        self._signing_store = signing_store
        self._wal = wal
        self._broadcast = broadcast
        self._relay = relay
        """Send a message to every peer but the one given (its source; None: every peer)."""
        self._limits = limits
        self._report_peer = report_peer
        self._fault_logs = {
            fault: ThrottledLog(logger, PEER_FAULT_LOG_INTERVAL_S) for fault in PeerFault
        }
        self._loop = asyncio.get_running_loop()
        self._blocks = ChainBlocks(chain, signer.public_key)
        self.runtime = ConsensusRuntime(
            core,
            signer,
            chain.chain_id,
            self._blocks,
            ChainVerifier(chain.chain_id),
            limits.runtime_limits(chain.store.limits.max_block_bytes),
        )
        self._exit_point = exit_point_from_environment(environment)
        if self._exit_point is not None:
            logger.critical(
                "TEST FAULT HOOK ARMED (%s): this process exits right after persisting the "
                "signing state at %s; never set it outside tests",
                FAULT_ENVIRONMENT_VARIABLE,
                environment[FAULT_ENVIRONMENT_VARIABLE],
            )
        self._timers: list[asyncio.TimerHandle] = []
        self._start_timer: asyncio.TimerHandle | None = None
        self.evidence: deque[Evidence] = deque(maxlen=limits.max_evidence_kept)
        self.evidence_listeners: list[Callable[[Evidence], None]] = []
        """Called with each equivocation the runtime reports (the node's evidence pool)."""
        self.stopped = False
        self._applying: asyncio.Task[None] | None = None
        # The height we would start if there were transactions (create_empty_blocks = false).
        self._waiting_height: int | None = None
        # While the commit pause runs: (height it starts, last block had txs, loop time the
        # pause began), so that a read arriving meanwhile can cut it short.
        self._pause: tuple[int, bool, float] | None = None
        # Timer callbacks run through this, so the node can halt on an unexpected exception
        # instead of losing a timer silently (the node sets it to its own guard).
        self.guard: Callable[..., None] = lambda function, *arguments: function(*arguments)
        self._step_timer = StepTimer()

    # ------------------------------------------------------------------ lifecycle

    @property
    def height(self) -> int:
        return self._core.height

    @property
    def refused_signatures(self) -> int:
        return self.runtime.refused_signatures

    def resume(self, height: int) -> None:
        """Join consensus at `height` (the one after our last committed block) from the
        persisted signing state and WAL: resume our round and lock, replay, re-send."""
        runtime_limits = self.runtime.limits
        persisted = PersistedConsensus(
            self._signing_store.load(),
            self._wal.load(
                runtime_limits.max_wal_entry_bytes, runtime_limits.max_wal_entries_per_height
            ),
        )
        chain = self._chain
        self._execute(
            self.runtime.restart(
                height, chain.validator_set(height), persisted, chain.validator_set(height + 1)
            )
        )
        if self.runtime.resent_after_restart:
            logger.info(
                "resumed height %d: re-sent %d messages signed before the restart",
                height,
                self.runtime.resent_after_restart,
            )

    def consensus_state(self) -> ConsensusState:
        """Where the core is (height, round, step, lock): what `/status` reports."""
        return self._core.state()

    def start_height(self, height: int) -> None:
        """Enter `height` after the block before it is durable (decided or synced)."""
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        self._waiting_height = None
        self._pause = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._blocks.forget_below(height)
        chain = self._chain
        self._execute(
            self.runtime.start_height(
                height, chain.validator_set(height), chain.validator_set(height + 1)
            )
        )

    def own_messages(self) -> list[Message]:
        """Our signed proposal and votes of the current height, oldest first (for resending)."""
        return [self._wire(message) for message in self.runtime.own_messages()]

    def tick(self) -> None:
        """Every status interval: the runtime re-sends our messages if the height is stuck."""
        self._execute(self.runtime.on_tick())

    def stop(self) -> None:
        self.stopped = True
        for timer in self._timers:
            timer.cancel()
        if self._start_timer is not None:
            self._start_timer.cancel()
        self._wal.close()

    # --------------------------------------------------------------- from the network

    def on_proposal(self, message: ProposalMessage, source: str | None = None) -> None:
        if not self.stopped:
            self._execute(
                self.runtime.on_proposal(
                    message.proposal, message.block, message.block_bytes, source=source
                )
            )

    def on_vote(self, message: VoteMessage, source: str | None = None) -> None:
        """`source`: the peer id it came from (a new vote is relayed to every other peer)."""
        if not self.stopped:
            self._execute(self.runtime.on_vote(message.vote, message.encoded, source=source))

    # ------------------------------------------------------------------- the actions

    def _execute(self, actions: list[Action]) -> None:
        """Carry out the runtime's actions in order, each complete before the next."""
        wake = False
        for action in actions:
            if isinstance(action, Broadcast):
                self._broadcast(self._wire(action.message))
            elif isinstance(action, Relay):
                self._relay(VoteMessage(action.message), action.source)
            elif isinstance(action, AppendToWal):
                self._wal.append(action.height, action.record, sync=action.sync)
                # A verified message for the height we wait at: a validator that holds
                # transactions started it, and waiting would hold up its quorum.
                wake = wake or action.height == self._waiting_height
            elif isinstance(action, SaveSigningState):
                self._signing_store.save(action.state.encode())
                self._exit_if_armed(action.state)
            elif isinstance(action, ScheduleTimeout):
                self._schedule(action)
            elif isinstance(action, CommitBlock):
                self._decide(action)
            elif isinstance(action, DiscardWal):
                self._wal.discard_below(action.below_height)
            elif isinstance(action, ReportEvidence):
                self._report(action.evidence)
            elif isinstance(action, ReportPeer):
                self._on_peer_fault(action)
            elif isinstance(action, Warn):
                logger.warning("%s", action.text)
        if wake and self._waiting_height is not None:
            self._wake_for(self._waiting_height)
        core = self._core
        self._step_timer.update(core.height, core.round, core.round_step, self._loop.time())

    def _on_peer_fault(self, report: ReportPeer) -> None:
        """Score the peer (it may be banned and disconnected) and log, rate-limited."""
        peer = report.source if isinstance(report.source, str) else None
        self._fault_logs[report.fault].warning(
            "consensus: %s from peer %s (%s); dropped",
            report.fault.value,
            peer[:16] if peer else "-",
            report.detail,
        )
        if peer is not None and self._report_peer is not None:
            self._report_peer(peer, PEER_FAULT_MISBEHAVIOUR[report.fault])

    def _wire(self, message: ConsensusMessage) -> Message:
        if isinstance(message, SignedProposal):
            block = message.block
            return ProposalMessage(message.proposal, block, self._blocks.encode(block))
        return VoteMessage(message)

    def _exit_if_armed(self, state: SigningState) -> None:
        """The test-only fault hook (module docstring): die between persisting and sending."""
        if self._exit_point is not None and state.position == self._exit_point:
            logger.critical(
                "TEST FAULT HOOK: exiting after persisting the signing state at height %d "
                "round %d step %s, before sending",
                state.height,
                state.round,
                state.step.name,
            )
            logging.shutdown()
            os._exit(FAULT_EXIT_STATUS)

    def _report(self, evidence: Evidence) -> None:
        logger.warning(
            "equivocation by validator %s at height %d",
            evidence.validator.hex()[:16],
            evidence.height,
        )
        self.evidence.append(evidence)
        metrics.EVIDENCE_DETECTED.inc()
        for listener in self.evidence_listeners:
            listener(evidence)

    def _decide(self, action: CommitBlock) -> None:
        block = action.block
        if self._applying is not None:
            raise RuntimeError(f"decided height {action.height} while a block is still written")
        # The chain claims the height now, before any await: a block-sync response handled
        # before the write starts finds it taken. Executed and written in the chain's writer
        # thread while the loop goes on (admission, RPC, votes for the next height, which the
        # core keeps). The next height starts only once the block is durable.
        verdict = self._blocks.verdict(block.block_id)
        write = self._chain.apply_block_pipelined(block, action.commit, verdict)
        self._applying = self._loop.create_task(self._apply_decided(write, block))

    async def _apply_decided(self, write: Coroutine[None, None, bool], block: Block) -> None:
        try:
            applied = await write
        except Exception as error:  # the node's guard halts with the reason
            self._applying = None
            self.guard(_raise, error)
            return
        self._applying = None
        if self.stopped:
            return
        if applied:
            self._schedule_next_height(block_had_txs=len(block.txs) > 0)
        elif self._core.height <= block.height:
            # Block sync applied this very block first (the chain checked it is the same one)
            # and our height did not move on with it: move on now.
            self._schedule_next_height(block_had_txs=True)

    def _schedule_next_height(self, *, block_had_txs: bool) -> None:
        height, began = self._chain.height + 1, self._loop.time()
        self._pause = (height, block_had_txs, began)
        self._start_after(self._commit_pause_ms() / 1000, height, block_had_txs)

    def _commit_pause_ms(self) -> int:
        """timeout_commit, or the shorter pause while a reader waits for a block."""
        limits = self._limits
        if self._chain.mempool.pending_access_events:
            return min(limits.timeout_commit_reads_ms, limits.timeout_commit_ms)
        return limits.timeout_commit_ms

    def _start_after(self, delay_seconds: float, height: int, block_had_txs: bool) -> None:
        if self._start_timer is not None:
            self._start_timer.cancel()
        self._start_timer = self._loop.call_later(
            delay_seconds, self.guard, self._start_or_wait, height, block_had_txs
        )

    def _hurry_for_reads(self) -> None:
        """An access event arrived during the commit pause: end the pause at the reads' pause
        from its start (at once if that has passed). Only the start of the next height moves;
        what any step signs or accepts does not."""
        if self._pause is None or self._start_timer is None:
            return
        height, block_had_txs, began = self._pause
        pause_ms = self._commit_pause_ms()
        if pause_ms < self._limits.timeout_commit_ms:
            remaining = began + pause_ms / 1000 - self._loop.time()
            self._start_after(max(0.0, remaining), height, block_had_txs)

    def _start_or_wait(self, height: int, block_had_txs: bool) -> None:
        """Start `height`, or with create_empty_blocks = false wait for a reason to: a
        transaction in our mempool (`txs_available`), or a peer's proposal or vote for it (a
        validator that holds transactions started it, and waiting would hold up its quorum).
        A block with transactions is always followed by one more block, which carries the app
        hash of their execution in its header, so that the validators compare it now and not
        at the next burst of activity (as CometBFT's "proof block")."""
        self._start_timer = None
        self._pause = None
        if self._limits.create_empty_blocks or block_had_txs or len(self._chain.mempool) > 0:
            self.start_height(height)
            return
        self._waiting_height = height
        logger.info("height %d waits for transactions (create_empty_blocks = false)", height)

    def txs_available(self) -> None:
        """The mempool admitted transactions: start the height we wait at, if any, or cut the
        commit pause short if a reader now waits for a block. Deferred to its own loop
        callback, because the mempool calls this from inside admission and starting a height
        reaps the mempool for our proposal."""
        if self._waiting_height is not None:
            self._loop.call_soon(self.guard, self._wake_for, self._waiting_height)
        elif self._pause is not None and self._chain.mempool.pending_access_events:
            self._loop.call_soon(self.guard, self._hurry_for_reads)

    def _wake_for(self, height: int) -> None:
        """Start `height` if we are waiting at it (idempotent)."""
        if self._waiting_height == height and not self.stopped:
            self.start_height(height)

    async def wait_applied(self) -> None:
        """Wait for the decided block being written, if any (before the store closes)."""
        if self._applying is not None:
            await asyncio.gather(self._applying, return_exceptions=True)

    def _schedule(self, effect: ScheduleTimeout) -> None:
        event = TimeoutFired(effect.height, effect.round, effect.step)
        self._timers = [timer for timer in self._timers if not timer.cancelled()]
        self._timers.append(
            self._loop.call_later(effect.duration_ms / 1000, self.guard, self._on_timeout, event)
        )

    def _on_timeout(self, event: TimeoutFired) -> None:
        if not self.stopped:
            self._execute(self.runtime.on_timeout(event))


def _raise(error: Exception) -> None:
    """Re-raise `error` inside the node's guard, which halts with its reason."""
    raise error
