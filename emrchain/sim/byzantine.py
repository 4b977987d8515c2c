"""Byzantine validators: at most f of them (by power), colluding through one `Adversary`.

Each runs the correct core inside the shared runtime (so it follows the rounds plausibly) but
its runtime replaces what it signs (`ByzantineRuntime` overrides the two signing hooks):
- SILENT: sends nothing at all;
- EQUIVOCATE: as proposer, two different blocks to two halves of the correct nodes; as voter,
  votes for one value to one half and another (or nil) to the other half;
- DOUBLE_VOTE: proposes honestly, splits its votes like EQUIVOCATE;
- INVALID_BLOCKS: proposes blocks the application rejects and prevotes/precommits for them;
- LYING_SYNC: votes honestly; claims height 10^12 every tick, leaves every other sync request
  unanswered and answers the rest (and peers it sees behind) with blocks their commits do not
  prove;
- WITHHOLD_PROPOSAL: votes honestly; as proposer, sends its proposal to every correct node but
  one, and sends that one the proposal and an unrequested sync response once it decides.
- JUNK_PROPOSALS: at each round it enters, proposals for the current and next height with
  forged signatures in the round proposer's name, validly signed ones for rounds it does not
  propose, and oversized ones; otherwise honest;
- EXTREME_TIME: as proposer, a block dated 2^63 - 1 or now + 10 years, and votes for it;
- FUTURE_FLOOD: at each round it enters, fresh signed proposals for heights 2..4 above its own.
It never consults the signing guard, never crashes and is never checked by I3.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from emrchain.consensus.runtime import Action, ConsensusRuntime, SignedProposal
from emrchain.consensus.state_machine import TendermintCore
from emrchain.crypto.keys import Ed25519Signer
from emrchain.sim.application import PAYLOAD_BYTES, block_id_of, make_block
from emrchain.sim.messages import (
    Message,
    ProposalMessage,
    StatusMessage,
    SyncResponse,
    VoteMessage,
)
from emrchain.sim.node import SimNode, SimulatedBlocks
from emrchain.sim.scenario import Behaviour
from emrchain.types.commit import CommitCertificate
from emrchain.types.vote import NIL_BLOCK_ID, Proposal, Vote, VoteType

if TYPE_CHECKING:
    from emrchain.sim.simulation import Simulation

HUGE_HEIGHT = 10**12
"""What a LYING_SYNC validator claims to have decided."""
HONEST_VOTERS = frozenset({Behaviour.LYING_SYNC, Behaviour.WITHHOLD_PROPOSAL})
"""Behaviours whose attack is elsewhere: they sign votes as a correct validator does."""


FLOOD_ROUNDS = 16
"""FUTURE_FLOOD: proposals per future height per round it enters."""
TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000


class Adversary:
    """What the colluding byzantine validators share: who gets which value."""

    def __init__(self, seed: int, correct: list[int]) -> None:
        self._seed = seed
        self._correct = correct
        self._groups: dict[tuple[int, int, int], tuple[frozenset[int], frozenset[int]]] = {}
        self.split_values: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        self.invalid_values: dict[tuple[int, int], bytes] = {}
        self.seen_proposals: dict[tuple[int, int], bytes] = {}

    def groups(
        self, height: int, round_number: int, step: int
    ) -> tuple[frozenset[int], frozenset[int]]:
        """A split of the correct nodes, drawn afresh per (height, round, step): proposals and
        prevotes share the prevote split, precommits get their own, so that the halves that
        lock and the halves that decide can differ (what an attack on the lock rule needs)."""
        key = (height, round_number, step)
        groups = self._groups.get(key)
        if groups is None:
            nodes = list(self._correct)
            random.Random(
                f"emrchain-sim/adversary/{self._seed}/{height}/{round_number}/{step}"
            ).shuffle(nodes)
            cut = len(nodes) // 2
            groups = self._groups[key] = (frozenset(nodes[:cut]), frozenset(nodes[cut:]))
        return groups

    def vote_value(
        self, height: int, round_number: int, vote_type: VoteType, destination: int
    ) -> bytes:
        """The block id a splitting byzantine votes for towards `destination`.

        It ignores its own lock and backs whatever value `destination` was proposed (each half
        its own value when a byzantine proposer equivocated), so that correct nodes can form
        polkas they should not; precommits for that value go to one half only and nil to the
        other, so that one half may decide while the other moves to the next round.
        """
        split = self.split_values.get((height, round_number))
        if split is not None:
            group_a, _ = self.groups(height, round_number, int(VoteType.PREVOTE))
            proposed = split[0] if destination in group_a else split[1]
        else:
            proposed = self.seen_proposals.get((height, round_number), NIL_BLOCK_ID)
        if vote_type == VoteType.PRECOMMIT:
            group_a, _ = self.groups(height, round_number, int(VoteType.PRECOMMIT))
            if destination not in group_a:
                return NIL_BLOCK_ID
        return proposed


class ByzantineNode(SimNode):
    correct = False

    def __init__(
        self,
        index: int,
        signer: Ed25519Signer,
        simulation: Simulation,
        make_core: Callable[[bytes], TendermintCore],
        *,
        behaviour: Behaviour,
        adversary: Adversary,
    ) -> None:
        super().__init__(index, signer, simulation, make_core)
        self.behaviour = behaviour
        self.adversary = adversary
        # WITHHOLD_PROPOSAL: height -> (the correct node kept in the dark, our proposal).
        self.withheld: dict[int, tuple[int, ProposalMessage]] = {}
        self._sync_requests_seen = 0

    def make_runtime(self) -> ConsensusRuntime[bytes]:
        return ByzantineRuntime(self, self._make_core(self.key))

    def deliver(self, source: int, message: Message) -> None:
        if self.behaviour == Behaviour.SILENT:
            return
        if isinstance(message, ProposalMessage):
            proposal = message.proposal
            self.adversary.seen_proposals.setdefault(
                (proposal.height, proposal.round), proposal.block_id
            )
        super().deliver(source, message)
        if self.alive:
            self._attack_on_new_round()

    def tick(self) -> None:
        if self.behaviour != Behaviour.SILENT:
            super().tick()
        if self.behaviour == Behaviour.LYING_SYNC:
            self.sim.broadcast(self.index, StatusMessage(HUGE_HEIGHT))

    def _push_blocks(self, peer: int, from_height: int, *, rate_limited: bool = True) -> None:
        if self.behaviour != Behaviour.LYING_SYNC:
            super()._push_blocks(peer, from_height, rate_limited=rate_limited)
            return
        self._sync_requests_seen += 1
        if self._sync_requests_seen % 2:
            return  # never answered: the asker must time out and ask someone else
        lie = self._lying_block(max(from_height, 1))
        if lie is not None:
            self.sim.send(self.index, peer, SyncResponse((lie,)))

    def _lying_block(self, height: int) -> tuple[bytes, CommitCertificate] | None:
        """A block for `height` with a real commit that does not prove it: the commit of the
        real block at `height` (another block id), or of our last decided height."""
        blocks = self.storage.blocks
        if not blocks:
            return None
        _, commit = blocks.get(height, blocks[len(blocks)])
        return make_block(height, 99, self.key, variant=3), commit

    def _commit(self, height: int, payload: bytes, commit: CommitCertificate) -> None:
        super()._commit(height, payload, commit)
        withheld = self.withheld.pop(height, None)
        if withheld is not None:
            # Late, together: the proposal and a sync response nobody asked for, for the block
            # the victim may be deciding through consensus at this very moment.
            victim, proposal = withheld
            self.sim.send(self.index, victim, proposal)
            self.sim.send(self.index, victim, SyncResponse(((payload, commit),)))

    def _attack_on_new_round(self) -> None:
        """JUNK_PROPOSALS and FUTURE_FLOOD strike once per (height, round) our core enters
        (runs are short: a gossip interval may never come)."""
        core = self.runtime.core
        position = (core.height, core.round)
        if core.height == 0 or position == getattr(self, "_attacked_at", None):
            return
        self._attacked_at = position
        self._attacks = getattr(self, "_attacks", 0) + 1
        if self.behaviour == Behaviour.JUNK_PROPOSALS:
            self._send_junk_proposals()
        elif self.behaviour == Behaviour.FUTURE_FLOOD:
            self._send_future_flood()

    def _send_junk_proposals(self) -> None:
        """Forged, wrong-proposer and oversized proposals for the current and next height
        (rounds r and r + 1): none may take a correct proposer's slot."""
        core, sim = self.runtime.core, self.sim
        for height in (core.height, core.height + 1):
            for round_number in (core.round, core.round + 1):
                named = core.proposer(height, round_number)
                payload = make_block(
                    height, round_number, self.key, variant=self._attacks % 256, time_ms=sim.now
                )
                block_id = block_id_of(payload)
                junk = hashlib.sha512(payload).digest()
                forged = Proposal(height, round_number, -1, block_id, named, junk)
                sim.broadcast(self.index, ProposalMessage.of(forged, payload))
                oversized = payload + bytes(PAYLOAD_BYTES)
                signed = Proposal.create(
                    self.signer, sim.chain_id, height, round_number, -1, block_id_of(oversized)
                )
                sim.broadcast(self.index, ProposalMessage.of(signed, oversized))
                if named != self.key:
                    signed = Proposal.create(
                        self.signer, sim.chain_id, height, round_number, -1, block_id
                    )
                    sim.broadcast(self.index, ProposalMessage.of(signed, payload))

    def _send_future_flood(self) -> None:
        """Fresh signed proposals (new ones each time) for heights 2..4 above ours."""
        height, sim = self.runtime.core.height, self.sim
        for above in (2, 3, 4):
            for round_number in range(FLOOD_ROUNDS):
                payload = make_block(
                    height + above,
                    round_number,
                    self.key,
                    variant=self._attacks % 256,
                    time_ms=sim.now,
                )
                signed = Proposal.create(
                    self.signer,
                    sim.chain_id,
                    height + above,
                    round_number,
                    -1,
                    block_id_of(payload),
                )
                # Where we are that round's proposer, this is a real proposal that may be
                # decided: the checker must know it was proposed (I2).
                sim.checker.on_proposal_signed(sim.now, self.index, signed, payload)
                sim.broadcast(self.index, ProposalMessage.of(signed, payload))

    def send_split(
        self, height: int, round_number: int, step: int, first: Message, second: Message
    ) -> None:
        group_a, _group_b = self.adversary.groups(height, round_number, step)
        for destination in range(self.sim.validators):
            if destination == self.index:
                continue
            chosen = first if destination in group_a else second
            self.sim.send(self.index, destination, chosen)


