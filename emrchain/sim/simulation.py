"""One deterministic run: n validators on virtual time, faults from the scenario, checkers on.

The event loop is a heap of (time_ms, sequence, kind, node, data); the sequence number makes
the order total, so a seed replays bit for bit. `trace_hash` digests every processed event.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emrchain.consensus.config import ConsensusConfig
from emrchain.consensus.events import TimeoutFired
from emrchain.consensus.proposer import ProposerSelector
from emrchain.consensus.step import Step
from emrchain.crypto.keys import Ed25519Signer
from emrchain.sim.byzantine import Adversary, ByzantineNode
from emrchain.sim.checkers import InvariantChecker, Violation
from emrchain.sim.messages import Message
from emrchain.sim.network import Network
from emrchain.sim.node import SYNC_INTERVAL_MS, CrashNow, SimNode
from emrchain.sim.scenario import Crash, CrashPoint, Scenario
from emrchain.sim.variants import core_factory
from emrchain.types.commit import CommitCertificate
from emrchain.types.validator import Validator, ValidatorSet
from emrchain.types.vote import Proposal, Vote

CHAIN_ID = b"emrchain-sim"
SIM_CONFIG = ConsensusConfig(
    timeout_propose_ms=400,
    timeout_prevote_ms=200,
    timeout_precommit_ms=200,
    timeout_delta_ms=100,
    max_round=10_000,  # the bound the simulations have always run with; runs end far below it
)

_DELIVER, _TIMEOUT, _TICK, _CRASH, _RESTART, _GST = range(6)


@dataclass(frozen=True)
class SimulationOptions:
    variant: str = "correct"
    config: ConsensusConfig = SIM_CONFIG
    gossip_interval_ms: int = 1_000
    max_events: int = 3_000_000


@dataclass
class SimulationResult:
    scenario: Scenario
    variant: str
    violations: list[Violation] = field(default_factory=list)
    heights_decided: int = 0
    virtual_time_ms: int = 0
    events: int = 0
    trace_hash: str = ""
    restart_path: dict[str, int] = field(default_factory=dict)
    """Over the correct nodes: restarts, crashes at each signing crash point, messages
    re-sent after a restart, signatures said again instead of re-signed differently, and
    guard refusals (a correct node's are a bug: the runtime says again what it said)."""

    @property
    def safety_violations(self) -> list[Violation]:
        return [violation for violation in self.violations if violation.is_safety]

    @property
    def liveness_failures(self) -> list[Violation]:
        return [violation for violation in self.violations if not violation.is_safety]

    @property
    def ok(self) -> bool:
        return not self.violations


class MemoisedVerifier:
    """Ingress signature checks, memoised: each distinct message is verified once per
    simulation (a node verifies each message once at ingress; n nodes need not repeat it)."""

    def __init__(self, chain_id: bytes) -> None:
        self._chain_id = chain_id
        self._votes: dict[Vote, bool] = {}
        self._proposals: dict[Proposal, bool] = {}

    def vote(self, vote: Vote) -> bool:
        verdict = self._votes.get(vote)
        if verdict is None:
            verdict = self._votes[vote] = vote.verify(self._chain_id)
        return verdict

    def proposal(self, proposal: Proposal) -> bool:
        verdict = self._proposals.get(proposal)
        if verdict is None:
            verdict = self._proposals[proposal] = proposal.verify(self._chain_id)
        return verdict


def signer_for(seed: int, validators: int, index: int) -> Ed25519Signer:
    """Deterministic keys per (seed, n, index), so the proposer order varies with the seed."""
    material = f"emrchain-sim/key/{seed}/{validators}/{index}".encode()
    return Ed25519Signer(hashlib.sha256(material).digest())


class Simulation:
    def __init__(self, scenario: Scenario, options: SimulationOptions | None = None) -> None:
        self.options = options = options or SimulationOptions()
        self.scenario = scenario
        self.config = options.config
        self.chain_id = CHAIN_ID
        self.validators = n = scenario.validators
        signers = [signer_for(scenario.seed, n, index) for index in range(n)]
        self.validator_set = ValidatorSet(
            Validator(signer.public_key, power)
            for signer, power in zip(signers, scenario.powers, strict=True)
        )
        byzantine = scenario.byzantine_nodes
        correct = [index for index in range(n) if index not in byzantine]
        self.checker = InvariantChecker(
            self.chain_id,
            self.validator_set,
            [signer.public_key for signer in signers],
            [index not in byzantine for index in range(n)],
        )
        self.network = Network(
            scenario,
            random.Random(f"emrchain-sim/network/{scenario.seed}/{n}/{','.join(scenario.faults)}"),
        )
        make_core = core_factory(options.variant, self.config)
        adversary = Adversary(scenario.seed, correct)
        self.nodes: list[SimNode] = []
        for index, signer in enumerate(signers):
            if index in byzantine:
                node: SimNode = ByzantineNode(
                    index, signer, self, make_core, behaviour=byzantine[index], adversary=adversary
                )
            else:
                node = SimNode(index, signer, self, make_core)
            self.nodes.append(node)
        self.correct_nodes = [self.nodes[index] for index in correct]
        self.now = 0
        self._heap: list[tuple[int, int, int, int, Any]] = []  # data: by kind
        self._sequence = itertools.count()
        self.verifier = MemoisedVerifier(self.chain_id)
        self._trace = hashlib.sha256()
        self._target_height: int | None = None
        self._decisions_changed = False

    # ------------------------------------------------------------- host interface

    def _push(self, time_ms: int, kind: int, node: int, data: object) -> None:
        heapq.heappush(self._heap, (time_ms, next(self._sequence), kind, node, data))

    def send(self, source: int, destination: int, message: Message) -> None:
        ahead = (
            self.nodes[source].storage.decided_height
            > self.nodes[destination].storage.decided_height
        )
        for time_ms in self.network.arrival_times(
            self.now, source, destination, source_ahead=ahead
        ):
            self._push(time_ms, _DELIVER, destination, (source, message))

    def broadcast(self, source: int, message: Message) -> None:
        for destination in range(self.validators):
            if destination != source:
                self.send(source, destination, message)

    def schedule_timeout(self, node: SimNode, duration_ms: int, event: TimeoutFired) -> None:
        self._push(self.now + duration_ms, _TIMEOUT, node.index, (node.incarnation, event))

    def commit_is_valid(self, commit: CommitCertificate, height: int, block_id: bytes) -> bool:
        return self.checker.commit_error(commit, height, block_id) is None

    def note_decision(self) -> None:
        self._decisions_changed = True

    # ---------------------------------------------------------------------- loop

    def liveness_bound_ms(self, round_at_gst: int) -> int:
        """Virtual time after GST within which every correct node must decide K heights.

        Per height: 2L + 4 rounds (L = proposer schedule length, so each correct validator
        proposes at least twice) at full timeouts plus 4 message delays each; the first height
        starts from the highest round a correct node reached before GST. Plus slack for the
        retransmission tick and block sync.
        """
        config = self.config
        delay = self.scenario.delay_after_gst_max_ms
        rounds = 2 * ProposerSelector(self.validator_set).schedule_length + 4

        def round_ms(round_number: int) -> int:
            return (
                sum(config.timeout_ms(step, round_number) for step in Step if step != Step.COMMIT)
                + 4 * delay
            )

        first = sum(round_ms(round_at_gst + offset) for offset in range(rounds))
        later = sum(round_ms(offset) for offset in range(rounds))
        slack = 3 * self.options.gossip_interval_ms + 2 * SYNC_INTERVAL_MS
        return first + (self.scenario.heights - 1) * later + slack

    def _crash(self, node: SimNode) -> None:
        node.crash()
        self._trace.update(f"{self.now}|crash|{node.index}".encode())

    def _call(self, node: SimNode, method: Callable[..., None], *args: object) -> None:
        try:
            method(*args)
        except CrashNow:
            self._crash(node)

    def _reached_target(self, target: int) -> bool:
        return all(node.storage.decided_height >= target for node in self.correct_nodes)

    def run(self) -> SimulationResult:
        scenario = self.scenario
        for node in self.nodes:
            node.boot()
            self._push(self.options.gossip_interval_ms + 7 * node.index, _TICK, node.index, None)
        for crash in scenario.crashes:
            self._push(crash.at_ms, _CRASH, crash.node, crash)
        self._push(scenario.gst_ms, _GST, 0, None)
        deadline: int | None = None
        events = 0
        heap = self._heap
        trace = self._trace
        nodes = self.nodes
        checker = self.checker
        while heap:
            time_ms, _, kind, index, data = heapq.heappop(heap)
            if deadline is not None and time_ms > deadline:
                self.now = deadline
                self._liveness_failure("no decision of the target height within the bound")
                break
            self.now = time_ms
            events += 1
            if events > self.options.max_events:
                self._liveness_failure(f"event cap {self.options.max_events} reached")
                break
            node = nodes[index]
            if kind == _DELIVER:
                if not node.alive:
                    continue
                source, message = data
                key = getattr(message, "key", None) or repr(message).encode()
                trace.update(b"%d|%d|%d|" % (time_ms, source, index) + key)
                self._call(node, node.deliver, source, message)
            elif kind == _TIMEOUT:
                incarnation, event = data
                if node.alive and incarnation == node.incarnation:
                    trace.update(
                        b"%d|t|%d|%d|%d|%d"
                        % (time_ms, index, event.height, event.round, event.step)
                    )
                    self._call(node, node.timeout, event)
            elif kind == _TICK:
                if node.alive:
                    self._call(node, node.tick)
                self._push(time_ms + self.options.gossip_interval_ms, _TICK, index, None)
            elif kind == _CRASH:
                self._start_crash(node, data)
            elif kind == _RESTART:
                if node.alive and node.crash_armed:
                    self._crash(node)  # the armed crash never found a signature to interrupt
                if not node.alive:
                    node.restarts += 1
                    trace.update(b"%d|restart|%d" % (time_ms, index))
                    self._call(node, node.boot)
            elif kind == _GST:
                round_at_gst = max(
                    (node.core.round for node in self.correct_nodes if node.alive), default=0
                )
                self._target_height = scenario.heights + max(
                    node.storage.decided_height for node in self.correct_nodes
                )
                deadline = time_ms + self.liveness_bound_ms(round_at_gst)
                self._decisions_changed = True
            if self._decisions_changed and self._target_height is not None:
                self._decisions_changed = False
                if self._reached_target(self._target_height):
                    break
            if checker.agreement_violated:
                break  # nothing after a disagreement is worth simulating
        else:
            if self._target_height is None or not self._reached_target(self._target_height):
                self._liveness_failure("event queue ran dry")
        restart_path = self._restart_path()
        return SimulationResult(
            scenario=scenario,
            variant=self.options.variant,
            violations=list(checker.violations),
            heights_decided=min(node.storage.decided_height for node in self.correct_nodes),
            virtual_time_ms=self.now,
            events=events,
            trace_hash=trace.hexdigest(),
            restart_path=restart_path,
        )

    def _restart_path(self) -> dict[str, int]:
        """Totals over the correct nodes; checks I7 (no guard refusal) on each."""
        totals: Counter[str] = Counter()
        for node in self.correct_nodes:
            counters = node.restart_counters()
            self.checker.on_signatures_refused(self.now, node.index, counters["refused_signatures"])
            totals["restarts"] += node.restarts
            totals.update(counters)
        return dict(sorted(totals.items()))

    def _start_crash(self, node: SimNode, crash: Crash) -> None:
        if node.alive:
            if crash.point is CrashPoint.AT_ONCE:
                self._crash(node)
            else:
                node.crash_point = crash.point
        self._push(crash.restart_ms, _RESTART, node.index, None)

    def _liveness_failure(self, reason: str) -> None:
        heights = [node.storage.decided_height for node in self.correct_nodes]
        self.checker.on_liveness_failure(
            self.now, f"{reason}: target height {self._target_height}, correct nodes at {heights}"
        )


def run_scenario(scenario: Scenario, variant: str = "correct") -> SimulationResult:
    return Simulation(scenario, SimulationOptions(variant=variant)).run()
