"""Equivocation has a consequence (issue 17 item 5; docs/spec/consensus.md §1.4, state.md §4.4).

Validator 3 (`ByzantinePeer`, its real keys) signs two prevotes for different blocks at one
position and sends each to a DIFFERENT honest node, so only the relay of votes (or the gossip
of evidence) can bring them together. Then on every honest node: the evidence is committed
(`GET /evidence`), validator 3 is out of the validator set from exactly the commit height + 2
(`GET /validators/{height}`, and the headers' `validators_hash`), and the chain goes on with
three validators. A governance VALIDATOR_UPDATE approved by the three restores it.

Stall bound: the honest three hold 3 of 4 equal powers, more than two thirds, before and after
the jailing, so no height waits for validator 3; the test allows 90 s per phase on a shared
machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from emrchain.client import transactions
from emrchain.config.node import load_node_config
from emrchain.consensus.proposer import proposer
from emrchain.devnet.byzantine import ByzantinePeer
from emrchain.devnet.harness import Devnet
from emrchain.hsm.node_keys import validator_signer
from emrchain.node import messages
from emrchain.types import DuplicateVoteEvidence, VoteType
from tests.byzantine.runtime_support import block_extending, validator_set

HONEST = [0, 1, 2]
BYZANTINE = 3
PHASE_TIMEOUT_S = 90.0
MEMORY_BOUND_MIB = 512
"""Resident memory of an honest node during these attacks (measured: 74 MiB each)."""


@contextmanager
def honest_three_and_byzantine_three(
    tmp_path: Path, consensus: dict[str, int | bool]
) -> Iterator[tuple[Devnet, ByzantinePeer]]:
    """Validators 0, 1 and 2 running and past height 2; validator 3 byzantine, connected."""
    settings: dict[str, int | bool] = {"create_empty_blocks": True, **consensus}
    with Devnet(tmp_path / "net", 4, consensus=settings) as network:
        for index in HONEST:
            network.start(index)
        network.wait_for_height(2, HONEST, PHASE_TIMEOUT_S)
        with ByzantinePeer(network, BYZANTINE) as peer:
            peer.wait_connected(HONEST)
            yield network, peer


def scraped(network: Devnet, index: int, name: str) -> float:
    """The value of the unlabelled sample `name` in node `index`'s /metrics."""
    url = network.instrumentation_url(index) + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    raise AssertionError(f"{name} not in node {index}'s /metrics")


def committed_evidence(network: Devnet, index: int) -> list[dict[str, Any]]:
    return network.rpc(index, "/evidence")["committed"]


def committed_everywhere(network: Devnet) -> dict[str, Any]:
    """Wait until every honest node lists committed evidence; they list the same one item."""

    def committed_on_all() -> bool:
        return all(committed_evidence(network, index) for index in HONEST)

    network.wait_for(committed_on_all, PHASE_TIMEOUT_S, "the evidence committed on all")
    listings = [committed_evidence(network, index) for index in HONEST]
    assert listings[0] == listings[1] == listings[2]
    (entry,) = listings[0]
    return entry


def validator_keys(network: Devnet, index: int, height: int) -> set[str]:
    reply = network.rpc(index, f"/validators/{height}")
    return {validator["public_key"] for validator in reply["validators"]}


def double_sign(peer: ByzantinePeer, network: Devnet) -> int:
    """Two prevotes of validator 3 at one (height, round), one to node 0 and one to node 1.
    The height is two above node 0's committed height: every honest node keeps it until it
    gets there (a vote for a height already passed would be ignored)."""
    height = network.height(0) + 2
    first = peer.vote(VoteType.PREVOTE, height, 0, hashlib.sha256(b"block a").digest())
    second = peer.vote(VoteType.PREVOTE, height, 0, hashlib.sha256(b"block b").digest())
    peer.send(0, messages.VoteMessage(first))
    peer.send(1, messages.VoteMessage(second))
    return height


