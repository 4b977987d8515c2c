"""What travels on the simulated network.

Consensus messages carry their canonical encoding as `key`: it identifies the message for
de-duplication and for the verification memo (each distinct message is verified once per
simulation, as a real node verifies once at ingress).
"""

from __future__ import annotations

from dataclasses import dataclass

from emrchain.types.commit import CommitCertificate
from emrchain.types.vote import Proposal, Vote


@dataclass(frozen=True, slots=True)
class ProposalMessage:
    """A signed proposal with the block it proposes (block parts, in a real network)."""

    proposal: Proposal
    payload: bytes
    key: bytes

    @classmethod
    def of(cls, proposal: Proposal, payload: bytes) -> ProposalMessage:
        return cls(proposal, payload, proposal.encode())

    @property
    def height(self) -> int:
        return self.proposal.height


@dataclass(frozen=True, slots=True)
class VoteMessage:
    vote: Vote
    key: bytes

    @classmethod
    def of(cls, vote: Vote) -> VoteMessage:
        return cls(vote, vote.encode())

    @property
    def height(self) -> int:
        return self.vote.height


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """ "I am at this height": lets a peer that is ahead push us the blocks we miss."""

    height: int


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Ask a peer for decided blocks from `from_height` on."""

    from_height: int


@dataclass(frozen=True, slots=True)
class SyncResponse:
    """Decided blocks with their commit certificates, in height order."""

    blocks: tuple[tuple[bytes, CommitCertificate], ...]


Message = ProposalMessage | VoteMessage | StatusMessage | SyncRequest | SyncResponse
