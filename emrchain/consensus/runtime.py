"""The consensus runtime: every duty between the pure core and a host's clock, disk and network.

One class, driven by both hosts: the node (`emrchain/node/consensus_driver.py`: asyncio timers,
P2P, LevelDB and WAL files) and the simulator (`emrchain/sim/node.py`: virtual time, a
simulated network, crashes). Like the core it reads no clock and performs no I/O: each input
(a verified-at-ingress candidate message, a timeout, a retransmission tick, a height to start,
a restart from what was persisted) is a method that returns the `Action`s the host must carry
out, in order. docs/spec/consensus.md §4 is the specification; in short:

- **Own signatures** (`SignVote`, `SignProposal`): ask the signing guard, sign in memory, then
  `AppendToWal(sync=True)` the signed message, `SaveSigningState`, `Broadcast`; the signed
  message is fed back to the core at once. The host performs each action before the next, so
  nothing signed leaves the node before both records are durable.
- **Received messages**: de-duplicated, checked (signer in the validator set, signature; for
  a proposal also that its signer is the round's proposer and that the block is the one it
  names) BEFORE anything is kept, written to the WAL of their height
  (`AppendToWal(sync=False)`), then fed to the core. A proposed block takes one of at most
  `BLOCKS_PER_ROUND` slots of its (height, round), for rounds up to `proposal_rounds_ahead`
  above ours; messages 2..`future_heights` heights above ours are kept (checked) within a
  budget of messages and bytes per source peer. Every fault a peer caused is reported
  (`ReportPeer`) so the host can score it (docs/spec/consensus.md §4.7).
- **Restart**: `restart` adopts our own signed messages from the WAL (catching the guard up
  if a crash fell between the two writes), resumes the core at the guard's round with its
  lock, replays the WAL, and re-sends every message we signed at the height. A core that now
  prefers a different message at a position it already signed says again what it said.
- **Retransmission**: `on_tick` re-sends our messages of the height when it has not changed
  since the previous tick, with the polka that justifies a re-proposal.

`BlockT` is the host's block (a node's `Block`, a simulated payload); `BlockRules` is all the
runtime knows about it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from emrchain.consensus.effects import (
    Decide,
    Effect,
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
from emrchain.consensus.proposer import ProposerSelector
from emrchain.consensus.signing_guard import (
    DoubleSignError,
    SignedStep,
    SigningState,
    authorize,
    request_for_proposal,
    request_for_vote,
)
from emrchain.consensus.state_machine import ConsensusState, TendermintCore
from emrchain.consensus.wal import (
    ProposalEntry,
    VoteEntry,
    WalEntry,
    proposal_record,
    read_segment,
    vote_record,
)
from emrchain.crypto.keys import Signer
from emrchain.invariants import invariant
from emrchain.types.codec import DecodeError
from emrchain.types.commit import CommitCertificate
from emrchain.types.evidence import ConflictingProposalEvidence
from emrchain.types.validator import ValidatorSet
from emrchain.types.vote import PROPOSAL_BYTES, Proposal, Vote, VoteType

BlockT = TypeVar("BlockT")


class BlockRules(Protocol[BlockT]):
    """The application's side of consensus, as the runtime needs it (all synchronous)."""

    def identify(self, block: BlockT) -> tuple[int, bytes]:
        """(height, block id) of `block`."""
        ...

    def build(self, height: int, round_number: int) -> BlockT:
        """The paper's getValue(): a block to propose."""
        ...

    def validate(self, height: int, block: BlockT) -> bool:
        """The paper's valid(v): deterministic, the same answer on every correct node."""
        ...

    def encode(self, block: BlockT) -> bytes:
        """The block's bytes for the WAL."""
        ...

    def decode(self, data: bytes) -> BlockT:
        """A block back from the WAL; DecodeError if the bytes are not one."""
        ...


class MessageVerifier(Protocol):
    """Signature checks on `chain_id` (a host may memoise them: verified once per message)."""

    def vote(self, vote: Vote) -> bool: ...

    def proposal(self, proposal: Proposal) -> bool: ...


