"""Tendermint consensus as a pure state machine: `TendermintCore.step(event) -> list[effect]`.

This is Algorithm 1 of Buchman, Kwon and Milosevic, "The latest gossip on BFT consensus"
(arXiv:1807.04938); comments cite its line numbers. "2f+1" there means more than 2/3 of the
voting power and "f+1" more than 1/3 (`ValidatorSet.has_quorum`, `exceeds_one_third`).
A value is a 32-byte block id; the runtime holds the block itself.

Deviations from the paper, all documented in docs/spec/consensus.md §1:
- the proposer also schedules the propose timeout, so a proposer whose own proposal never
  comes back (application slow, signing refused after a restart) does not stall the round;
- after deciding, the core waits in `Step.COMMIT` for `StartHeight` instead of starting the
  next height itself, so the runtime can apply the block (or a synced one) first;
- every buffer is bounded (see `ConsensusConfig`), with counted drops.

Nothing here reads a clock, draws randomness, performs I/O or signs.
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.consensus.config import ConsensusConfig
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
from emrchain.consensus.step import Step
from emrchain.consensus.vote_tally import HeightVotes
from emrchain.invariants import invariant
from emrchain.types.commit import CommitCertificate
from emrchain.types.evidence import DuplicateVoteEvidence
from emrchain.types.validator import ValidatorSet
from emrchain.types.vote import NIL_BLOCK_ID, Proposal, Vote, VoteType

MAX_EVALUATION_PASSES = 12
"""Bound of invariant C1 (docs/spec/consensus.md §5.1). A pass of `_evaluate` decides, skips
to a higher round (at most once per call: the round then equals the changed round), fires one
of five rules that can each fire at most once per round (prevote on a proposal and nil
precommit leave their step; the timeout and polka rules have "first time" guards), or ends
the loop. Rules of at most two rounds (before and after the skip): 2 × 5 + 1 skip + 1 last."""


@dataclass(frozen=True, slots=True)
class ConsensusState:
    """A read-only snapshot of the paper's process variables (for tests and the runtime)."""

    height: int
    round: int
    step: Step
    locked_round: int
    locked_block_id: bytes | None
    valid_round: int
    valid_block_id: bytes | None
    decided_block_id: bytes | None


