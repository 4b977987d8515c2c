"""Messages validators exchange over P2P, by channel (`docs/spec/p2p.md` covers the transport).

Every payload is `tag u8 | body`, encoded with the bounded codec of `emrchain.types`, so a peer
can never make this node allocate beyond the configured limits:

CONSENSUS  1 proposal  = Proposal | Block            (the block travels with its proposal)
           2 vote      = Vote
           3 evidence  = Evidence                    (one verified item, gossiped once)
MEMPOOL    1 txs       = list32(bytes32(tx, max_tx_bytes), max_gossip_txs)
BLOCKSYNC  1 status    = height u64 | block_id 32     (our latest committed block)
           2 request   = height u64
           3 response  = Block | CommitCertificate (for that block)
           4 pruned    = height u64 | base_height u64 (the asked height is below our base)
STATESYNC  snapshot offers and chunks (`emrchain/statesync/messages.py`)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from emrchain.statesync.messages import (
    STATESYNC_CHANNEL,
    StateSyncMessage,
    decode_statesync,
    encode_statesync,
)
from emrchain.types import (
    Block,
    CommitCertificate,
    DecodeError,
    Evidence,
    Limits,
    Proposal,
    Vote,
    decode_evidence,
)
from emrchain.types.codec import Reader, Writer
from emrchain.types.vote import PROPOSAL_BYTES


class Channel(IntEnum):
    CONSENSUS = 1
    MEMPOOL = 2
    BLOCKSYNC = 3
    STATESYNC = STATESYNC_CHANNEL


@dataclass(frozen=True, slots=True)
class ProposalMessage:
    proposal: Proposal
    block: Block
    block_bytes: bytes | None = field(default=None, compare=False, repr=False)
    """`block.encode()` when known (received, or encoded once for the WAL): not encoded again."""


@dataclass(frozen=True, slots=True)
class VoteMessage:
    vote: Vote
    encoded: bytes | None = field(default=None, compare=False, repr=False)
    """`vote.encode()` when known (received): the consensus WAL stores these bytes."""


@dataclass(frozen=True, slots=True)
class EvidenceMessage:
    """Evidence our pool admitted (`evidence_pool.py`); a peer admits it after verifying it."""

    evidence: Evidence


@dataclass(frozen=True, slots=True)
class TxsMessage:
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class StatusMessage:
    height: int
    block_id: bytes


@dataclass(frozen=True, slots=True)
class BlockRequest:
    height: int


@dataclass(frozen=True, slots=True)
class BlockResponse:
    block: Block
    commit: CommitCertificate
    size_bytes: int = field(default=0, compare=False)
    """The received payload's length (0 for one we send): what block sync's buffer counts."""


@dataclass(frozen=True, slots=True)
class BlockPruned:
    """Our answer to a `BlockRequest` below our base: we pruned that block, ask another peer."""

    height: int
    base_height: int


Message = (
    ProposalMessage
    | VoteMessage
    | EvidenceMessage
    | TxsMessage
    | StatusMessage
    | BlockRequest
    | BlockResponse
    | StateSyncMessage
    | BlockPruned
)

_TAGS: dict[type, tuple[Channel, int]] = {
    ProposalMessage: (Channel.CONSENSUS, 1),
    VoteMessage: (Channel.CONSENSUS, 2),
    EvidenceMessage: (Channel.CONSENSUS, 3),
    TxsMessage: (Channel.MEMPOOL, 1),
    StatusMessage: (Channel.BLOCKSYNC, 1),
    BlockRequest: (Channel.BLOCKSYNC, 2),
    BlockResponse: (Channel.BLOCKSYNC, 3),
    BlockPruned: (Channel.BLOCKSYNC, 4),
}


def encode(message: Message) -> tuple[Channel, bytes]:
    """The channel and payload bytes of `message`."""
    if isinstance(message, StateSyncMessage):
        return Channel.STATESYNC, encode_statesync(message)
    channel, tag = _TAGS[type(message)]
    writer = Writer().u8(tag)
    if isinstance(message, ProposalMessage):
        block = message.block_bytes
        writer.raw(message.proposal.encode()).raw(
            block if block is not None else message.block.encode()
        )
    elif isinstance(message, VoteMessage):
        writer.raw(message.vote.encode())
    elif isinstance(message, EvidenceMessage):
        writer.raw(message.evidence.encode())
    elif isinstance(message, TxsMessage):
        writer.u32(len(message.txs)).var_bytes_u32_list(message.txs)
    elif isinstance(message, StatusMessage):
        writer.u64(message.height).fixed(message.block_id, 32)
    elif isinstance(message, BlockRequest):
        writer.u64(message.height)
    elif isinstance(message, BlockPruned):
        writer.u64(message.height).u64(message.base_height)
    else:
        block = message.block.encode()
        writer.var_bytes(block, 4).raw(message.commit.encode())
    return channel, writer.bytes()


def decode(channel: int, payload: bytes, limits: Limits, max_gossip_txs: int) -> Message:
    """Parse one payload; raise DecodeError (naming the problem) for anything malformed."""
    if not payload:
        raise DecodeError("empty payload")
    tag, body = payload[0], payload[1:]
    if channel == Channel.STATESYNC:
        return decode_statesync(payload, limits)
    if channel == Channel.CONSENSUS and tag == 1:
        if len(body) < PROPOSAL_BYTES:
            raise DecodeError("proposal message: too short")
        block_bytes = body[PROPOSAL_BYTES:]
        return ProposalMessage(
            Proposal.decode(body[:PROPOSAL_BYTES]), Block.decode(block_bytes, limits), block_bytes
        )
    if channel == Channel.CONSENSUS and tag == 2:
        return VoteMessage(Vote.decode(body), body)
    if channel == Channel.CONSENSUS and tag == 3:
        return EvidenceMessage(decode_evidence(body))
    reader = Reader(body, f"channel {channel} tag {tag}")
    if channel == Channel.MEMPOOL and tag == 1:
        count = reader.count(4, max_gossip_txs, "count")
        txs = reader.var_bytes_u32_list(count, limits.max_tx_bytes, "tx")
        reader.finish()
        return TxsMessage(txs)
    if channel == Channel.BLOCKSYNC and tag == 1:
        message: Message = StatusMessage(reader.u64("height"), reader.fixed(32, "block_id"))
    elif channel == Channel.BLOCKSYNC and tag == 2:
        message = BlockRequest(reader.u64("height"))
    elif channel == Channel.BLOCKSYNC and tag == 4:
        message = BlockPruned(reader.u64("height"), reader.u64("base_height"))
    elif channel == Channel.BLOCKSYNC and tag == 3:
        block = Block.decode(
            reader.var_bytes(4, limits.max_block_bytes + 1024 * 1024, "block"), limits
        )
        message = BlockResponse(block, CommitCertificate.read(reader, limits), len(payload))
    else:
        raise DecodeError(f"unknown message: channel {channel} tag {tag}")
    reader.finish()
    return message
