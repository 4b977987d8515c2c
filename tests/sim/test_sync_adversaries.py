"""The simulator's block-sync adversaries (issue 17): LYING_SYNC and WITHHOLD_PROPOSAL seeds keep
safety and liveness, and the shared `SyncPeers` policy's paths (timeouts, demotions, refused
lying blocks) actually run in them, so a regression there shows up in the simulator too."""

from __future__ import annotations

from emrchain.sim.scenario import Behaviour, make_scenario, parse_faults
from emrchain.sim.simulation import Simulation

FAULTS = parse_faults("network,byzantine,lying-sync,withhold-proposal")


def test_sync_adversaries_keep_liveness_and_exercise_the_sync_policy() -> None:
    counters = {"timeouts": 0, "demotions": 0, "refused": 0}
    behaviours: set[Behaviour] = set()
    for seed in range(30):
        scenario = make_scenario(seed, 4, FAULTS, heights=3)
        behaviours.update(scenario.byzantine_nodes.values())
        simulation = Simulation(scenario)
        result = simulation.run()
        assert result.ok, (seed, [str(violation) for violation in result.violations])
        for node in simulation.correct_nodes:
            counters["timeouts"] += node.sync_peers.timeouts
            counters["demotions"] += node.sync_peers.demotions
            counters["refused"] += node.sync_refused
    assert behaviours == {Behaviour.LYING_SYNC, Behaviour.WITHHOLD_PROPOSAL}
    assert all(count > 0 for count in counters.values()), counters
