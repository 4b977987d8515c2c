"""A byzantine validator with real keys, for attack tests: it speaks P2P in the place of one
validator of a `Devnet` (whose own process is not started) with that validator's node key, and
signs with its consensus key whatever a test asks for: junk, equivocations, extreme block times,
floods, unsolicited or lying block-sync responses.

It is not a model of a node: honest nodes see a validator connecting over TCP with the right
keys, exactly as a compromised hospital's node would. It runs its own asyncio loop in a thread so
that synchronous tests drive it, and it records what the honest nodes send it (bounded), so a
test can wait for a height and craft its attack from a real proposal.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from emrchain.config.genesis import load_config_and_genesis
from emrchain.config.node import load_node_config
from emrchain.crypto.keys import Signer
from emrchain.devnet.harness import Devnet
from emrchain.hsm.node_keys import validator_signer
from emrchain.keystore.file import load_key_file
from emrchain.node import messages
from emrchain.node.wiring import p2p_config
from emrchain.p2p import PeerManager
from emrchain.p2p.identity import node_id
from emrchain.types import DecodeError, Proposal, Vote, VoteType
from emrchain.types.limits import MAX_GOSSIP_TXS

MAX_RECORDED_MESSAGES = 10_000
"""What the peer remembers of what it received (oldest forgotten first)."""

ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class Received:
    """A message an honest node sent the byzantine validator."""

    sender: int
    """The sender's index in the devnet (-1: not a devnet validator)."""
    message: messages.Message