@dataclass(frozen=True, slots=True)
class RuntimeLimits:
    """Bounds of the runtime's buffers (the core's own are in `ConsensusConfig`)."""

    max_events_per_dispatch: int = 10_000
    """Events one input may lead to (effects feeding events back); invariant R1."""
    max_own_messages: int = 64
    """Own messages of the height kept for retransmission (the most recent ones)."""
    future_heights: int = 4
    """Messages up to this many heights above ours are kept for later, beyond the core's
    window (current and next height): a validator that fell behind, e.g. descheduled under
    load, would otherwise drop them and could only catch up through block sync."""
    max_future_messages: int = 2_048
    """Messages kept for those heights from one source peer."""
    max_future_bytes_per_source: int = 64 * 1024 * 1024
    """Bytes (proposals with their blocks, votes) kept for those heights from one source peer:
    a peer can only fill its own budget, never displace another's messages."""
    proposal_rounds_ahead: int = 2
    """Proposed blocks are kept for rounds up to this many above our round (of the current
    height; of round 0 for the next height). A proposal further ahead is dropped unreported:
    its proposer re-sends it while its height does not move (`on_tick`)."""
    max_wal_entries_per_height: int = 4_096
    """Received messages written to (and replayed from) one height's WAL segment, and
    remembered for de-duplication; our own are always written."""
    max_wal_entry_bytes: int = 64 * 1024 * 1024
    """The longest WAL entry read back (a proposal with its block)."""

    def validate(self) -> None:
        for name in (
            "max_events_per_dispatch",
            "max_own_messages",
            "max_wal_entries_per_height",
            "max_wal_entry_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.future_heights < 1 or self.max_future_messages < 0:
            raise ValueError("future_heights must be at least 1, max_future_messages >= 0")
        if self.max_future_bytes_per_source < 0 or self.proposal_rounds_ahead < 0:
            raise ValueError("max_future_bytes_per_source and proposal_rounds_ahead must be >= 0")


BLOCKS_PER_ROUND = 2
"""Distinct blocks kept per (height, round): the proposer's, and one conflicting block signed
by the same proposer (kept as material for evidence of its equivocation)."""


# ------------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class SignedProposal(Generic[BlockT]):
    """A signed proposal with the block it proposes (they travel together)."""

    proposal: Proposal
    block: BlockT


ConsensusMessage = Vote | SignedProposal[Any]


@dataclass(frozen=True, slots=True)
class PersistedConsensus:
    """What the host read back from disk at start: the guard's record (None: never saved)
    and the WAL segments by height (their bytes, a torn tail already cut off)."""

    signing_state: bytes | None
    wal_segments: Mapping[int, bytes]


# -------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class AppendToWal:
    """Append `record` (`consensus.wal`) to the WAL segment of `height`, creating the segment
    with `segment_header(height)` first. `sync`: durable (fsync) before the next action."""

    height: int
    record: bytes
    sync: bool


@dataclass(frozen=True, slots=True)
class SaveSigningState:
    """Persist `state.encode()` durably before the next action; it authorises `signed`."""

    state: SigningState
    signed: ConsensusMessage


@dataclass(frozen=True, slots=True)
class DiscardWal:
    """Delete the WAL segments of heights below `below_height` (decided, never replayed)."""

    below_height: int


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send `message` to every peer."""

    message: ConsensusMessage


@dataclass(frozen=True, slots=True)
class Relay:
    """Send `message` (a peer's vote, just verified and new to us) to every peer except
    `source` (None: to every peer). Votes are relayed once each, so that two conflicting votes
    an equivocating validator sent to different peers meet at every correct node, which then
    reports the evidence (docs/spec/consensus.md §1.4)."""

    message: Vote
    source: object


@dataclass(frozen=True, slots=True)
class CommitBlock(Generic[BlockT]):
    """`block` is decided at `height`: persist it, then call `start_height(height + 1)`."""

    height: int
    round: int
    block: BlockT
    commit: CommitCertificate


@dataclass(frozen=True, slots=True)
class Warn:
    """Something an operator should see (the node logs it)."""

    text: str


class PeerFault(Enum):
    """What a source peer sent wrong (the node maps each to a `p2p.Misbehaviour`)."""

    INVALID_SIGNATURE = "invalid_signature"
    """A proposal or vote whose signature does not verify."""
    WRONG_PROPOSER = "wrong_proposer"
    """A proposal signed by a validator that is not the proposer of its round."""
    NOT_A_VALIDATOR = "not_a_validator"
    """A proposal or vote signed by a key outside the height's validator set."""
    BLOCK_MISMATCH = "block_mismatch"
    """A proposal whose block is not the one it names (height or block id)."""
    INVALID_BLOCK = "invalid_block"
    """A proposed block that `BlockRules.validate` refused."""
    FLOOD = "flood"
    """More than the limits allow: a third block for one round, or beyond the future budget."""


@dataclass(frozen=True, slots=True)
class ReportPeer:
    """`source` (the opaque id the host passed in) sent something wrong: score it."""

    source: Hashable
    fault: PeerFault
    detail: str


Action = (
    AppendToWal
    | SaveSigningState
    | DiscardWal
    | Broadcast
    | Relay
    | ScheduleTimeout
    | CommitBlock[Any]
    | ReportEvidence
    | Warn
    | ReportPeer
)


@dataclass(frozen=True, slots=True)
class _Kept:
    """A message kept for a later height, with who sent it and what it costs them."""

    message: ConsensusMessage
    source: Hashable
    size: int
    key: bytes


def _vote_step(vote: Vote) -> SignedStep:
    return SignedStep.PREVOTE if vote.type == VoteType.PREVOTE else SignedStep.PRECOMMIT


def position_of(message: ConsensusMessage) -> tuple[int, int, int]:
    """(height, round, step) of a signed message, as the signing guard orders them."""
    if isinstance(message, Vote):
        return (message.height, message.round, int(_vote_step(message)))
    proposal = message.proposal
    return (proposal.height, proposal.round, int(SignedStep.PROPOSAL))


class ConsensusRuntime(Generic[BlockT]):
    """One validator's consensus runtime around `core`. Not thread-safe; one host drives it."""

    def __init__(
        self,
        core: TendermintCore,
        signer: Signer,
        chain_id: bytes,
        blocks: BlockRules[BlockT],
        verifier: MessageVerifier,
        limits: RuntimeLimits | None = None,
    ) -> None:
        self.limits = limits = limits or RuntimeLimits()
        limits.validate()
        self.core = core
        self.signer = signer
        self.own_key = signer.public_key
        self.chain_id = chain_id
        self.blocks = blocks
        self.verifier = verifier
        self.guard = SigningState()
        # Our signed messages of the current height by guard position: after a restart, the
        # WAL's; what we said at a position is what we say again there.
        self._signed: dict[tuple[int, int, int], ConsensusMessage] = {}
        self._own_messages: deque[ConsensusMessage] = deque(maxlen=limits.max_own_messages)
        # Signatures of the messages fed to the core, by height (current and next).
        self._seen: dict[int, set[bytes]] = {}
        self._wal_entries: dict[int, int] = {}
        # height -> block id -> block; only the current and the next height.
        self._blocks: dict[int, dict[bytes, BlockT]] = {}
        # (height, round) -> block ids kept for it (at most BLOCKS_PER_ROUND from peers).
        self._round_blocks: dict[tuple[int, int], list[bytes]] = {}
        # (height, block id) -> the peer that sent the block (blamed if it is invalid).
        self._block_sources: dict[tuple[int, bytes], Hashable] = {}
        self._next_validators: tuple[ValidatorSet, ProposerSelector] | None = None
        self._future: dict[int, list[_Kept]] = {}
        self._future_keys: set[bytes] = set()
        # source -> [messages, bytes] it holds in `_future`.
        self._future_usage: dict[Hashable, list[int]] = {}
        # height -> (round, proposer) -> the first proposal it signed there (None: reported).
        self._first_proposals: dict[int, dict[tuple[int, bytes], Proposal | None]] = {}
        self._decided_height = 0
        self._last_tick_height = -1
        self._restarting = False
        self.refused_signatures = 0
        self.invalid_signatures = 0
        self.future_messages_dropped = 0
        self.proposals_beyond_window = 0
        self.peer_faults = 0
        self.wal_entries_dropped = 0
        self.resent_after_restart = 0
        self.earlier_signatures_kept = 0
        """Times the core asked to sign a position we had signed before a restart with other
        bytes, and we said again what we said (the mute-after-restart case)."""

    # ----------------------------------------------------------------------- queries

    @property
    def height(self) -> int:
        return self.core.height

    def state(self) -> ConsensusState:
        return self.core.state()

    def own_messages(self) -> list[ConsensusMessage]:
        """Our signed messages of the current height, oldest first (bounded)."""
        return list(self._own_messages)

    # ------------------------------------------------------------------------ inputs

    def restart(
        self,
        height: int,
        validator_set: ValidatorSet,
        persisted: PersistedConsensus,
        next_validator_set: ValidatorSet | None = None,
    ) -> list[Action]:
        """Start (or restart) at `height`, the one after the last persisted block, from the
        signing state and WAL the host read back (docs/spec/consensus.md §4.4).
        `next_validator_set`: the set of `height + 1` (None: the same as `validator_set`)."""
        invariant(self.core.height == 0, "R2 restart: a runtime restarts once, before any height")
        self._set_next_validators(validator_set, next_validator_set)
        if persisted.signing_state:
            self.guard = SigningState.decode(persisted.signing_state)
        actions: list[Action] = [DiscardWal(height)]
        self._reset_height(height)
        entries = self._read_wal(persisted.wal_segments, height, actions)
        self._preload_blocks(entries.get(height, ()))
        adopted = self._adopt_own(entries.get(height, ()), actions)
        own = {_signature_of(message) for message in adopted}
        self._restarting = True
        self._enter(height, validator_set, actions)
        for entry in (*entries.get(height, ()), *entries.get(height + 1, ())):
            self._replay(entry, own, actions)
        self._restarting = False
        for message in adopted:
            self._broadcast_own(message, actions)
            self.resent_after_restart += 1
        self._resign_last_vote(actions)
        return actions

    def start_height(
        self,
        height: int,
        validator_set: ValidatorSet,
        next_validator_set: ValidatorSet | None = None,
    ) -> list[Action]:
        """Enter `height` after the block before it was persisted (decided or synced);
        `next_validator_set` is the set of `height + 1` (None: the same)."""
        self._set_next_validators(validator_set, next_validator_set)
        actions: list[Action] = [DiscardWal(height)]
        self._reset_height(height)
        self._enter(height, validator_set, actions)
        return actions

    def on_proposal(
        self,
        proposal: Proposal,
        block: BlockT,
        encoded_block: bytes | None = None,
        *,
        source: Hashable = None,
    ) -> list[Action]:
        """A proposal with its block from a peer (signature not yet checked);
        `encoded_block`, if the host has it, is the block's encoding (the bytes it received).
        `source` identifies the peer it came from (opaque; named in `ReportPeer`)."""
        actions: list[Action] = []
        self._accept(
            SignedProposal(proposal, block),
            actions,
            write_wal=True,
            encoded=encoded_block,
            source=source,
        )
        return actions

    def on_vote(
        self, vote: Vote, encoded: bytes | None = None, *, source: Hashable = None
    ) -> list[Action]:
        """A vote from a peer (signature not yet checked); `encoded`, if the host has it,
        is `vote.encode()` (the bytes it received), written to the WAL as they are.
        `source`: the peer it came from; a vote new to us is relayed to every other peer."""
        actions: list[Action] = []
        self._accept(vote, actions, write_wal=True, encoded=encoded, source=source)
        return actions

    def on_timeout(self, event: TimeoutFired) -> list[Action]:
        """A timeout the runtime asked for (`ScheduleTimeout`) expired."""
        actions: list[Action] = []
        self._dispatch(event, actions)
        return actions

    def on_tick(self) -> list[Action]:
        """Called every gossip interval: if the height has not changed since the last call,
        re-send our messages of it. The paper assumes every message of a correct process
        eventually reaches every correct process; a peer that was down, disconnected or
        behind a lossy link when we sent them would otherwise wait for them forever (for
        example for the 2f+1 precommits that schedule timeoutPrecommit)."""
        actions: list[Action] = []
        if self.core.height == self._last_tick_height:
            for message in self._own_messages:
                actions.append(Broadcast(message))
                self._send_polka(message, actions)
            # Others' votes too: a vote relayed once (or sent once by a byzantine validator
            # that has moved on) may have been lost before GST, and without it the correct
            # nodes of a height can wait for each other for ever (simulator seed 1081/4).
            for vote in self.core.votes_to_gossip():
                if vote.validator != self.own_key:
                    actions.append(Relay(vote, None))
        self._last_tick_height = self.core.height
        return actions

    # -------------------------------------------------------------------- heights

    def _reset_height(self, height: int) -> None:
        self._signed = {}
        self._own_messages.clear()
        for by_height in (self._seen, self._blocks, self._wal_entries, self._first_proposals):
            for known in [known for known in by_height if known < height]:
                del by_height[known]
        for position in [position for position in self._round_blocks if position[0] < height]:
            del self._round_blocks[position]
        for key in [key for key in self._block_sources if key[0] < height]:
            del self._block_sources[key]

    def _set_next_validators(
        self, validator_set: ValidatorSet, next_validator_set: ValidatorSet | None
    ) -> None:
        """The set of the next height, whose messages we check before it starts."""
        chosen = next_validator_set if next_validator_set is not None else validator_set
        if self._next_validators is None or self._next_validators[0] != chosen:
            self._next_validators = (chosen, ProposerSelector(chosen))

    def _enter(self, height: int, validator_set: ValidatorSet, actions: list[Action]) -> None:
        """StartHeight, resuming our own round and lock if the guard has signed at `height`."""
        guard = self.guard
        locked_round, locked_block_id = guard.lock_at(height)
        resume_round = guard.round if guard.height == height else 0
        start = StartHeight(height, validator_set, resume_round, locked_round, locked_block_id)
        self._dispatch(start, actions)
        self._replay_future(actions)

    def _replay_future(self, actions: list[Action]) -> None:
        """Feed kept messages whose height is now in the core's window; forget older ones."""
        for height in sorted(self._future):
            if height > self.core.height + 1:
                break
            kept = self._future.pop(height)
            for item in kept:
                self._release(item)
            if height < self.core.height:
                continue
            for item in kept:
                self._accept(item.message, actions, write_wal=True, source=item.source)

    def _release(self, item: _Kept) -> None:
        self._future_keys.discard(item.key)
        usage = self._future_usage[item.source]
        usage[0] -= 1
        usage[1] -= item.size
        if usage[0] == 0:
            del self._future_usage[item.source]

    # ------------------------------------------------------------- received messages

    def _accept(
        self,
        message: ConsensusMessage,
        actions: list[Action],
        *,
        write_wal: bool,
        encoded: bytes | None = None,
        source: Hashable = None,
    ) -> None:
        """De-duplicate, keep for later or drop by height, verify, log, relay (a vote), feed
        to the core."""
        if isinstance(message, Vote):
            key, height = message.signature, message.height
        else:
            key, height = message.proposal.signature, message.proposal.height
        if key in self._seen.get(height, ()):
            return
        current = self.core.height
        if current == 0:
            return  # not started: nothing to check against yet
        if not current <= height <= current + 1:
            self._keep_for_later(height, message, source, encoded, actions)
            return
        if isinstance(message, Vote):
            if not self._admit_vote(message, source, actions):
                return
            event: Event = VoteReceived(message)
            record = vote_record(message, encoded) if write_wal else b""
        else:
            if not self._admit_proposal(message, source, actions):
                return
            event = ProposalReceived(message.proposal)
            if write_wal:
                block = encoded if encoded is not None else self.blocks.encode(message.block)
                record = proposal_record(message.proposal, block)
            else:
                record = b""
        remembered = self._remember(key, height)
        if write_wal:
            self._log_received(height, record, actions)
        # Only a vote we will recognise again is relayed: two nodes past the de-duplication
        # bound would otherwise send one vote back and forth for ever.
        if remembered and isinstance(message, Vote) and not self._restarting:
            actions.append(Relay(message, source))
        self._dispatch(event, actions)

    def _admit_vote(self, vote: Vote, source: Hashable, actions: list[Action]) -> bool:
        """A vote of the current or next height: from a validator of that height, signed."""
        if vote.validator not in self._validator_set_at(vote.height):
            self._fault(source, PeerFault.NOT_A_VALIDATOR, f"vote at {vote.height}", actions)
            return False
        if not self.verifier.vote(vote):
            self.invalid_signatures += 1
            self._fault(source, PeerFault.INVALID_SIGNATURE, f"vote at {vote.height}", actions)
            return False
        return True

    def _admit_proposal(
        self, message: SignedProposal[BlockT], source: Hashable, actions: list[Action]
    ) -> bool:
        """A proposal of the current or next height, checked (cheapest first) before its
        block takes a slot: its signer is the round's proposer, the block is the one it
        names, the round is within the window, the signature verifies, a slot is free."""
        proposal = message.proposal
        height, round_number = proposal.height, proposal.round
        where = f"proposal at {height}/{round_number}"
        if proposal.proposer != self._proposer_at(height, round_number):
            self._fault(source, PeerFault.WRONG_PROPOSER, where, actions)
            return False
        if self.blocks.identify(message.block) != (height, proposal.block_id):
            self._fault(source, PeerFault.BLOCK_MISMATCH, where, actions)
            return False
        first_round = self.core.round if height == self.core.height else 0
        if round_number > first_round + self.limits.proposal_rounds_ahead:
            self.proposals_beyond_window += 1
            return False
        if not self.verifier.proposal(proposal):
            self.invalid_signatures += 1
            self._fault(source, PeerFault.INVALID_SIGNATURE, where, actions)
            return False
        self._note_proposal(proposal, actions)
        if not self._keep_block(
            height, proposal.block_id, message.block, round_number=round_number, source=source
        ):
            self._fault(source, PeerFault.FLOOD, f"a third block for {where}", actions)
            return False
        return True

    def _validator_set_at(self, height: int) -> ValidatorSet:
        """The set of the current height or (from the host) of the next one."""
        if height == self.core.height or self._next_validators is None:
            return self.core.validator_set
        return self._next_validators[0]

    def _proposer_at(self, height: int, round_number: int) -> bytes:
        if height == self.core.height or self._next_validators is None:
            return self.core.proposer(height, round_number)
        return self._next_validators[1].proposer(height, round_number)

    def _fault(
        self, source: Hashable, fault: PeerFault, detail: str, actions: list[Action]
    ) -> None:
        """Count a peer's fault and report it; the host logs it rate-limited."""
        self.peer_faults += 1
        actions.append(ReportPeer(source, fault, detail))

    def _note_proposal(self, proposal: Proposal, actions: list[Action]) -> None:
        """A signed proposal differing from the first one its proposer signed at this (height,
        round) is evidence (`ConflictingProposalEvidence`), reported once per position.
        Remembered per height, bounded like the WAL."""
        first = self._first_proposals.setdefault(proposal.height, {})
        position = (proposal.round, proposal.proposer)
        earlier = first.get(position, proposal)
        if earlier is None or earlier.body() == proposal.body():
            if position not in first and len(first) < self.limits.max_wal_entries_per_height:
                first[position] = proposal
            return
        first[position] = None  # reported
        evidence = ConflictingProposalEvidence.from_proposals(earlier, proposal)
        actions.append(ReportEvidence(evidence))

    def _remember(self, key: bytes, height: int) -> bool:
        """De-duplicate later copies (bounded like the WAL: beyond it the core de-duplicates).
        False: past the bound, not remembered."""
        if self._wal_entries.get(height, 0) < self.limits.max_wal_entries_per_height:
            self._seen.setdefault(height, set()).add(key)
            return True
        return False

    def _log_received(self, height: int, record: bytes, actions: list[Action]) -> None:
        count = self._wal_entries.get(height, 0)
        if count >= self.limits.max_wal_entries_per_height:
            self.wal_entries_dropped += 1
            return
        self._wal_entries[height] = count + 1
        actions.append(AppendToWal(height, record, sync=False))

    def _keep_for_later(
        self,
        height: int,
        message: ConsensusMessage,
        source: Hashable,
        encoded: bytes | None,
        actions: list[Action],
    ) -> None:
        """Keep a message 2..future_heights above our height if it can be checked now (its
        signer is in the newest validator set we know, its signature verifies) and its
        source's budget has room; drop anything else. The rest of its checks (proposer,
        round window, block slots) come when it is replayed. A signer outside the set is not
        blamed: the set of those heights is not known yet."""
        current = self.core.height
        if not current + 1 < height <= current + self.limits.future_heights:
            return
        key = _signature_of(message)
        if key in self._future_keys:
            return
        signer = message.validator if isinstance(message, Vote) else message.proposal.proposer
        if signer not in self._validator_set_at(current + 1):
            self.future_messages_dropped += 1
            return
        if not self._verify(message):
            self.invalid_signatures += 1
            self._fault(source, PeerFault.INVALID_SIGNATURE, f"message at {height}", actions)
            return
        size = self._size_of(message, encoded)
        usage = self._future_usage.setdefault(source, [0, 0])
        limits = self.limits
        if (
            usage[0] >= limits.max_future_messages
            or usage[1] + size > limits.max_future_bytes_per_source
        ):
            if usage[0] == 0:
                del self._future_usage[source]
            self.future_messages_dropped += 1
            self._fault(source, PeerFault.FLOOD, f"future budget full at {height}", actions)
            return
        usage[0] += 1
        usage[1] += size
        self._future_keys.add(key)
        self._future.setdefault(height, []).append(_Kept(message, source, size, key))

    def _verify(self, message: ConsensusMessage) -> bool:
        if isinstance(message, Vote):
            return self.verifier.vote(message)
        return self.verifier.proposal(message.proposal)

    def _size_of(self, message: ConsensusMessage, encoded: bytes | None) -> int:
        """Bytes a kept message holds: what it costs its source's budget."""
        if isinstance(message, Vote):
            return len(encoded) if encoded is not None else len(message.encode())
        block = encoded if encoded is not None else self.blocks.encode(message.block)
        return PROPOSAL_BYTES + len(block)

    def _keep_block(
        self,
        height: int,
        block_id: bytes,
        block: BlockT,
        *,
        round_number: int = -1,
        own: bool = False,
        source: Hashable = None,
    ) -> bool:
        """Hold `block` for `height`; a peer's takes one of BLOCKS_PER_ROUND slots of its
        round (a block already held, e.g. re-proposed in a later round, costs nothing)."""
        bucket = self._blocks.setdefault(height, {})
        if block_id in bucket:
            return True
        if not own:
            slots = self._round_blocks.setdefault((height, round_number), [])
            if len(slots) >= BLOCKS_PER_ROUND:
                return False
            slots.append(block_id)
            if source is not None:
                self._block_sources[(height, block_id)] = source
        bucket[block_id] = block
        return True

    # ------------------------------------------------------------------- the core

    def _dispatch(self, event: Event, actions: list[Action]) -> None:
        """Feed `event` and every event its effects produce, in order (bounded)."""
        pending: deque[Event] = deque((event,))
        handled = 0
        while pending:
            handled += 1
            invariant(
                handled <= self.limits.max_events_per_dispatch,
                "R1 bounded dispatch: one input leads to at most max_events_per_dispatch events",
            )
            for effect in self.core.step(pending.popleft()):
                follow_up = self._carry_out(effect, actions)
                if follow_up is not None:
                    pending.append(follow_up)

    def _carry_out(self, effect: Effect, actions: list[Action]) -> Event | None:
        if isinstance(effect, SignVote):
            signed = self._sign_vote(effect.vote, actions)
            return VoteReceived(signed) if signed is not None else None
        if isinstance(effect, ScheduleTimeout):
            actions.append(effect)
            return None
        if isinstance(effect, SignProposal):
            proposal = self._sign_proposal(effect.proposal, actions)
            return ProposalReceived(proposal) if proposal is not None else None
        if isinstance(effect, ValidateValue):
            return self._validate(effect, actions)
        if isinstance(effect, RequestValue):
            return self._value_to_propose(effect)
        if isinstance(effect, Decide):
            self._decide(effect, actions)
            return None
        if isinstance(effect, ReportEvidence):
            actions.append(effect)
            return None
        raise TypeError(f"unknown effect {type(effect).__name__}")

    def _validate(self, effect: ValidateValue, actions: list[Action]) -> ValueValidated:
        """valid(v); a block the rules refuse is held against the peer that sent it."""
        height, block_id = effect.height, effect.block_id
        block = self._blocks.get(height, {}).get(block_id)
        valid = block is not None and self.blocks.validate(height, block)
        if block is not None and not valid and (height, block_id) in self._block_sources:
            source = self._block_sources[(height, block_id)]
            self._fault(source, PeerFault.INVALID_BLOCK, f"block at {height}", actions)
        return ValueValidated(height, block_id, valid)

    def _value_to_propose(self, effect: RequestValue) -> ValueToPropose:
        """getValue(); the block of our earlier proposal at this position if we made one."""
        earlier = self._signed.get((effect.height, effect.round, int(SignedStep.PROPOSAL)))
        if isinstance(earlier, SignedProposal):
            return ValueToPropose(effect.height, effect.round, earlier.proposal.block_id)
        block = self.blocks.build(effect.height, effect.round)
        _, block_id = self.blocks.identify(block)
        self._keep_block(effect.height, block_id, block, own=True)
        return ValueToPropose(effect.height, effect.round, block_id)

    def _decide(self, effect: Decide, actions: list[Action]) -> None:
        invariant(
            effect.height > self._decided_height,
            "I1 agreement: one decision per height",
            f"height {effect.height} after {self._decided_height}",
        )
        block = self._blocks.get(effect.height, {}).get(effect.block_id)
        invariant(block is not None, "I2 validity: a decided block is one we validated")
        self._decided_height = effect.height
        actions.append(CommitBlock(effect.height, effect.round, block, effect.commit))

    # ---------------------------------------------------------------- own signatures
    # Byzantine simulated validators override `_sign_vote` and `_sign_proposal` (only these).

    def _sign_vote(self, vote: Vote, actions: list[Action]) -> Vote | None:
        """Sign `vote` in the guard's order; what we already signed at its position instead."""
        earlier = self._signed.get((vote.height, vote.round, int(_vote_step(vote))))
        if isinstance(earlier, Vote):
            self._say_again(earlier, earlier.block_id != vote.block_id, actions)
            return earlier
        state = self._authorize(request_for_vote(vote, self.chain_id), actions)
        if state is None:
            return None
        signature = self.signer.sign(vote.signed_message(self.chain_id))
        signed = Vote(vote.type, vote.height, vote.round, vote.block_id, vote.validator, signature)
        self._record_own(signed, vote_record(signed), state, actions)
        return signed

    def _sign_proposal(self, proposal: Proposal, actions: list[Action]) -> Proposal | None:
        earlier = self._signed.get((proposal.height, proposal.round, int(SignedStep.PROPOSAL)))
        if isinstance(earlier, SignedProposal):
            said = earlier.proposal
            differs = (said.block_id, said.pol_round) != (proposal.block_id, proposal.pol_round)
            self._say_again(earlier, differs, actions)
            return said
        block = self._blocks.get(proposal.height, {}).get(proposal.block_id)
        if block is None:
            actions.append(Warn("asked to propose a block we do not hold; skipped"))
            return None
        state = self._authorize(request_for_proposal(proposal, self.chain_id), actions)
        if state is None:
            return None
        signature = self.signer.sign(proposal.signed_message(self.chain_id))
        signed = Proposal(
            proposal.height,
            proposal.round,
            proposal.pol_round,
            proposal.block_id,
            proposal.proposer,
            signature,
        )
        message = SignedProposal(signed, block)
        self._record_own(
            message, proposal_record(signed, self.blocks.encode(block)), state, actions
        )
        return signed

    def _authorize(self, request: SigningState, actions: list[Action]) -> SigningState | None:
        try:
            return authorize(self.guard, request)
        except DoubleSignError as error:
            self.refused_signatures += 1
            actions.append(Warn(f"double-sign guard refused a signature: {error}"))
            return None

    def _record_own(
        self, message: ConsensusMessage, record: bytes, state: SigningState, actions: list[Action]
    ) -> None:
        """The order of docs/spec/consensus.md §4.2: WAL (durable), guard record (durable),
        send. The caller feeds the message back to the core."""
        position = position_of(message)
        actions.append(AppendToWal(position[0], record, sync=True))
        if state != self.guard:  # an identical re-sign leaves nothing new to persist
            actions.append(SaveSigningState(state, message))
            self.guard = state
        self._signed[position] = message
        self._own_messages.append(message)
        self._seen.setdefault(position[0], set()).add(_signature_of(message))
        self._broadcast_own(message, actions)

    def _say_again(self, message: ConsensusMessage, differs: bool, actions: list[Action]) -> None:
        """The core asks to sign at a position we signed before a restart: send that message
        again (the restart itself sends every such message once, at its end)."""
        self.earlier_signatures_kept += differs
        if not self._restarting:
            self._broadcast_own(message, actions)

    def _broadcast_own(self, message: ConsensusMessage, actions: list[Action]) -> None:
        actions.append(Broadcast(message))
        self._send_polka(message, actions)

    def _send_polka(self, message: ConsensusMessage, actions: list[Action]) -> None:
        """With a re-proposal, the prevotes that justify it (paper line 28: locked validators
        need the polka to accept it)."""
        if isinstance(message, SignedProposal) and message.proposal.pol_round >= 0:
            proposal = message.proposal
            for vote in self.core.prevotes_for(proposal.pol_round, proposal.block_id):
                actions.append(Broadcast(vote))

    # ---------------------------------------------------------------------- restart

    def _read_wal(
        self, segments: Mapping[int, bytes], height: int, actions: list[Action]
    ) -> dict[int, tuple[WalEntry, ...]]:
        """The entries of `height` and `height + 1`; older segments are stale (decided)."""
        entries: dict[int, tuple[WalEntry, ...]] = {}
        limits = self.limits
        for segment_height in (height, height + 1):
            data = segments.get(segment_height)
            if data is None:
                continue
            try:
                segment = read_segment(
                    data, limits.max_wal_entry_bytes, limits.max_wal_entries_per_height
                )
            except DecodeError as error:
                actions.append(Warn(f"WAL segment {segment_height} ignored: {error}"))
                continue
            if segment.height != segment_height:
                actions.append(Warn(f"WAL segment {segment_height} holds height {segment.height}"))
                continue
            entries[segment_height] = segment.entries
            self._wal_entries[segment_height] = len(segment.entries)
        return entries

    def _preload_blocks(self, entries: tuple[WalEntry, ...]) -> None:
        """Blocks of the height's logged proposals, before the core starts: a proposer locked
        on one re-proposes it from its first round."""
        for entry in entries:
            if isinstance(entry, ProposalEntry):
                block = self._decoded_block(entry)
                if block is not None:
                    proposal = entry.proposal
                    self._keep_block(proposal.height, proposal.block_id, block, own=True)

    def _decoded_block(self, entry: ProposalEntry) -> BlockT | None:
        try:
            block = self.blocks.decode(entry.block)
        except DecodeError:
            return None
        proposal = entry.proposal
        if self.blocks.identify(block) != (proposal.height, proposal.block_id):
            return None
        return block

    def _adopt_own(
        self, entries: tuple[WalEntry, ...], actions: list[Action]
    ) -> list[ConsensusMessage]:
        """Take our logged messages as signed (`_signed`) and return them, in log order.

        A message logged after the guard's position was signed just before a crash that came
        between the two writes: the guard catches up (persisted) before anything is sent. One
        at the guard's position but with other bytes is not ours to send (never expected).
        """
        adopted: list[ConsensusMessage] = []
        for entry in entries:
            message = self._own_message(entry)
            if message is None:
                continue
            if isinstance(message, Vote):
                request = request_for_vote(message, self.chain_id)
            else:
                request = request_for_proposal(message.proposal, self.chain_id)
            if request.position > self.guard.position:
                self.guard = authorize(self.guard, request)
                actions.append(SaveSigningState(self.guard, message))
            elif request.position == self.guard.position and (
                request.message_digest != self.guard.message_digest
            ):
                actions.append(Warn("WAL message conflicts with the signing state; not re-sent"))
                continue
            self._signed[request.position] = message
            self._own_messages.append(message)
            self._seen.setdefault(request.height, set()).add(_signature_of(message))
            adopted.append(message)
        return adopted

    def _own_message(self, entry: WalEntry) -> ConsensusMessage | None:
        """The entry as our own signed message (signature checked), or None."""
        if isinstance(entry, VoteEntry):
            vote = entry.vote
            if vote.validator == self.own_key and self.verifier.vote(vote):
                return vote
            return None
        proposal = entry.proposal
        if proposal.proposer != self.own_key or not self.verifier.proposal(proposal):
            return None
        block = self._blocks.get(proposal.height, {}).get(proposal.block_id)
        return SignedProposal(proposal, block) if block is not None else None

    def _replay(self, entry: WalEntry, own: set[bytes], actions: list[Action]) -> None:
        """Feed one logged message through the normal path, without logging it again."""
        if isinstance(entry, VoteEntry):
            vote = entry.vote
            if vote.signature in own:
                self._dispatch(VoteReceived(vote), actions)
            else:
                self._accept(vote, actions, write_wal=False)
            return
        proposal = entry.proposal
        block = self._blocks.get(proposal.height, {}).get(proposal.block_id)
        if block is None:
            block = self._decoded_block(entry)
            if block is None:
                return
        if proposal.signature in own:
            self._dispatch(ProposalReceived(proposal), actions)
        else:
            self._accept(SignedProposal(proposal, block), actions, write_wal=False)

    def _resign_last_vote(self, actions: list[Action]) -> None:
        """A store written before the WAL existed can hold a guard record naming a vote the
        WAL does not: rebuild that vote from the record, re-sign it (identical bytes, which
        the guard allows; Ed25519 is deterministic) and send it, rather than stay mute."""
        guard = self.guard
        if (
            guard.height != self.core.height
            or guard.position in self._signed
            or guard.step not in (SignedStep.PREVOTE, SignedStep.PRECOMMIT)
        ):
            return
        vote_type = VoteType.PREVOTE if guard.step == SignedStep.PREVOTE else VoteType.PRECOMMIT
        vote = Vote(vote_type, guard.height, guard.round, guard.block_id, self.own_key)
        if request_for_vote(vote, self.chain_id).message_digest != guard.message_digest:
            return  # not a vote of ours on this chain: leave it alone
        signed = self._sign_vote(vote, actions)
        if signed is not None:
            self._dispatch(VoteReceived(signed), actions)


def _signature_of(message: ConsensusMessage) -> bytes:
    return message.signature if isinstance(message, Vote) else message.proposal.signature
