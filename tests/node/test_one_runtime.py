"""Issue 16: one consensus runtime. The node and the simulator both drive
`emrchain.consensus.runtime.ConsensusRuntime`; the simulator has no signing-guard, WAL or
core-driving logic of its own (only the runtime's actions to carry out)."""

from __future__ import annotations

import ast
import asyncio
import time
from pathlib import Path

import emrchain.sim
from emrchain.consensus.runtime import ConsensusRuntime
from emrchain.sim.byzantine import ByzantineNode
from emrchain.sim.scenario import make_scenario
from emrchain.sim.simulation import Simulation
from tests.node.in_process import single_validator_node

SIM_PACKAGE = Path(emrchain.sim.__file__).parent
# What a second runtime would need: the guard's decisions, WAL records and replay, the core's
# events and signing effects. A host may name the guard's record type (to show it), the WAL
# segment header (its disk format: the node's store writes it too) and the actions it carries out.
RUNTIME_ONLY_NAMES = {
    "authorize",
    "request_for_vote",
    "request_for_proposal",
    "DoubleSignError",
    "read_segment",
    "vote_record",
    "proposal_record",
    "StartHeight",
    "VoteReceived",
    "ProposalReceived",
    "ValueValidated",
    "ValueToPropose",
    "SignVote",
    "SignProposal",
    "ValidateValue",
    "RequestValue",
    "Decide",
}


def imported_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def calls_core_step(tree: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "step"
        for node in ast.walk(tree)
    )


def test_the_simulator_has_no_runtime_logic_of_its_own() -> None:
    modules = sorted(SIM_PACKAGE.glob("*.py"))
    assert {"node.py", "byzantine.py", "simulation.py"} <= {path.name for path in modules}
    for path in modules:
        tree = ast.parse(path.read_text())
        assert not imported_names(tree) & RUNTIME_ONLY_NAMES, path.name
        assert not calls_core_step(tree), path.name


def test_the_check_can_fail() -> None:
    tree = ast.parse(
        "from emrchain.consensus.signing_guard import authorize\nself.core.step(event)\n"
    )
    assert imported_names(tree) & RUNTIME_ONLY_NAMES == {"authorize"}
    assert calls_core_step(tree)


def test_simulated_validators_drive_the_runtime_class() -> None:
    simulation = Simulation(make_scenario(3, 4, ("crash", "byzantine"), 2))
    result = simulation.run()
    assert result.ok
    correct = [node for node in simulation.nodes if not isinstance(node, ByzantineNode)]
    assert correct
    for node in correct:
        assert type(node.runtime) is ConsensusRuntime
    for node in simulation.nodes:  # a byzantine one only overrides its signing hooks
        assert isinstance(node.runtime, ConsensusRuntime)


def test_a_running_node_drives_the_runtime_class(tmp_path: Path) -> None:
    with single_validator_node(tmp_path) as node:
        asyncio.run(run_until_first_block(node))
        assert type(node.driver.runtime) is ConsensusRuntime
        assert node.chain.height >= 1


async def run_until_first_block(node) -> None:
    running = asyncio.create_task(node.run())
    deadline = time.monotonic() + 30
    while node.chain.height < 1 and not running.done():
        assert time.monotonic() < deadline, "no block within 30 s"
        await asyncio.sleep(0.05)
    node.request_stop()
    await asyncio.wait_for(running, 30)