class TendermintCore:
    """One validator's (or observer's) consensus state for the current height.

    `own_key` is our validator public key; None, or a key outside the validator set, makes an
    observer that follows the protocol but never asks to sign.
    """

    def __init__(self, config: ConsensusConfig, own_key: bytes | None = None) -> None:
        config.validate()
        self.config = config
        self.own_key = own_key
        self.height = 0
        self.validator_set = ValidatorSet(())  # empty until the first StartHeight
        self._selector: ProposerSelector | None = None
        self.drop_counts: dict[str, int] = {}
        self._future: list[VoteReceived | ProposalReceived] = []
        self._future_count: dict[bytes, int] = {}
        self._effects: list[Effect] = []
        self._reset_height()

    # ----------------------------------------------------------------- public interface

    def step(self, event: Event) -> list[Effect]:
        """Apply one event and return the effects the runtime must carry out, in order."""
        effects: list[Effect] = []
        self._effects = effects
        if isinstance(event, VoteReceived):
            self._on_vote(event.vote)
        elif isinstance(event, ProposalReceived):
            self._on_proposal(event.proposal)
        elif isinstance(event, TimeoutFired):
            self._on_timeout(event)
        elif isinstance(event, ValueValidated):
            self._on_value_validated(event)
        elif isinstance(event, ValueToPropose):
            self._on_value_to_propose(event)
        elif isinstance(event, StartHeight):
            self._on_start_height(event)
        else:
            raise TypeError(f"not a consensus event: {type(event).__name__}")
        return effects

    def state(self) -> ConsensusState:
        """The current process variables."""
        return ConsensusState(
            self.height,
            self.round,
            self.round_step,
            self.locked_round,
            self.locked_block_id,
            self.valid_round,
            self.valid_block_id,
            self.decided_block_id,
        )

    def proposer(self, height: int, round_number: int) -> bytes:
        """Proposer of (height, round) under the current validator set."""
        if self._selector is None:
            raise RuntimeError("no height started")
        return self._selector.proposer(height, round_number)

    def votes_to_gossip(self) -> list[Vote]:
        """The votes counted in our round and the one before it: what a node stuck at this
        height passes on again (the paper's gossip assumption, for messages whose sender
        will not re-send them itself)."""
        rounds = (self.round - 1, self.round) if self.round > 0 else (0,)
        return [
            vote for round_number in rounds for vote in self._votes.counted_in_round(round_number)
        ]

    def prevotes_for(self, round_number: int, block_id: bytes) -> list[Vote]:
        """The counted prevotes for `block_id` in `round_number` of the current height.

        The runtime sends these along with a proposal whose pol_round is `round_number`, so
        that locked processes can see the polka the paper's gossip assumption promises them.
        """
        return self._votes.votes_for(round_number, VoteType.PREVOTE, block_id)

    # ------------------------------------------------- thresholds and the lock rule (hooks)
    # The simulator's deliberately broken variants override these four methods (and only
    # these) to show that the checkers catch a wrong rule; production code never does.

    def _is_quorum(self, power: int) -> bool:
        """The paper's 2f+1: more than 2/3 of the total voting power."""
        return self.validator_set.has_quorum(power)

    def _exceeds_one_third(self, power: int) -> bool:
        """The paper's f+1: more than 1/3, so at least one correct validator is included."""
        return self.validator_set.exceeds_one_third(power)

    def _may_prevote_fresh(self, block_id: bytes) -> bool:
        """Line 23: lockedRound_p = -1 ∨ lockedValue_p = v."""
        return self.locked_round == -1 or self.locked_block_id == block_id

    def _may_prevote_with_pol(self, block_id: bytes, pol_round: int) -> bool:
        """Line 29: lockedRound_p ≤ vr ∨ lockedValue_p = v."""
        return self.locked_round <= pol_round or self.locked_block_id == block_id

    # ------------------------------------------------------------------------ handlers

    def _reset_height(self) -> None:
        """Line 53 (and initialisation): forget everything about the previous height."""
        self.round = 0
        self.round_step = Step.PROPOSE
        self.locked_round = -1
        self.locked_block_id: bytes | None = None
        self.valid_round = -1
        self.valid_block_id: bytes | None = None
        self.decided_block_id: bytes | None = None
        self._votes = HeightVotes()
        self._proposals: dict[int, list[Proposal]] = {}
        self._proposal_rounds: dict[bytes, list[int]] = {}
        self._validity: dict[bytes, bool] = {}
        self._validation_requested: set[bytes] = set()
        self._round_senders: dict[int, set[bytes]] = {}
        self._round_sender_power: dict[int, int] = {}
        self._catchup_rounds: dict[bytes, list[int]] = {}
        # "for the first time" guards of lines 34, 36 and 47, per round.
        self._prevote_timeout_rounds: set[int] = set()
        self._polka_rounds: set[int] = set()
        self._precommit_timeout_rounds: set[int] = set()
        self._awaiting_value_round: int | None = None
        self._evidence_reported: set[tuple[bytes, VoteType, int]] = set()

    def _drop(self, reason: str) -> None:
        self.drop_counts[reason] = self.drop_counts.get(reason, 0) + 1

    def _on_start_height(self, event: StartHeight) -> None:
        if event.height <= self.height:
            self._drop("stale_start_height")
            return
        buffered = self._future if event.height == self.height + 1 else []
        if len(buffered) != len(self._future):
            self.drop_counts["future_height_discarded"] = self.drop_counts.get(
                "future_height_discarded", 0
            ) + len(self._future)
        self._future = []
        self._future_count = {}
        if self._selector is None or event.validator_set != self.validator_set:
            self._selector = ProposerSelector(event.validator_set)
        self.validator_set = event.validator_set
        self.height = event.height
        self._reset_height()
        if event.locked_round >= 0 and event.locked_block_id is not None:
            self.locked_round = self.valid_round = event.locked_round
            self.locked_block_id = self.valid_block_id = event.locked_block_id
        self._start_round(min(max(event.round, 0), self.config.max_round))
        for message in buffered:
            if isinstance(message, VoteReceived):
                self._on_vote(message.vote)
            else:
                self._on_proposal(message.proposal)

    def _accept_height(
        self, height: int, sender: bytes, event: VoteReceived | ProposalReceived
    ) -> bool:
        """True if the message is for the current height; buffer height + 1 (bounded)."""
        if height == self.height and self.height > 0:
            if self.round_step == Step.COMMIT:
                self._drop("height_already_decided")
                return False
            return True
        if self.height == 0:
            self._drop("not_started")
        elif height == self.height + 1:
            if sender not in self.validator_set:
                self._drop("not_a_validator")
            elif self._future_count.get(sender, 0) >= self.config.max_future_messages_per_validator:
                self._drop("future_buffer_full")
            else:
                self._future_count[sender] = self._future_count.get(sender, 0) + 1
                self._future.append(event)
        elif height < self.height:
            self._drop("stale_height")
        else:
            self._drop("far_future_height")
        return False

    def _admit_round(self, sender: bytes, round_number: int) -> bool:
        """Bound the rounds we keep state for: up to round_p + 1 freely, beyond that at most
        `max_catchup_rounds_per_validator` distinct rounds opened per validator."""
        if round_number > self.config.max_round:
            self._drop("round_beyond_max")
            return False
        if round_number <= self.round + 1 or round_number in self._round_senders:
            return True
        # Rounds we have since caught up with no longer count against the sender.
        opened = [r for r in self._catchup_rounds.get(sender, ()) if r > self.round + 1]
        self._catchup_rounds[sender] = opened
        if round_number in opened:
            return True
        if len(opened) >= self.config.max_catchup_rounds_per_validator:
            self._drop("catchup_rounds_exhausted")
            return False
        opened.append(round_number)
        return True

    def _note_sender(self, round_number: int, sender: bytes, power: int) -> None:
        """Line 55 counts distinct senders of any message of a round, weighted by power."""
        senders = self._round_senders.get(round_number)
        if senders is None:
            senders = self._round_senders[round_number] = set()
        if sender not in senders:
            senders.add(sender)
            self._round_sender_power[round_number] = (
                self._round_sender_power.get(round_number, 0) + power
            )

    def _on_proposal(self, proposal: Proposal) -> None:
        if not self._accept_height(proposal.height, proposal.proposer, ProposalReceived(proposal)):
            return
        if proposal.proposer != self.proposer(proposal.height, proposal.round):
            self._drop("not_the_proposer")
            return
        if not self._admit_round(proposal.proposer, proposal.round):
            return
        proposals = self._proposals.setdefault(proposal.round, [])
        for known in proposals:
            if known.block_id == proposal.block_id and known.pol_round == proposal.pol_round:
                return
        if len(proposals) >= self.config.max_proposals_per_round:
            self._drop("proposals_per_round_exceeded")
            return
        proposals.append(proposal)
        self._proposal_rounds.setdefault(proposal.block_id, []).append(proposal.round)
        power = self.validator_set.power_of(proposal.proposer)
        self._note_sender(proposal.round, proposal.proposer, power)
        block_id = proposal.block_id
        # A refused value is asked about again when proposed again: validity may depend on
        # the local clock (BFT time), and a block valid on a later clock must get its chance.
        if self._validity.get(block_id) is not True and block_id not in self._validation_requested:
            self._validation_requested.add(block_id)
            self._effects.append(ValidateValue(self.height, block_id))
        self._evaluate(proposal.round)

    def _on_vote(self, vote: Vote) -> None:
        if not self._accept_height(vote.height, vote.validator, VoteReceived(vote)):
            return
        power = self.validator_set.power_of(vote.validator)
        if power == 0:
            self._drop("not_a_validator")
            return
        if not self._admit_round(vote.validator, vote.round):
            return
        # One vote per block id it could be for: each allowed proposal, or nil.
        added, earlier = self._votes.add(vote, power, self.config.max_proposals_per_round + 1)
        if earlier is not None:
            key = (vote.validator, vote.type, vote.round)
            if key not in self._evidence_reported:
                self._evidence_reported.add(key)
                evidence = DuplicateVoteEvidence.from_votes(earlier, vote)
                self._effects.append(ReportEvidence(evidence))
        if not added:
            if earlier is not None:
                self._drop("conflicting_vote")
            return
        self._note_sender(vote.round, vote.validator, power)
        self._evaluate(vote.round)

    def _on_timeout(self, event: TimeoutFired) -> None:
        if event.height != self.height or event.round != self.round:
            return
        if event.step == Step.PROPOSE and self.round_step == Step.PROPOSE:
            self._prevote(NIL_BLOCK_ID)  # lines 57-60
        elif event.step == Step.PREVOTE and self.round_step == Step.PREVOTE:
            self._precommit(NIL_BLOCK_ID)  # lines 61-64
        elif event.step == Step.PRECOMMIT and self.round_step != Step.COMMIT:
            if self.round >= self.config.max_round:  # lines 65-67, bounded
                self._drop("max_round_reached")
                return
            self._start_round(self.round + 1)
        else:
            return
        self._evaluate(self.round)

    def _on_value_validated(self, event: ValueValidated) -> None:
        if event.height != self.height or self._validity.get(event.block_id) is True:
            return
        if event.block_id not in self._validation_requested:
            # Unsolicited answers could otherwise grow the map without bound.
            self._drop("unrequested_validation")
            return
        if not event.valid:
            self._validation_requested.discard(event.block_id)
        self._validity[event.block_id] = bool(event.valid)
        for round_number in list(self._proposal_rounds.get(event.block_id, ())):
            if self.round_step == Step.COMMIT:
                return
            self._evaluate(round_number)

    def _on_value_to_propose(self, event: ValueToPropose) -> None:
        if (
            event.height != self.height
            or event.round != self.round
            or self.round_step != Step.PROPOSE
            or self._awaiting_value_round != self.round
        ):
            return
        if len(event.block_id) != 32 or event.block_id == NIL_BLOCK_ID:
            self._drop("invalid_value_to_propose")
            return
        self._awaiting_value_round = None
        own_key = self._voter_key()
        if own_key is not None:  # always: only a voting proposer awaits a value
            proposal = Proposal(self.height, self.round, -1, event.block_id, own_key)
            self._effects.append(SignProposal(proposal))

    # ---------------------------------------------------------------- the algorithm

    def _voter_key(self) -> bytes | None:
        """Our key if we vote in this height's set; None for an observer."""
        own_key = self.own_key
        return own_key if own_key is not None and own_key in self.validator_set else None

    def _start_round(self, round_number: int) -> None:
        """Lines 10-21 (StartRound)."""
        self.round = round_number
        self.round_step = Step.PROPOSE
        self._awaiting_value_round = None
        own_key = self._voter_key()
        if own_key is not None and self.proposer(self.height, round_number) == own_key:
            if self.valid_block_id is not None:  # lines 14-15: carry the valid value over
                proposal = Proposal(
                    self.height, round_number, self.valid_round, self.valid_block_id, own_key
                )
                self._effects.append(SignProposal(proposal))
            else:  # line 16: getValue()
                self._awaiting_value_round = round_number
                self._effects.append(RequestValue(self.height, round_number))
        # Line 19, scheduled by the proposer too (a deviation, see the module docstring).
        self._effects.append(
            ScheduleTimeout(
                self.height,
                round_number,
                Step.PROPOSE,
                self.config.timeout_ms(Step.PROPOSE, round_number),
            )
        )

    def _prevote(self, block_id: bytes) -> None:
        own_key = self._voter_key()
        if own_key is not None:
            vote = Vote(VoteType.PREVOTE, self.height, self.round, block_id, own_key)
            self._effects.append(SignVote(vote))
        self.round_step = Step.PREVOTE

    def _precommit(self, block_id: bytes) -> None:
        own_key = self._voter_key()
        if own_key is not None:
            vote = Vote(VoteType.PRECOMMIT, self.height, self.round, block_id, own_key)
            self._effects.append(SignVote(vote))
        self.round_step = Step.PRECOMMIT

    def _evaluate(self, changed_round: int) -> None:
        """Fire every upon-rule enabled by a change in `changed_round`, until none is."""
        passes = 0
        while self.round_step != Step.COMMIT:
            passes += 1
            invariant(
                passes <= MAX_EVALUATION_PASSES,
                "C1 progress: each pass of the evaluation loop fires a rule that fires at most "
                "once per round",
            )
            if self._try_decide(changed_round):
                return
            if changed_round > self.round and self._exceeds_one_third(
                self._round_sender_power.get(changed_round, 0)
            ):
                self._start_round(changed_round)  # lines 55-56
                continue
            if not (
                self._rule_prevote_on_proposal()
                or self._rule_prevote_timeout()
                or self._rule_polka_for_value()
                or self._rule_polka_for_nil()
                or self._rule_precommit_timeout()
            ):
                return

    def _rule_prevote_on_proposal(self) -> bool:
        """Lines 22-27 (fresh proposal) and 28-33 (proposal re-proposing a polka value)."""
        if self.round_step != Step.PROPOSE:
            return False
        for proposal in self._proposals.get(self.round, ()):
            block_id = proposal.block_id
            valid = self._validity.get(block_id)
            if valid is None:
                continue  # wait for the application's answer (or the propose timeout)
            pol_round = proposal.pol_round
            if pol_round == -1:
                accept = valid and self._may_prevote_fresh(block_id)
            elif pol_round < self.round and self._is_quorum(
                self._votes.power_for(pol_round, VoteType.PREVOTE, block_id)
            ):
                accept = valid and self._may_prevote_with_pol(block_id, pol_round)
            else:
                continue
            self._prevote(block_id if accept else NIL_BLOCK_ID)
            return True
        return False

    def _rule_prevote_timeout(self) -> bool:
        """Lines 34-35: 2f+1 prevotes of any kind, for the first time in the round."""
        if (
            self.round_step == Step.PREVOTE
            and self.round not in self._prevote_timeout_rounds
            and self._is_quorum(self._votes.total_power(self.round, VoteType.PREVOTE))
        ):
            self._prevote_timeout_rounds.add(self.round)
            self._schedule(Step.PREVOTE)
            return True
        return False

    def _rule_polka_for_value(self) -> bool:
        """Lines 36-43: a valid proposal with 2f+1 prevotes: lock (if still prevoting) and
        remember it as the valid value, for the first time in the round."""
        if (
            self.round_step not in (Step.PREVOTE, Step.PRECOMMIT)
            or self.round in self._polka_rounds
        ):
            return False
        for proposal in self._proposals.get(self.round, ()):
            block_id = proposal.block_id
            if self._validity.get(block_id) and self._is_quorum(
                self._votes.power_for(self.round, VoteType.PREVOTE, block_id)
            ):
                self._polka_rounds.add(self.round)
                if self.round_step == Step.PREVOTE:
                    self.locked_block_id = block_id
                    self.locked_round = self.round
                    self._precommit(block_id)
                self.valid_block_id = block_id
                self.valid_round = self.round
                return True
        return False

    def _rule_polka_for_nil(self) -> bool:
        """Lines 44-46: 2f+1 prevotes for nil while prevoting: precommit nil."""
        if self.round_step == Step.PREVOTE and self._is_quorum(
            self._votes.power_for(self.round, VoteType.PREVOTE, NIL_BLOCK_ID)
        ):
            self._precommit(NIL_BLOCK_ID)
            return True
        return False

    def _rule_precommit_timeout(self) -> bool:
        """Lines 47-48: 2f+1 precommits of any kind, for the first time in the round."""
        if self.round not in self._precommit_timeout_rounds and self._is_quorum(
            self._votes.total_power(self.round, VoteType.PRECOMMIT)
        ):
            self._precommit_timeout_rounds.add(self.round)
            self._schedule(Step.PRECOMMIT)
            return True
        return False

    def _try_decide(self, round_number: int) -> bool:
        """Lines 49-54: a proposal from the round's proposer, 2f+1 precommits for it, valid."""
        votes = self._votes.round_votes(round_number, VoteType.PRECOMMIT)
        if votes is None:
            return False
        for block_id, power in votes.blocks():
            if (
                self._is_quorum(power)
                and self._validity.get(block_id)
                and round_number in self._proposal_rounds.get(block_id, ())
            ):
                invariant(self.decided_block_id is None, "I1 agreement: one decision per height")
                commit = CommitCertificate.from_precommits(votes.votes_for(block_id))
                self.decided_block_id = block_id
                self.round_step = Step.COMMIT
                self._effects.append(Decide(self.height, round_number, block_id, commit))
                return True
        return False

    def _schedule(self, step: Step) -> None:
        self._effects.append(
            ScheduleTimeout(self.height, self.round, step, self.config.timeout_ms(step, self.round))
        )
