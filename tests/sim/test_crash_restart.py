"""Crash and restart from persisted state only (docs/spec/consensus.md §4)."""

from __future__ import annotations

import dataclasses

from emrchain.consensus import SignedStep, SigningState
from emrchain.sim.scenario import Crash, CrashPoint, make_scenario
from emrchain.sim.simulation import Simulation

POINTS = (CrashPoint.AFTER_WAL, CrashPoint.AT_ONCE, CrashPoint.AFTER_SIGNING_STATE)


def scenario_with(crashes: tuple[Crash, ...]):
    base = make_scenario(5, 4, (), 3)
    return dataclasses.replace(base, crashes=crashes, powers=(1, 1, 1, 1), byzantine=())


def test_crash_right_after_persisting_then_resend_identical_vote() -> None:
    simulation = Simulation(scenario_with((Crash(1, 30, 700, CrashPoint.AFTER_SIGNING_STATE),)))
    result = simulation.run()
    assert result.ok, result.violations
    node = simulation.nodes[1]
    assert (node.restarts, node.crashes_after_persist) == (1, 1)
    # What survived is exactly the persisted record, and it decodes.
    assert SigningState.decode(node.storage.signing_state) == node.guard
    assert node.storage.decided_height >= 3


def test_every_node_crashing_once_still_agrees_and_decides() -> None:
    crashes = tuple(
        Crash(index, 40 + 90 * index, 400 + 150 * index, POINTS[index % 3])
        for index in range(4)
    )
    simulation = Simulation(scenario_with(crashes))
    result = simulation.run()
    assert result.ok, result.violations
    assert [node.restarts for node in simulation.nodes] == [1, 1, 1, 1]


def test_a_restarted_node_resumes_its_round_and_lock() -> None:
    simulation = Simulation(scenario_with(()))
    node = simulation.nodes[0]
    node.boot()
    block_id = b"\x07" * 32
    locked = SigningState(1, 4, SignedStep.PRECOMMIT, block_id, bytes(32), 4, block_id)
    node.storage.signing_state = locked.encode()
    node.crash()
    node.boot()
    state = node.core.state()
    assert (state.height, state.round, state.locked_round, state.locked_block_id) == (
        1,
        4,
        4,
        block_id,
    )