def test_double_sign_is_committed_everywhere_and_jails_from_commit_height_plus_two(
    tmp_path: Path,
) -> None:
    with honest_three_and_byzantine_three(tmp_path, {}) as (network, peer):
        offender = peer.consensus_key.public_key.hex()
        assert all(offender in validator_keys(network, index, 1) for index in HONEST)
        vote_height = double_sign(peer, network)
        entry = committed_everywhere(network)
        assert (entry["type"], entry["offender"]) == ("duplicate_vote", offender)
        assert (entry["height"], entry["round"], entry["vote_type"]) == (
            vote_height,
            0,
            "prevote",
        )
        commit_height = entry["committed_height"]
        block = network.rpc(0, f"/blocks/{commit_height}")
        assert block["header"]["evidence_hash"] != hashlib.sha256(b"").hexdigest()
        for index in HONEST:  # what an operator's Prometheus sees (docs/spec/metrics.md)
            assert scraped(network, index, "emrchain_consensus_evidence_committed_total") == 1

        network.wait_for_height(commit_height + 5, HONEST, PHASE_TIMEOUT_S)
        for index in HONEST:
            assert offender in validator_keys(network, index, commit_height + 1)
            assert offender not in validator_keys(network, index, commit_height + 2)
            assert len(validator_keys(network, index, commit_height + 2)) == 3
            assert network.rpc(index, "/evidence")["pending"] == []
        for height in range(commit_height + 2, commit_height + 5):
            header = network.rpc(0, f"/blocks/{height}")["header"]
            jailed_set = network.rpc(0, f"/validators/{height}")
            assert header["validators_hash"] == jailed_set["hash"]
            signers = network.rpc(0, f"/blocks/{height + 1}")["commit"]["signers"]
            assert offender not in signers and len(signers) >= 3

        # Governance: the three remaining validators approve validator 3's return.
        approvals = []
        for index in HONEST:
            signer = validator_signer(load_node_config(network.homes[index]))
            approvals.append(
                transactions.validator_update(
                    signer,
                    peer.chain_id,
                    1,
                    validator_key=peer.consensus_key.public_key,
                    power=1,
                    epoch=1,
                    node_key=peer.node_key.public_key,
                ).encode()
            )
        accepted = network.submit(approvals, nodes=[0])
        assert len(accepted) == 3
        network.wait_committed(0, accepted, PHASE_TIMEOUT_S)
        restored_at = max(network.rpc(0, f"/txs/{tx_id}")["height"] for tx_id in accepted)
        network.wait_for_height(restored_at + 3, HONEST, PHASE_TIMEOUT_S)
        for index in HONEST:
            assert offender in validator_keys(network, index, restored_at + 2)
        for index in HONEST:
            assert network.is_running(index)
            assert resident_mib(network, index) < MEMORY_BOUND_MIB


def resident_mib(network: Devnet, index: int) -> float:
    """VmRSS of node `index`'s process, in MiB."""
    status = Path(f"/proc/{network.processes[index].pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_conflicting_proposals_sent_to_one_node_are_committed_and_jail(tmp_path: Path) -> None:
    """Validator 3 signs two different proposals for a (height, round 0) it proposes and sends
    both to node 0 only, while node 0 is one height below or at it (admission, §4.7, keeps
    proposals only from the round's proposer, within the round window): node 0 detects them,
    gossips the evidence, and every honest node commits it and jails validator 3 from the
    commit height + 2."""
    with honest_three_and_byzantine_three(tmp_path, {}) as (network, peer):
        offender = peer.consensus_key.public_key.hex()
        validators = validator_set(network)
        attempts: list[int] = []

        def equivocate_until_pending() -> bool:
            pending = network.rpc(0, "/evidence")["pending"]
            if pending or committed_evidence(network, 0):
                return True
            target = network.height(0) + 1
            own = peer.consensus_key.public_key
            if target in attempts or proposer(validators, target, 0) != own:
                return False
            attempts.append(target)
            now = int(time.time() * 1000)
            try:
                blocks = [block_extending(network, peer, target, now + offset) for offset in (0, 1)]
            except AssertionError:
                return False  # node 0 moved on while we built: try at our next turn
            peer.send(
                0,
                *(
                    messages.ProposalMessage(peer.proposal(target, 0, block.block_id), block)
                    for block in blocks
                ),
            )
            return False

        peer.wait_for(equivocate_until_pending, PHASE_TIMEOUT_S, "conflicting proposals seen")
        entry = committed_everywhere(network)
        assert (entry["type"], entry["offender"], entry["round"]) == (
            "conflicting_proposals",
            offender,
            0,
        )
        assert entry["height"] in attempts
        commit_height = entry["committed_height"]
        network.wait_for_height(commit_height + 3, HONEST, PHASE_TIMEOUT_S)
        for index in HONEST:
            assert offender in validator_keys(network, index, commit_height + 1)
            assert offender not in validator_keys(network, index, commit_height + 2)
            assert network.is_running(index)
        rss = [resident_mib(network, index) for index in HONEST]
        print(f"honest RSS MiB after the attack: {[round(value) for value in rss]}")
        assert max(rss) < MEMORY_BOUND_MIB


def test_forged_evidence_gets_its_sender_banned_and_changes_nothing(tmp_path: Path) -> None:
    """Evidence whose second vote carries a signature that does not verify, gossiped by
    validator 3 to node 0: refused, nothing pending or committed, and the sender banned
    (INVALID_SIGNATURE is severe); the node keeps committing."""
    with honest_three_and_byzantine_three(tmp_path, {}) as (network, peer):
        height = network.height(0)
        first = peer.vote(VoteType.PREVOTE, height, 0, hashlib.sha256(b"block a").digest())
        second = peer.vote(VoteType.PREVOTE, height, 0, hashlib.sha256(b"block b").digest())
        genuine = DuplicateVoteEvidence.from_votes(first, second)
        forged = dataclasses.replace(
            genuine, vote_b=dataclasses.replace(genuine.vote_b, signature=bytes(64))
        )
        peer.send(0, messages.EvidenceMessage(forged))
        peer.wait_for(lambda: 0 not in peer.connected(), PHASE_TIMEOUT_S, "node 0 to ban us")
        network.wait_for_height(height + 3, HONEST, PHASE_TIMEOUT_S)
        assert network.rpc(0, "/evidence") == {"committed": [], "pending": []}
        assert network.is_running(0)
