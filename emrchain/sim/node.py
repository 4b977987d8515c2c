"""One simulated validator: the consensus core plus the runtime duties around it.

The harness does what the real runtime must do (docs/spec/consensus.md §4):
- verify signatures at ingress (here: a per-simulation memo, each distinct message once);
- before every signature: `signing_guard.authorize`, persist the returned state, then sign,
  then append the signed message to the WAL, then broadcast, then feed it back to the core;
- keep a WAL of the current height's consensus messages (received and own) and, after a crash,
  resume the core at the last signed round with the recorded lock and replay the WAL;
- re-send its own messages of the height when stalled (the paper assumes eventual delivery
  of every correct message; a lossy network needs retransmission for that), with the polka
  that justifies a re-proposed value;
- serve and apply decided blocks with commit certificates (`verify_commit`) to peers behind.

`PersistentStorage` is all that survives a crash; everything else on the node is rebuilt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from emrchain.consensus.effects import (
    Decide,
    ReportEvidence,
    RequestValue,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    ValidateValue,
)
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
    SignedStep,
    SigningState,
    authorize,
    request_for_proposal,
    request_for_vote,
)
from emrchain.consensus.state_machine import TendermintCore
from emrchain.crypto.keys import Ed25519Signer
from emrchain.sim.application import block_id_of, is_valid_block, make_block
from emrchain.sim.messages import (
    Message,
    ProposalMessage,
    StatusMessage,
    SyncRequest,
    SyncResponse,
    VoteMessage,
)
from emrchain.types.commit import CommitCertificate
from emrchain.types.vote import Proposal, Vote, VoteType

if TYPE_CHECKING:
    from collections.abc import Callable

    from emrchain.sim.simulation import Simulation

SYNC_INTERVAL_MS = 400
SYNC_BATCH = 8
MAX_NEXT_HEIGHT_WAL = 256
MAX_RESENT_OWN_MESSAGES = 60


class CrashNow(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside effect processing to crash the node exactly there."""


@dataclass
class PersistentStorage:
    """What a node keeps across a crash: its disk."""

    signing_state: bytes = field(default_factory=lambda: SigningState().encode())
    blocks: dict[int, tuple[bytes, CommitCertificate]] = field(default_factory=dict)
    wal: list[Message] = field(default_factory=list)
    next_height_wal: list[Message] = field(default_factory=list)

    @property
    def decided_height(self) -> int:
        return len(self.blocks)