class ByzantinePeer:
    """Validator `index` of `devnet`, byzantine. Use as a context manager (starts and closes)."""

    def __init__(self, devnet: Devnet, index: int) -> None:
        config, genesis = load_config_and_genesis(devnet.homes[index])
        self.index = index
        self.limits = config.limits
        self.consensus_key: Signer = validator_signer(config)
        self.node_key: Signer = load_key_file(config.node_key_path)
        self.chain_id = genesis.chain_id_bytes
        self._config = p2p_config(config)
        self.node_ids = [
            node_id(load_key_file(load_node_config(home).node_key_path).public_key)
            for home in devnet.homes
        ]
        self._received: deque[Received] = deque(maxlen=MAX_RECORDED_MESSAGES)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._manager: PeerManager | None = None
        self._receiving: asyncio.Task[None] | None = None
        self.undecodable_received = 0
        self._followed: set[tuple[int, int, int]] = set()

    # --------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> ByzantinePeer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Listen on the validator's P2P address and dial the others (its persistent peers)."""
        self._thread.start()
        self._run(self._start())

    async def _start(self) -> None:
        self._manager = PeerManager(
            self._config, self.node_key, self.chain_id, [bytes.fromhex(n) for n in self.node_ids]
        )
        await self._manager.start()
        self._receiving = asyncio.create_task(self._receive_loop())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _close(self) -> None:
        if self._receiving is not None:
            self._receiving.cancel()
        if self._manager is not None:
            await self._manager.close()

    def _run(self, coroutine: Coroutine[Any, Any, ResultT], timeout_s: float = 30.0) -> ResultT:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    # --------------------------------------------------------------------------- receiving

    async def _receive_loop(self) -> None:
        assert self._manager is not None
        async for received in self._manager.messages():
            try:
                message = messages.decode(
                    received.channel, received.payload, self.limits, MAX_GOSSIP_TXS
                )
            except DecodeError:
                self.undecodable_received += 1
                continue
            sender = self._index_of(received.peer_id)
            with self._lock:
                self._received.append(Received(sender, message))

    def _index_of(self, peer_id: str) -> int:
        return self.node_ids.index(peer_id) if peer_id in self.node_ids else -1

    def received(self) -> list[Received]:
        """What honest nodes sent us, oldest first (the last MAX_RECORDED_MESSAGES)."""
        with self._lock:
            return list(self._received)

    def latest_proposal(self, min_height: int = 0) -> messages.ProposalMessage | None:
        """The most recent honest proposal we received at `min_height` or above."""
        for item in reversed(self.received()):
            message = item.message
            if (
                isinstance(message, messages.ProposalMessage)
                and message.proposal.height >= min_height
            ):
                return message
        return None

    def peer_heights(self) -> dict[int, int]:
        """The latest committed height each honest node announced to us (status messages)."""
        heights: dict[int, int] = {}
        for item in self.received():
            if isinstance(item.message, messages.StatusMessage):
                heights[item.sender] = item.message.height
        return heights

    def wait_for(
        self, predicate: Callable[[], ResultT | None], timeout_s: float, what: str
    ) -> ResultT:
        """Poll `predicate` until it returns something truthy (returned) or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"byzantine peer: timed out waiting for {what}")
            time.sleep(0.05)

    # ----------------------------------------------------------------------------- sending

    def connected(self) -> list[int]:
        assert self._manager is not None
        return sorted(self._index_of(peer) for peer in self._manager.connected_peers())

    def wait_connected(self, indexes: Iterable[int], timeout_s: float = 30.0) -> None:
        wanted = set(indexes)
        self.wait_for(lambda: wanted <= set(self.connected()), timeout_s, f"peers {wanted}")

    def send(self, to: int | None, *items: messages.Message) -> None:
        """Send `items` in order to validator `to` (None: every connected honest node), all
        queued in one turn of the loop so that they leave in as few writes as possible."""
        payloads = [messages.encode(item) for item in items]
        self.send_raw(to, payloads)

    def send_raw(self, to: int | None, payloads: Sequence[tuple[int, bytes]]) -> None:
        """Send (channel, payload) frames as they are: malformed ones included."""

        async def push() -> None:
            assert self._manager is not None
            targets = self._manager.connected_peers() if to is None else [self.node_ids[to]]
            for peer in targets:
                for channel, payload in payloads:
                    self._manager.send(peer, channel, payload)

        self._run(push())

    def follow(self) -> int:
        """Vote as the honest nodes do: for each (height, round, step) an honest node voted at
        and we have not, the same block id (so that rounds can complete while we hold a seat).
        Returns the number of votes sent. Call it in a polling loop."""
        sent = []
        for item in self.received():
            message = item.message
            if not isinstance(message, messages.VoteMessage) or item.sender < 0:
                continue
            vote = message.vote
            position = (vote.height, vote.round, int(vote.type))
            if position not in self._followed:
                self._followed.add(position)
                own = self.vote(vote.type, vote.height, vote.round, vote.block_id)
                sent.append(messages.VoteMessage(own))
        if sent:
            self.send(None, *sent)
        return len(sent)

    # ----------------------------------------------------------------------------- signing

    def vote(self, vote_type: VoteType, height: int, round_number: int, block_id: bytes) -> Vote:
        """A vote signed with the validator's real consensus key (no double-sign guard)."""
        return Vote.create(
            self.consensus_key, self.chain_id, vote_type, height, round_number, block_id
        )

    def proposal(
        self, height: int, round_number: int, block_id: bytes, pol_round: int = -1
    ) -> Proposal:
        """A proposal signed with the validator's real consensus key."""
        return Proposal.create(
            self.consensus_key, self.chain_id, height, round_number, pol_round, block_id
        )

    # ------------------------------------------------------------------------- block sync

    def fetch_block(
        self, from_index: int, height: int, timeout_s: float = 30.0
    ) -> messages.BlockResponse:
        """Committed block `height` with its commit, asked of validator `from_index` by block
        sync (e.g. to build a block that extends the chain)."""

        def answered() -> messages.BlockResponse | None:
            for item in reversed(self.received()):
                message = item.message
                if isinstance(message, messages.BlockResponse) and message.block.height == height:
                    return message
            self.send(from_index, messages.BlockRequest(height))
            return None

        return self.wait_for(answered, timeout_s, f"block {height} from validator {from_index}")
