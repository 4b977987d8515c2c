"""A tiny runtime for unit tests of the core: it answers the core's requests like a node would
(feeds our own votes back, answers validation and value requests) and records every effect."""

from __future__ import annotations

import hashlib

from emrchain.consensus import (
    ConsensusConfig,
    Decide,
    ProposalReceived,
    RequestValue,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    StartHeight,
    Step,
    TendermintCore,
    TimeoutFired,
    ValidateValue,
    ValueToPropose,
    ValueValidated,
    VoteReceived,
)
from emrchain.crypto.keys import Ed25519Signer
from emrchain.types.validator import Validator, ValidatorSet
from emrchain.types.vote import NIL_BLOCK_ID, Proposal, Vote, VoteType

CONFIG = ConsensusConfig(
    timeout_propose_ms=300,
    timeout_prevote_ms=100,
    timeout_precommit_ms=100,
    timeout_delta_ms=50,
    max_round=10_000,
)
NIL = NIL_BLOCK_ID
PREVOTE = VoteType.PREVOTE
PRECOMMIT = VoteType.PRECOMMIT


def block(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


A, B, C = block("A"), block("B"), block("C")


def make_signers(count: int) -> list[Ed25519Signer]:
    signers = [Ed25519Signer(hashlib.sha256(b"test-key-%d" % i).digest()) for i in range(count)]
    return sorted(signers, key=lambda signer: signer.public_key)


class Runtime:
    """Drives one core the way a node does; `validity` answers `valid(v)` (default: valid)."""

    def __init__(
        self,
        own: int | None = 0,
        powers: list[int] | None = None,
        config: ConsensusConfig = CONFIG,
        core_class: type[TendermintCore] = TendermintCore,
    ) -> None:
        powers = powers or [1, 1, 1, 1]
        self.signers = make_signers(len(powers))
        self.keys = [signer.public_key for signer in self.signers]
        self.validator_set = ValidatorSet(
            Validator(key, power) for key, power in zip(self.keys, powers, strict=True)
        )
        self.own = own
        self.core = core_class(config, None if own is None else self.keys[own])
        self.validity: dict[bytes, bool] = {}
        self.value_to_propose = C
        self.effects: list = []
        self.height = 1

    # --- driving
    def start(self, height: int = 1, **resume) -> list:
        self.height = height
        return self.feed(StartHeight(height, self.validator_set, **resume))

    def feed(self, event) -> list:
        """Step `event` and everything the runtime would answer; return all effects."""
        produced = []
        queue = [event]
        while queue:
            effects = self.core.step(queue.pop(0))
            produced.extend(effects)
            for effect in effects:
                if isinstance(effect, SignVote):
                    queue.append(VoteReceived(effect.vote))
                elif isinstance(effect, SignProposal):
                    queue.append(ProposalReceived(effect.proposal))
                elif isinstance(effect, ValidateValue):
                    valid = self.validity.get(effect.block_id, True)
                    queue.append(ValueValidated(effect.height, effect.block_id, valid))
                elif isinstance(effect, RequestValue):
                    queue.append(ValueToPropose(effect.height, effect.round, self.value_to_propose))
        self.effects.extend(produced)
        return produced

    # --- messages from others
    def proposer_index(self, round_number: int, height: int | None = None) -> int:
        key = self.core.proposer(height or self.height, round_number)
        return self.keys.index(key)

    def round_proposed_by_other(self, start: int = 0) -> int:
        """The first round >= start whose proposer is not us."""
        round_number = start
        while self.proposer_index(round_number) == self.own:
            round_number += 1
        return round_number

    def round_proposed_by_us(self, start: int = 0) -> int:
        round_number = start
        while self.proposer_index(round_number) != self.own:
            round_number += 1
        return round_number

    def propose(self, round_number: int, block_id: bytes, pol_round: int = -1) -> list:
        proposer = self.keys[self.proposer_index(round_number)]
        proposal = Proposal(self.height, round_number, pol_round, block_id, proposer)
        return self.feed(ProposalReceived(proposal))

    def vote(self, index: int, vote_type: VoteType, round_number: int, block_id: bytes) -> list:
        vote = Vote(vote_type, self.height, round_number, block_id, self.keys[index])
        return self.feed(VoteReceived(vote))

    def votes(self, indexes, vote_type: VoteType, round_number: int, block_id: bytes) -> list:
        produced = []
        for index in indexes:
            produced.extend(self.vote(index, vote_type, round_number, block_id))
        return produced

    def others(self) -> list[int]:
        return [index for index in range(len(self.keys)) if index != self.own]

    def timeout(self, step: Step, round_number: int | None = None) -> list:
        round_number = self.core.round if round_number is None else round_number
        return self.feed(TimeoutFired(self.height, round_number, step))


def own_votes(effects, vote_type: VoteType | None = None) -> list[Vote]:
    return [
        effect.vote
        for effect in effects
        if isinstance(effect, SignVote) and (vote_type is None or effect.vote.type == vote_type)
    ]


def proposals(effects) -> list[Proposal]:
    return [effect.proposal for effect in effects if isinstance(effect, SignProposal)]


def timeouts(effects, step: Step | None = None) -> list[ScheduleTimeout]:
    return [
        effect
        for effect in effects
        if isinstance(effect, ScheduleTimeout) and (step is None or effect.step == step)
    ]


def decisions(effects) -> list[Decide]:
    return [effect for effect in effects if isinstance(effect, Decide)]