class SimNode:
    """A correct validator. `ByzantineNode` overrides the signing hooks."""

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
        self.crash_armed = False
        self.signatures_refused = 0
        self.evidence_reported = 0
        self.restarts = 0
        self.crashes_after_persist = 0

    # ------------------------------------------------------------------ lifecycle

    def boot(self) -> None:
        """Start (or restart) from `storage` alone."""
        self.alive = True
        self.incarnation += 1
        self.core = self._make_core(self.key)
        self.guard = SigningState.decode(self.storage.signing_state)
        self.payloads: dict[bytes, bytes] = {}
        self.seen: set[bytes] = set()
        self.own_messages: list[Message] = []
        self._last_marker: tuple[int, int, int] | None = None
        self._last_pull: dict[int, int] = {}
        self._last_push: dict[int, int] = {}
        height = self.storage.decided_height + 1
        resume_round = self.guard.round if self.guard.height == height else 0
        locked_round, locked_block_id = self.guard.lock_at(height)
        wal = self.storage.wal
        next_wal = self.storage.next_height_wal
        self.storage.wal, self.storage.next_height_wal = [], []
        self._run(
            StartHeight(height, self.sim.validator_set, resume_round, locked_round, locked_block_id)
        )
        for message in wal + next_wal:
            self._accept(message, source=None)
        self._resend_last_signed_vote()

    def _resend_last_signed_vote(self) -> None:
        """A crash between persisting the signing state and broadcasting loses that vote, and
        the restarted core may now want a different one (refused by the guard): the node would
        be mute for that step, which can stall a round that needs it. The record names the
        vote exactly, so rebuild it, re-sign it (identical: allowed) and send it."""
        guard = self.guard
        if guard.height != self.core.height or guard.step not in (
            SignedStep.PREVOTE,
            SignedStep.PRECOMMIT,
        ):
            return
        vote_type = VoteType.PREVOTE if guard.step == SignedStep.PREVOTE else VoteType.PRECOMMIT
        vote = Vote(vote_type, guard.height, guard.round, guard.block_id, self.key)
        if request_for_vote(vote, self.sim.chain_id).message_digest != guard.message_digest:
            return  # not a vote of ours on this chain: leave it alone
        queue: deque[Event] = deque()
        self._sign_vote(vote, queue)
        while queue:
            self._run(queue.popleft())

    def crash(self) -> None:
        """Lose everything but `storage`."""
        self.alive = False
        self.incarnation += 1
        self.crash_armed = False

    @property
    def height(self) -> int:
        return self.core.height

    # --------------------------------------------------------------------- inputs

    def deliver(self, source: int, message: Message) -> None:
        """A message arrives from the network."""
        if isinstance(message, VoteMessage | ProposalMessage):
            if message.key in self.seen:
                return
            self.seen.add(message.key)
            self._accept(message, source)
        elif isinstance(message, StatusMessage):
            if message.height < self.core.height:
                self._push_blocks(source, message.height)
        elif isinstance(message, SyncRequest):
            self._push_blocks(source, message.from_height, rate_limited=False)
        elif isinstance(message, SyncResponse):
            self._apply_synced(message)

    def _accept(self, message: VoteMessage | ProposalMessage, source: int | None) -> None:
        height = message.height
        current = self.core.height
        if source is not None:
            if height < current:
                self._push_blocks(source, height)
                return
            if height > current:
                self._pull_blocks(source)
                if height > current + 1:
                    return
        if not current <= height <= current + 1 or not self.sim.authentic(message):
            return
        if height == current:
            self.storage.wal.append(message)
        elif len(self.storage.next_height_wal) < MAX_NEXT_HEIGHT_WAL:
            self.storage.next_height_wal.append(message)
        if isinstance(message, ProposalMessage):
            self.payloads[message.proposal.block_id] = message.payload
            if message.proposal.proposer == self.key:
                self.own_messages.append(message)
            self._run(ProposalReceived(message.proposal))
        else:
            if message.vote.validator == self.key:
                self.own_messages.append(message)
            self._run(VoteReceived(message.vote))

    def timeout(self, event: TimeoutFired) -> None:
        self._run(event)

    def tick(self) -> None:
        """Periodic: when nothing moved since the last tick, re-send our messages."""
        core = self.core
        marker = (core.height, core.round, int(core.round_step))
        if marker == self._last_marker:
            for message in self.own_messages[-MAX_RESENT_OWN_MESSAGES:]:
                self.sim.broadcast(self.index, message)
                if isinstance(message, ProposalMessage) and message.proposal.pol_round >= 0:
                    self._send_polka(message.proposal)
            self.sim.broadcast(self.index, StatusMessage(core.height))
        self._last_marker = marker

    # ------------------------------------------------------------------ the core

    def _run(self, event: Event) -> None:
        """Feed one event, carry out the effects; events they produce are queued after."""
        queue: deque[Event] = deque((event,))
        while queue:
            current = queue.popleft()
            for effect in self.core.step(current):
                kind = type(effect)
                if kind is SignVote:
                    self._sign_vote(effect.vote, queue)
                elif kind is ScheduleTimeout:
                    self.sim.schedule_timeout(
                        self,
                        effect.duration_ms,
                        TimeoutFired(effect.height, effect.round, effect.step),
                    )
                elif kind is SignProposal:
                    self._sign_proposal(effect.proposal, queue)
                elif kind is ValidateValue:
                    payload = self.payloads.get(effect.block_id)
                    valid = payload is not None and is_valid_block(payload, effect.height)
                    queue.append(ValueValidated(effect.height, effect.block_id, valid))
                elif kind is RequestValue:
                    payload = self._build_block(effect.height, effect.round)
                    block_id = block_id_of(payload)
                    self.payloads[block_id] = payload
                    queue.append(ValueToPropose(effect.height, effect.round, block_id))
                elif kind is Decide:
                    self._commit(effect.height, self.payloads[effect.block_id], effect.commit)
                    queue.append(self._advance(effect.height + 1))
                elif kind is ReportEvidence:
                    self.evidence_reported += 1
                    self.sim.checker.on_evidence(self.sim.now, self.index, effect.evidence)

    def _build_block(self, height: int, round_number: int) -> bytes:
        return make_block(height, round_number, self.key)

    def _guard(self, request: SigningState) -> bool:
        """Ask the guard, persist what it returns, then (maybe) crash: the order of §4."""
        try:
            next_state = authorize(self.guard, request)
        except DoubleSignError:
            self.signatures_refused += 1
            return False
        if next_state != self.guard:
            self.storage.signing_state = next_state.encode()
            self.guard = next_state
        if self.crash_armed:
            self.crashes_after_persist += 1
            raise CrashNow
        return True

    def _sign_vote(self, vote: Vote, queue: deque[Event]) -> None:
        chain_id = self.sim.chain_id
        if not self._guard(request_for_vote(vote, chain_id)):
            return
        signed = Vote.create(
            self.signer, chain_id, vote.type, vote.height, vote.round, vote.block_id
        )
        self.sim.checker.on_vote_signed(self.sim.now, self.index, signed)
        self._publish(VoteMessage.of(signed))
        queue.append(VoteReceived(signed))

    def _sign_proposal(self, proposal: Proposal, queue: deque[Event]) -> None:
        payload = self.payloads.get(proposal.block_id)
        if payload is None:
            return  # cannot happen for a correct node: the core only re-proposes known values
        chain_id = self.sim.chain_id
        if not self._guard(request_for_proposal(proposal, chain_id)):
            return
        signed = Proposal.create(
            self.signer,
            chain_id,
            proposal.height,
            proposal.round,
            proposal.pol_round,
            proposal.block_id,
        )
        self.sim.checker.on_proposal_signed(self.sim.now, self.index, signed, payload)
        self._publish(ProposalMessage.of(signed, payload))
        if signed.pol_round >= 0:
            self._send_polka(signed)
        queue.append(ProposalReceived(signed))

    def _publish(self, message: VoteMessage | ProposalMessage) -> None:
        """WAL, then broadcast; the caller feeds the message back to the core."""
        self.storage.wal.append(message)
        self.own_messages.append(message)
        self.seen.add(message.key)
        self.sim.broadcast(self.index, message)

    def _send_polka(self, proposal: Proposal) -> None:
        for vote in self.core.prevotes_for(proposal.pol_round, proposal.block_id):
            self.sim.broadcast(self.index, VoteMessage.of(vote))

    # ----------------------------------------------------------- blocks and sync

    def _commit(self, height: int, payload: bytes, commit: CommitCertificate) -> None:
        """Persist a decided block (before the next height starts)."""
        self.storage.blocks[height] = (payload, commit)
        self.sim.checker.on_decision(self.sim.now, self.index, height, payload, commit)
        self.sim.note_decision()

    def _advance(self, height: int) -> StartHeight:
        """Roll the WAL over to `height` and return the event that starts it."""
        storage = self.storage
        storage.wal = [message for message in storage.next_height_wal if message.height == height]
        storage.next_height_wal = []
        self.seen.clear()
        self.own_messages = [message for message in storage.wal if self._is_own(message)]
        return StartHeight(height, self.sim.validator_set)

    def _is_own(self, message: Message) -> bool:
        if isinstance(message, VoteMessage):
            return message.vote.validator == self.key
        return isinstance(message, ProposalMessage) and message.proposal.proposer == self.key

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

    def _pull_blocks(self, peer: int) -> None:
        now = self.sim.now
        if now - self._last_pull.get(peer, -SYNC_INTERVAL_MS) < SYNC_INTERVAL_MS:
            return
        self._last_pull[peer] = now
        self.sim.send(self.index, peer, SyncRequest(self.core.height))

    def _apply_synced(self, response: SyncResponse) -> None:
        for payload, commit in response.blocks:
            height = self.core.height
            if commit.height < height:
                continue
            block_id = block_id_of(payload)
            if (
                commit.height != height
                or commit.block_id != block_id
                or not is_valid_block(payload, height)
                or not self.sim.commit_is_valid(commit, height, block_id)
            ):
                return
            self._commit(height, payload, commit)
            self._run(self._advance(height + 1))
