"""Runs the pure consensus core inside the node: effects become I/O, timers become events.

Own signatures follow the guard's order (`docs/spec/consensus.md` §4): authorize against the
persisted signing state → persist it (fsync) → sign → broadcast → feed back to the core.
Messages from peers reach the core only after their signature verified.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from emrchain.consensus import effects as fx
from emrchain.consensus.events import (
    Event,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    ValueToPropose,
    ValueValidated,
    VoteReceived,
)
from emrchain.consensus.signing_guard import (
    DoubleSignError,
    SigningState,
    authorize,
    request_for_proposal,
    request_for_vote,
)
from emrchain.consensus.state_machine import ConsensusState, TendermintCore
from emrchain.crypto.keys import Signer
from emrchain.node.chain import BlockVerdict, Chain
from emrchain.node.messages import Message, ProposalMessage, VoteMessage
from emrchain.store import SigningStateStore
from emrchain.types import Block, CommitCertificate, DuplicateVoteEvidence, Proposal, Vote

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DriverLimits:
    timeout_commit_ms: int
    timeout_commit_reads_ms: int = 0
    """The pause after a commit while the mempool holds an access event: a reader waits for
    that event's block before it is served, so the next height starts after this instead of
    timeout_commit_ms (at most timeout_commit_ms)."""
    max_blocks_per_height: int = 8
    max_evidence_kept: int = 1_000
    max_events_per_dispatch: int = 10_000
    max_own_messages: int = 64
    future_heights: int = 4
    """Proposals and votes up to this many heights above our current one are kept for later,
    beyond the core's window (current and next height)."""
    max_future_messages: int = 2_048
    create_empty_blocks: bool = True
    """False: after timeout_commit, the next height starts only once there is something to
    commit (see `_start_or_wait`); an idle chain then makes no blocks."""


