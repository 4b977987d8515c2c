"""Canonical data types: each has one binary encoding, bounded decoding and `validate_basic()`.

The byte layouts are specified in `docs/spec/encoding.md`.
"""

from emrchain.types.block import Block, BlockHeader
from emrchain.types.codec import DecodeError, EncodeError
from emrchain.types.commit import CommitCertificate, CommitError, CommitSignature, verify_commit
from emrchain.types.evidence import (
    ConflictingProposalEvidence,
    DuplicateVoteEvidence,
    Evidence,
    EvidenceError,
    decode_evidence,
)
from emrchain.types.limits import DEFAULT_LIMITS, Limits
from emrchain.types.signing import Domain, signed_message
from emrchain.types.transaction import Transaction, TxKind
from emrchain.types.validator import Validator, ValidatorSet
from emrchain.types.vote import NIL_BLOCK_ID, Proposal, Vote, VoteType

__all__ = [
    "DEFAULT_LIMITS",
    "NIL_BLOCK_ID",
    "Block",
    "BlockHeader",
    "CommitCertificate",
    "CommitError",
    "CommitSignature",
    "ConflictingProposalEvidence",
    "DecodeError",
    "Domain",
    "DuplicateVoteEvidence",
    "EncodeError",
    "Evidence",
    "EvidenceError",
    "Limits",
    "Proposal",
    "Transaction",
    "TxKind",
    "Validator",
    "ValidatorSet",
    "Vote",
    "VoteType",
    "decode_evidence",
    "signed_message",
    "verify_commit",
]
