"""Shared by the runtime attack tests (issue 17 items 1 and 2): validator 3 is byzantine with
its real keys, validators 0, 1 and 2 run; what the honest nodes' logs and /proc say."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from emrchain import _core
from emrchain.config.genesis import load_config_and_genesis
from emrchain.consensus.proposer import proposer
from emrchain.devnet.byzantine import ByzantinePeer
from emrchain.devnet.harness import Devnet
from emrchain.node import messages
from emrchain.types import Block, CommitCertificate, Proposal, VoteType
from emrchain.types.block import BlockHeader, evidence_root
from emrchain.types.validator import ValidatorSet

HONEST = [0, 1, 2]
BYZANTINE = 3


def validator_set(network: Devnet) -> ValidatorSet:
    return load_config_and_genesis(network.homes[0])[1].validator_set()


def round_not_proposed_by(peer: ByzantinePeer, validators: ValidatorSet, height: int) -> int:
    """A round of `height` whose proposer is not the byzantine validator."""
    own = peer.consensus_key.public_key
    return next(r for r in range(4) if proposer(validators, height, r) != own)


def junk_block(peer: ByzantinePeer, template: Block, height: int, label: int) -> Block:
    """A well-formed block for `height` (it decodes; it would not validate) made from `template`:
    its last commit holds validator 3's own precommit for the previous height."""
    previous_id = hashlib.sha256(b"junk-previous-%d" % label).digest()
    precommit = peer.vote(VoteType.PRECOMMIT, height - 1, 0, previous_id)
    commit = CommitCertificate.from_precommits([precommit])
    header = dataclasses.replace(
        template.header,
        height=height,
        time_ms=label + 1,
        previous_block_id=previous_id,
        last_commit_hash=commit.hash,
    )
    return dataclasses.replace(template, header=header, last_commit=commit)


def forged_proposal(block: Block, round_number: int, signer_key: bytes, label: int) -> Proposal:
    """A proposal of `block` in `signer_key`'s name with a random (non-verifying) signature."""
    junk = hashlib.sha512(b"forged-%d" % label).digest()
    return Proposal(block.height, round_number, -1, block.block_id, signer_key, junk)


def proposal_message(proposal: Proposal, block: Block) -> messages.ProposalMessage:
    return messages.ProposalMessage(proposal, block)


def log_of(network: Devnet, index: int) -> str:
    return Path(network.log_path(index)).read_text(errors="replace")


def banned_by(network: Devnet, index: int, peer: ByzantinePeer) -> bool:
    """Validator `index` logged a ban of the byzantine validator's node."""
    return f"peer {peer.node_ids[peer.index][:16]} banned for" in log_of(network, index)


def rss_kib(network: Devnet, index: int) -> int:
    """VmRSS of validator `index`'s process, in KiB (/proc/<pid>/status)."""
    pid = network.processes[index].pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def all_running(network: Devnet) -> bool:
    return all(network.is_running(index) for index in HONEST)


def block_extending(network: Devnet, peer: ByzantinePeer, height: int, time_ms: int) -> Block:
    """An empty block for `height` on top of the honest chain, as its proposer would build it,
    dated `time_ms`. Node 0 must be at `height - 1`."""
    status = network.rpc(0, "/status")
    assert status["latest_height"] == height - 1, status["latest_height"]
    previous = peer.fetch_block(0, height - 1)
    header = BlockHeader(
        chain_id=peer.chain_id,
        height=height,
        time_ms=time_ms,
        previous_block_id=previous.block.block_id,
        last_commit_hash=previous.commit.hash,
        tx_root=_core.merkle_root([]),
        tx_count=0,
        app_hash=bytes.fromhex(status["latest_app_hash"]),
        validators_hash=previous.block.header.validators_hash,
        next_validators_hash=previous.block.header.next_validators_hash,
        evidence_hash=evidence_root(()),
        proposer=peer.consensus_key.public_key,
    )
    return Block(header, (), previous.commit, ())