class ConsensusDriver:
    """One validator's consensus loop. All methods run on the node's event loop."""

    def __init__(
        self,
        core: TendermintCore,
        chain: Chain,
        signer: Signer,
        signing_store: SigningStateStore,
        broadcast: Callable[[Message], None],
        limits: DriverLimits,
    ) -> None:
        self._core = core
        self._chain = chain
        self._signer = signer
        self._signing_store = signing_store
        self._broadcast = broadcast
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        saved = signing_store.load()
        self._signing_state = SigningState.decode(saved) if saved else SigningState()
        # height -> block id -> (block, verdict once validated); only current and next height.
        self._blocks: dict[int, dict[bytes, tuple[Block, BlockVerdict | None]]] = {}
        self._timers: list[asyncio.TimerHandle] = []
        self._start_timer: asyncio.TimerHandle | None = None
        self.evidence: deque[DuplicateVoteEvidence] = deque(maxlen=limits.max_evidence_kept)
        # Our own signed messages of the current height. Algorithm 1 assumes every message of
        # a correct process eventually reaches every correct process; a peer that was down or
        # disconnected when we sent them would otherwise wait forever (for example for the
        # 2f+1 precommits that schedule timeoutPrecommit), so the node resends these.
        self._own_messages: deque[Message] = deque(maxlen=limits.max_own_messages)
        # Messages for heights beyond the core's window (a validator that fell behind, e.g.
        # descheduled under load, would otherwise drop them and could only catch up through
        # block sync, one status interval per height, while the others wait for it whenever it
        # is the proposer). Replayed when their height comes into the window; bounded.
        self._future: dict[int, list[ProposalMessage | VoteMessage]] = {}
        self._future_count = 0
        self.future_messages_dropped = 0
        self.refused_signatures = 0
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

    # ------------------------------------------------------------------ lifecycle

    @property
    def height(self) -> int:
        return self._core.height

    def consensus_state(self) -> ConsensusState:
        """Where the core is (height, round, step, lock): what `/status` reports."""
        return self._core.state()

    def start_height(self, height: int) -> None:
        """Enter `height` (the one after our last committed block), resuming our own signing
        position and lock if we crashed in the middle of it."""
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        self._waiting_height = None
        self._pause = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for stale in [known for known in self._blocks if known < height]:
            del self._blocks[stale]
        self._own_messages.clear()
        state = self._signing_state
        locked_round, locked_block_id = state.lock_at(height)
        resume_round = state.round if state.height == height else 0
        self._dispatch(
            StartHeight(
                height,
                self._chain.validator_set(height),
                resume_round,
                locked_round,
                locked_block_id,
            )
        )
        self._replay_future()

    def own_messages(self) -> list[Message]:
        """Our signed proposal and votes of the current height, oldest first (for resending)."""
        return list(self._own_messages)

    def stop(self) -> None:
        self.stopped = True
        for timer in self._timers:
            timer.cancel()
        if self._start_timer is not None:
            self._start_timer.cancel()

    # --------------------------------------------------------------- from the network

    def on_proposal(self, message: ProposalMessage) -> None:
        proposal, block = message.proposal, message.block
        if block.block_id != proposal.block_id or block.height != proposal.height:
            logger.warning("proposal whose block does not match it; dropped")
            return
        if self._keep_for_later(block.height, message):
            return
        if not self._keep_block(block):
            return
        if not proposal.verify(self._chain.chain_id):
            logger.warning("proposal with an invalid signature; dropped")
            return
        self._wake_for(block.height)
        self._dispatch(ProposalReceived(proposal))

    def on_vote(self, message: VoteMessage) -> None:
        vote = message.vote
        if self._keep_for_later(vote.height, message):
            return
        if not self.height <= vote.height <= self.height + 1:
            return
        if not vote.verify(self._chain.chain_id):
            logger.warning("vote with an invalid signature from %s", vote.validator.hex()[:16])
            return
        self._wake_for(vote.height)
        self._dispatch(VoteReceived(vote))

    def _keep_for_later(self, height: int, message: ProposalMessage | VoteMessage) -> bool:
        """Buffer a message for a height above the core's window; True if it was taken (kept
        or dropped for want of room). Signatures are checked when it is replayed."""
        if not self.height + 1 < height <= self.height + self._limits.future_heights:
            return False
        if self._future_count >= self._limits.max_future_messages:
            self.future_messages_dropped += 1
            return True
        self._future.setdefault(height, []).append(message)
        self._future_count += 1
        return True

    def _replay_future(self) -> None:
        """Feed buffered messages whose height is now in the window; forget older ones."""
        for height in sorted(self._future):
            if height > self.height + 1:
                break
            messages = self._future.pop(height)
            self._future_count -= len(messages)
            if height < self.height:
                continue
            for message in messages:
                if isinstance(message, ProposalMessage):
                    self.on_proposal(message)
                else:
                    self.on_vote(message)

    def _keep_block(self, block: Block) -> bool:
        if not self.height <= block.height <= self.height + 1:
            return False
        bucket = self._blocks.setdefault(block.height, {})
        if block.block_id in bucket:
            return True
        if len(bucket) >= self._limits.max_blocks_per_height:
            logger.warning("too many proposed blocks at height %d; dropped", block.height)
            return False
        bucket[block.block_id] = (block, None)
        return True

    # ------------------------------------------------------------------- the loop

    def _dispatch(self, event: Event) -> None:
        """Feed `event` and every event its effects produce, in order (bounded)."""
        if self.stopped:
            return
        pending: deque[Event] = deque([event])
        handled = 0
        while pending:
            handled += 1
            if handled > self._limits.max_events_per_dispatch:
                raise RuntimeError("consensus produced an unbounded chain of events")
            for effect in self._core.step(pending.popleft()):
                follow_up = self._execute(effect)
                if follow_up is not None:
                    pending.append(follow_up)

    def _execute(self, effect: fx.Effect) -> Event | None:
        if isinstance(effect, fx.SignVote):
            signed = self._sign_vote(effect.vote)
            return VoteReceived(signed) if signed else None
        if isinstance(effect, fx.SignProposal):
            signed_proposal = self._sign_proposal(effect.proposal)
            return ProposalReceived(signed_proposal) if signed_proposal else None
        if isinstance(effect, fx.ScheduleTimeout):
            self._schedule(effect)
            return None
        if isinstance(effect, fx.RequestValue):
            block = self._chain.build_block(effect.height, self._signer.public_key)
            bucket = self._blocks.setdefault(block.height, {})
            bucket[block.block_id] = (block, self._chain.own_block_verdict(block))
            return ValueToPropose(effect.height, effect.round, block.block_id)
        if isinstance(effect, fx.ValidateValue):
            return ValueValidated(effect.height, effect.block_id, self._validate(effect))
        if isinstance(effect, fx.Decide):
            self._decide(effect)
            return None
        if isinstance(effect, fx.ReportEvidence):
            logger.warning(
                "equivocation by validator %s at height %d",
                effect.evidence.validator.hex()[:16],
                effect.evidence.height,
            )
            self.evidence.append(effect.evidence)
            return None
        raise TypeError(f"unknown effect {type(effect).__name__}")

    def _validate(self, effect: fx.ValidateValue) -> bool:
        entry = self._blocks.get(effect.height, {}).get(effect.block_id)
        if entry is None or effect.height != self._chain.height + 1:
            return False
        block, verdict = entry
        if verdict is None:
            verdict = self._chain.validate_block(block)
            self._blocks[effect.height][effect.block_id] = (block, verdict)
            if not verdict.valid:
                logger.warning(
                    "block %d from proposer is invalid: %s", block.height, verdict.reason
                )
        return verdict.valid

    def _decide(self, effect: fx.Decide) -> None:
        block, verdict = self._blocks[effect.height][effect.block_id]
        if effect.height != self._chain.height + 1:  # block sync applied it already
            self._schedule_next_height(block_had_txs=True)
            return
        if self._applying is not None:
            raise RuntimeError(f"decided height {effect.height} while a block is still written")
        # Executed now; written in the chain's writer thread while the loop goes on (admission,
        # RPC, votes for the next height, which the core keeps). The next height starts only
        # once the block is durable.
        self._applying = self._loop.create_task(self._apply_decided(block, effect.commit, verdict))

    async def _apply_decided(
        self, block: Block, commit: CommitCertificate, verdict: BlockVerdict | None
    ) -> None:
        try:
            await self._chain.apply_block_pipelined(block, commit, verdict)
        except Exception as error:  # the node's guard halts with the reason
            self._applying = None
            self.guard(_raise, error)
            return
        self._applying = None
        if not self.stopped:
            self._schedule_next_height(block_had_txs=len(block.txs) > 0)

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

    def _schedule(self, effect: fx.ScheduleTimeout) -> None:
        event = TimeoutFired(effect.height, effect.round, effect.step)
        self._timers = [timer for timer in self._timers if not timer.cancelled()]
        self._timers.append(
            self._loop.call_later(effect.duration_ms / 1000, self.guard, self._dispatch, event)
        )

    # ---------------------------------------------------------------- signing

    def _persist_then_sign(self, request: SigningState, message: bytes) -> bytes | None:
        try:
            new_state = authorize(self._signing_state, request)
        except DoubleSignError as error:
            self.refused_signatures += 1
            logger.warning("double-sign guard refused a signature: %s", error)
            return None
        if new_state != self._signing_state:
            self._signing_store.save(new_state.encode())
            self._signing_state = new_state
        return self._signer.sign(message)

    def _send_own(self, message: Message) -> None:
        self._own_messages.append(message)
        self._broadcast(message)

    def _sign_vote(self, vote: Vote) -> Vote | None:
        chain_id = self._chain.chain_id
        signature = self._persist_then_sign(
            request_for_vote(vote, chain_id), vote.signed_message(chain_id)
        )
        if signature is None:
            return None
        signed = Vote(vote.type, vote.height, vote.round, vote.block_id, vote.validator, signature)
        self._send_own(VoteMessage(signed))
        return signed

    def _sign_proposal(self, proposal: Proposal) -> Proposal | None:
        chain_id = self._chain.chain_id
        entry = self._blocks.get(proposal.height, {}).get(proposal.block_id)
        if entry is None:
            logger.error("asked to propose a block we do not hold; skipped")
            return None
        signature = self._persist_then_sign(
            request_for_proposal(proposal, chain_id), proposal.signed_message(chain_id)
        )
        if signature is None:
            return None
        signed = Proposal(
            proposal.height,
            proposal.round,
            proposal.pol_round,
            proposal.block_id,
            proposal.proposer,
            signature,
        )
        self._send_own(ProposalMessage(signed, entry[0]))
        if signed.pol_round >= 0:
            # Locked validators need the polka that justifies a re-proposal (paper line 28).
            for vote in self._core.prevotes_for(signed.pol_round, signed.block_id):
                self._broadcast(VoteMessage(vote))
        return signed


def _raise(error: Exception) -> None:
    """Re-raise `error` inside the node's guard, which halts with its reason."""
    raise error
