"""The simulator's adversaries of issue 17 items 1 and 2 (docs/spec/consensus.md §6) really
attack, and the shared runtime holds: each behaviour makes the correct nodes report the faults
it was built to cause, with no invariant violated."""

from __future__ import annotations

from collections import Counter

import pytest

from emrchain.consensus.runtime import PeerFault
from emrchain.sim.scenario import Behaviour, make_scenario, parse_faults
from emrchain.sim.simulation import Simulation, SimulationOptions

EXPECTED = {
    Behaviour.JUNK_PROPOSALS: {PeerFault.WRONG_PROPOSER, PeerFault.INVALID_SIGNATURE},
    Behaviour.EXTREME_TIME: {PeerFault.INVALID_BLOCK},
    Behaviour.FUTURE_FLOOD: {PeerFault.FLOOD},
}


@pytest.mark.parametrize("behaviour", list(EXPECTED), ids=lambda b: b.value)
def test_each_adversary_is_caught_and_the_chain_goes_on(behaviour: Behaviour) -> None:
    reports: Counter[PeerFault] = Counter()
    for seed in range(4):
        scenario = make_scenario(seed, 4, parse_faults(behaviour.value), heights=3)
        assert [b for _, b in scenario.byzantine] == [behaviour]
        simulation = Simulation(scenario, SimulationOptions())
        result = simulation.run()
        assert result.ok, result.violations
        for node in simulation.nodes:
            if node.correct:
                reports.update(node.peer_reports)
    assert EXPECTED[behaviour] <= set(reports), reports
