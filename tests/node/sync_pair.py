"""A source chain and a fresh follower of it, both real single-validator nodes opened
in-process (`in_process.py`), and a driver that block-syncs the follower from the source's
store through several named peers, delivering the answers in a shuffled order.

The follower is a copy of the source's home taken before its first block, so it shares the
genesis and knows nothing else; it only ever applies what its `BlockSync` accepts."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from emrchain.config.homes import create_testnet
from emrchain.config.node import load_node_config, render_node_config
from emrchain.devnet.workload import anchor_transactions
from emrchain.node import messages
from emrchain.node.blocksync import BlockSync, SyncLimits
from emrchain.node.node import Node
from emrchain.node.wiring import build
from emrchain.p2p import Misbehaviour
from tests.node.in_process import CHAIN_ID, commit_own_block, register_workload_senders

SENDERS = 8


@contextmanager
def _opened(home: Path) -> Iterator[Node]:
    node = Node.open(home)
    try:
        yield node
    finally:
        asyncio.run(node.records.close())
        node._database.close()


@contextmanager
def source_and_fresh_home(root: Path) -> Iterator[tuple[Node, Path]]:
    """The source node (open) and the home of a follower not opened yet."""
    homes, _ = create_testnet(
        root / "net", validators=1, chain_id=CHAIN_ID, host="127.0.0.1", base_port=0
    )
    follower_home = root / "follower"
    shutil.copytree(homes[0], follower_home)
    with _opened(homes[0]) as source:
        yield source, follower_home


def fill(source: Node, *, blocks: int, txs_per_block: int) -> int:
    """Commit the workload's registrations, then `blocks` blocks of anchors; the anchor count."""
    register_workload_senders(source, senders=SENDERS, seed=7)
    txs = anchor_transactions(
        blocks * txs_per_block, chain_id=CHAIN_ID.encode(), senders=SENDERS, seed=7
    )
    for start in range(0, len(txs), txs_per_block):
        chunk = txs[start : start + txs_per_block]
        assert all(admission.accepted for admission in source.mempool.admit_batch(chunk))
        assert commit_own_block(source).header.tx_count == len(chunk)
    return len(txs)


@dataclass
class SyncRun:
    """One follower's block sync from the source through `peers`, answers shuffled."""

    source: Node
    follower: Node
    peers: tuple[str, ...]
    seed: int = 0
    requests: list[tuple[str, int]] = field(default_factory=list)
    reports: list[tuple[str, Misbehaviour]] = field(default_factory=list)
    most_buffered: int = 0

    def __post_init__(self) -> None:
        self.sync = BlockSync(
            self.follower.chain,
            self._send,
            lambda height: None,
            lambda peer, kind: self.reports.append((peer, kind)),
            build(SyncLimits, self.follower.config),
        )

    def _send(self, peer_id: str, message: messages.Message) -> bool:
        assert isinstance(message, messages.BlockRequest)
        self.requests.append((peer_id, message.height))
        return True

    def response(self, height: int) -> messages.BlockResponse:
        """The source's block at `height`, through the wire encoding (as a peer sends it)."""
        store = self.source.chain.store
        block, commit = store.block(height), store.commit(height)
        assert block is not None and commit is not None
        channel, payload = messages.encode(messages.BlockResponse(block, commit))
        decoded = messages.decode(channel, payload, self.follower.config.limits, 1)
        assert isinstance(decoded, messages.BlockResponse)
        return decoded

    def announce(self) -> None:
        status = messages.StatusMessage(self.source.chain.height, bytes(32))
        for peer in self.peers:
            self.sync.on_status(peer, status)

    def run(self, *, max_steps: int = 100_000) -> None:
        """Answer requests in a shuffled order until the follower has the source's height."""
        shuffle = random.Random(self.seed)
        self.announce()
        for _ in range(max_steps):
            if self.follower.chain.height >= self.source.chain.height:
                return
            if not self.requests:
                self.sync.tick()
                continue
            peer, height = self.requests.pop(shuffle.randrange(len(self.requests)))
            self.sync.on_response(peer, self.response(height))
            self.most_buffered = max(self.most_buffered, len(self.sync.buffer))
        raise AssertionError(f"follower stuck at {self.follower.chain.height}")


@contextmanager
def follower(home: Path, **consensus: int) -> Iterator[Node]:
    """The follower node, with these `[consensus]` settings (e.g. the sync window)."""
    if consensus:
        config = load_node_config(home)
        config = dataclasses.replace(
            config, consensus=dataclasses.replace(config.consensus, **consensus)
        )
        config.config_path.write_text(render_node_config(config))
    with _opened(home) as node:
        yield node