class ByzantineRuntime(ConsensusRuntime[bytes]):
    """The shared runtime with the adversary's signing: it sends straight onto the simulated
    network (no guard, no WAL: a byzantine validator never crashes) and feeds the core the
    message it would have sent to itself."""

    def __init__(self, node: ByzantineNode, core: TendermintCore) -> None:
        simulation = node.sim
        super().__init__(
            core,
            node.signer,
            simulation.chain_id,
            SimulatedBlocks(node.key, node),
            simulation.verifier,
            node.runtime_limits(),
        )
        self.node = node

    def _sign_vote(self, vote: Vote, actions: list[Action]) -> Vote | None:
        node = self.node
        if node.behaviour == Behaviour.SILENT:
            return None
        if node.behaviour in HONEST_VOTERS:
            return super()._sign_vote(vote, actions)
        sim = node.sim
        signed: dict[bytes, Vote] = {}

        def signed_for(block_id: bytes) -> Vote:
            if block_id not in signed:
                signed[block_id] = Vote.create(
                    node.signer, sim.chain_id, vote.type, vote.height, vote.round, block_id
                )
            return signed[block_id]

        if node.behaviour in (Behaviour.INVALID_BLOCKS, Behaviour.EXTREME_TIME):
            key = (vote.height, vote.round)
            own = signed_for(node.adversary.invalid_values.get(key, vote.block_id))
            sim.broadcast(node.index, VoteMessage.of(own))
        else:
            own = signed_for(vote.block_id)
            for destination in range(sim.validators):
                if destination == node.index:
                    continue
                block_id = node.adversary.vote_value(
                    vote.height, vote.round, vote.type, destination
                )
                sim.send(node.index, destination, VoteMessage.of(signed_for(block_id)))
        self._own_messages.append(own)
        return own

    def _sign_proposal(self, proposal: Proposal, actions: list[Action]) -> Proposal | None:
        node = self.node
        if node.behaviour == Behaviour.SILENT:
            return None
        if node.behaviour == Behaviour.WITHHOLD_PROPOSAL:
            return self._withhold_proposal(proposal)
        if node.behaviour not in (
            Behaviour.EQUIVOCATE,
            Behaviour.INVALID_BLOCKS,
            Behaviour.EXTREME_TIME,
        ):
            return super()._sign_proposal(proposal, actions)
        height, round_number = proposal.height, proposal.round
        sim = node.sim
        now = max(sim.now, node.previous_time_ms(height) + 1)
        if node.behaviour == Behaviour.INVALID_BLOCKS:
            payloads = [make_block(height, round_number, node.key, valid=False, time_ms=now)]
        elif node.behaviour == Behaviour.EXTREME_TIME:
            extreme = (1 << 63) - 1 if (height + round_number) % 2 else now + TEN_YEARS_MS
            payloads = [make_block(height, round_number, node.key, time_ms=extreme)]
        else:
            payloads = [
                make_block(height, round_number, node.key, variant=v, time_ms=now) for v in (1, 2)
            ]
        messages = []
        for payload in payloads:
            block_id = block_id_of(payload)
            self._keep_block(height, block_id, payload, own=True)
            signed = Proposal.create(node.signer, sim.chain_id, height, round_number, -1, block_id)
            sim.checker.on_proposal_signed(sim.now, node.index, signed, payload)
            messages.append(ProposalMessage.of(signed, payload))
        if node.behaviour in (Behaviour.INVALID_BLOCKS, Behaviour.EXTREME_TIME):
            node.adversary.invalid_values[(height, round_number)] = messages[0].proposal.block_id
            sim.broadcast(node.index, messages[0])
        else:
            node.adversary.split_values[(height, round_number)] = (
                messages[0].proposal.block_id,
                messages[1].proposal.block_id,
            )
            node.send_split(height, round_number, int(VoteType.PREVOTE), messages[0], messages[1])
        first = messages[0]
        self._own_messages.append(SignedProposal(first.proposal, first.payload))
        return first.proposal

    def _withhold_proposal(self, proposal: Proposal) -> Proposal | None:
        """Sign our block and send it to every correct node but one (drawn per height)."""
        node, sim = self.node, self.node.sim
        height, round_number = proposal.height, proposal.round
        payload = self._blocks.get(height, {}).get(proposal.block_id)
        if payload is None:
            return None
        signed = Proposal.create(
            node.signer, sim.chain_id, height, round_number, proposal.pol_round, proposal.block_id
        )
        sim.checker.on_proposal_signed(sim.now, node.index, signed, payload)
        message = ProposalMessage.of(signed, payload)
        group_a, group_b = node.adversary.groups(height, round_number, int(VoteType.PREVOTE))
        victim = min(group_b or group_a)
        node.withheld.setdefault(height, (victim, message))
        for destination in range(sim.validators):
            if destination not in (node.index, victim):
                sim.send(node.index, destination, message)
        # Not in our own messages: the runtime's retransmission would hand it to the victim.
        return signed
