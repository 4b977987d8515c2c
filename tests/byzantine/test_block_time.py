"""Issue 17, "permanent halt by block time": validator 3 (real keys), at its own turn to
propose, proposes a block dated 2^63 - 1 and, at its next turn, one dated now + 10 years. Before
BFT time both were prevoted and committed (the first kills the chain for good). Each is a real
block that extends the chain; a third proposal, built the same way and dated now, IS committed:
the control that the first two fail for their time alone.

Stall bound: such a proposal is prevoted nil by every honest node (valid() is false, docs/spec/
consensus.md §4.8), so it costs its round and nothing more: the height is committed in the next
round by an honest proposer. The test asks for every height within 60 s, and honest block
times stay within max_clock_drift_ms of the wall clock."""

from __future__ import annotations

import time
from pathlib import Path

from emrchain.consensus.proposer import proposer
from emrchain.devnet.byzantine import ByzantinePeer
from emrchain.devnet.harness import Devnet
from emrchain.types import Block
from emrchain.types.validator import ValidatorSet
from tests.byzantine.runtime_support import (
    BYZANTINE,
    HONEST,
    all_running,
    block_extending,
    log_of,
    proposal_message,
    validator_set,
)

TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000
DRIFT_MS = 10_000  # [consensus] max_clock_drift_ms, the default
HEIGHT_BOUND_S = 60.0
# A long propose timeout leaves the test time to build its block once the height starts.
CONSENSUS = {"create_empty_blocks": True, "timeout_propose_ms": 6_000}


def now_ms() -> int:
    return int(time.time() * 1000)


def own_height(peer: ByzantinePeer, validators: ValidatorSet, after: int) -> int:
    """The first height above `after` whose round 0 the byzantine validator proposes."""
    own = peer.consensus_key.public_key
    return next(h for h in range(after + 1, after + 9) if proposer(validators, h, 0) == own)


def propose_at_own_turn(
    network: Devnet, peer: ByzantinePeer, validators: ValidatorSet, dated: int | None
) -> tuple[int, Block]:
    """Wait for our next round-0 turn, then propose an extending block dated `dated` (None:
    the wall clock); returns (height, block)."""
    while True:
        height = own_height(peer, validators, network.height(0))
        network.wait_for(lambda at=height - 1: network.height(0) >= at, HEIGHT_BOUND_S, "our turn")
        if network.height(0) == height - 1:
            break
    block = block_extending(network, peer, height, dated if dated is not None else now_ms())
    peer.send(None, proposal_message(peer.proposal(height, 0, block.block_id), block))
    return height, block


def committed_header(network: Devnet, index: int, height: int) -> dict:
    return network.rpc(index, f"/blocks/{height}")["header"]


def test_extreme_block_times_are_never_committed(tmp_path: Path) -> None:
    with Devnet(tmp_path / "net", 4, consensus=CONSENSUS) as network:
        for index in HONEST:
            network.start(index)
        validators = validator_set(network)
        with ByzantinePeer(network, BYZANTINE) as peer:
            own = peer.consensus_key.public_key.hex()
            peer.wait_connected(HONEST, 60.0)
            network.wait_for_height(2, HONEST, 90.0)
            for dated in ((1 << 63) - 1, now_ms() + TEN_YEARS_MS):
                height, block = propose_at_own_turn(network, peer, validators, dated)
                network.wait_for_height(height, HONEST, HEIGHT_BOUND_S)
                for index in HONEST:
                    header = committed_header(network, index, height)
                    assert header["block_id"] != block.block_id.hex()
                    assert header["proposer"] != own
                    assert header["time_ms"] <= now_ms() + DRIFT_MS
            # The control: the same construction dated now is a valid block.
            height, block = propose_at_own_turn(network, peer, validators, None)
            network.wait_for_height(height, HONEST, HEIGHT_BOUND_S)
            header = committed_header(network, 0, height)
            assert header["block_id"] == block.block_id.hex() and header["proposer"] == own
            network.wait_for_height(height + 3, HONEST, HEIGHT_BOUND_S)
            times = [committed_header(network, 0, h)["time_ms"] for h in range(1, height + 4)]
            assert times == sorted(times) and times[-1] <= now_ms() + DRIFT_MS
            for index in HONEST:  # each extreme block was held against validator 3
                assert log_of(network, index).count("consensus: invalid_block from peer") >= 1
            assert all_running(network)
