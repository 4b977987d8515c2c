"""Vote counting for one height: power per block id per (round, type).

A second vote of a validator for a different block id in the same (type, round) is
equivocation: the tally returns the first one so the core can build `DuplicateVoteEvidence`,
and counts the new one for its own block id only (see `RoundVotes.add` for why).
"""

from __future__ import annotations

from emrchain.types.vote import NIL_BLOCK_ID, Vote, VoteType


class RoundVotes:
    """Votes of one type in one round of the current height."""

    __slots__ = ("_first", "_power_by_block", "_voters_by_block", "total_power")

    def __init__(self) -> None:
        self._first: dict[bytes, Vote] = {}
        self._voters_by_block: dict[bytes, dict[bytes, Vote]] = {}
        self._power_by_block: dict[bytes, int] = {}
        self.total_power = 0

    def add(
        self, vote: Vote, power: int, max_blocks_per_validator: int
    ) -> tuple[bool, Vote | None]:
        """Count `vote`. Return (counted, conflicting).

        `conflicting` is the validator's first vote when `vote` is for a different block id
        (equivocation). A validator's power counts once in `total_power` (the paper's "2f+1
        messages of any kind") but once for EACH block id it signed, up to
        `max_blocks_per_validator` of them: "2f+1 prevotes for id(v)" means signed prevotes
        for v from validators holding that much power, whatever else they signed. Quorum
        intersection still holds, since the intersection of two quorums contains a correct
        validator, and it lets a correct node see a polka that includes an equivocator whose
        other vote reached it first.
        """
        validator = vote.validator
        first = self._first.get(validator)
        if first is None:
            self._first[validator] = vote
            self.total_power += power
            self._count(vote, power)
            return True, None
        if first.block_id == vote.block_id:
            return False, None
        voters = self._voters_by_block.get(vote.block_id)
        if voters is not None and validator in voters:
            return False, first
        signed_blocks = sum(1 for voters in self._voters_by_block.values() if validator in voters)
        if signed_blocks >= max_blocks_per_validator:
            return False, first
        self._count(vote, power)
        return True, first

    def counted(self) -> list[Vote]:
        """Every vote counted in this round (an equivocator's up to its bound)."""
        return [vote for voters in self._voters_by_block.values() for vote in voters.values()]

    def _count(self, vote: Vote, power: int) -> None:
        voters = self._voters_by_block.get(vote.block_id)
        if voters is None:
            voters = self._voters_by_block[vote.block_id] = {}
        voters[vote.validator] = vote
        self._power_by_block[vote.block_id] = self._power_by_block.get(vote.block_id, 0) + power

    def has_vote_from(self, validator: bytes) -> bool:
        return validator in self._first

    def power_for(self, block_id: bytes) -> int:
        """Voting power of the validators that voted for `block_id` (nil included)."""
        return self._power_by_block.get(block_id, 0)

    def blocks(self) -> list[tuple[bytes, int]]:
        """(block id, power) for every non-nil block voted for, in first-seen order."""
        return [
            (block, power) for block, power in self._power_by_block.items() if block != NIL_BLOCK_ID
        ]

    def votes_for(self, block_id: bytes) -> list[Vote]:
        """The counted votes for `block_id`, in arrival order."""
        return list(self._voters_by_block.get(block_id, {}).values())


class HeightVotes:
    """Prevotes and precommits of every round of one height."""

    __slots__ = ("_rounds",)

    def __init__(self) -> None:
        self._rounds: dict[tuple[int, VoteType], RoundVotes] = {}

    def round_votes(self, round_number: int, vote_type: VoteType) -> RoundVotes | None:
        return self._rounds.get((round_number, vote_type))

    def add(
        self, vote: Vote, power: int, max_blocks_per_validator: int
    ) -> tuple[bool, Vote | None]:
        """Count `vote`; see `RoundVotes.add`."""
        key = (vote.round, vote.type)
        votes = self._rounds.get(key)
        if votes is None:
            votes = self._rounds[key] = RoundVotes()
        return votes.add(vote, power, max_blocks_per_validator)

    def power_for(self, round_number: int, vote_type: VoteType, block_id: bytes) -> int:
        votes = self._rounds.get((round_number, vote_type))
        return votes.power_for(block_id) if votes else 0

    def total_power(self, round_number: int, vote_type: VoteType) -> int:
        votes = self._rounds.get((round_number, vote_type))
        return votes.total_power if votes else 0

    def votes_for(self, round_number: int, vote_type: VoteType, block_id: bytes) -> list[Vote]:
        votes = self._rounds.get((round_number, vote_type))
        return votes.votes_for(block_id) if votes else []

    def counted_in_round(self, round_number: int) -> list[Vote]:
        """The prevotes, then the precommits, counted in `round_number`."""
        counted: list[Vote] = []
        for vote_type in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            votes = self._rounds.get((round_number, vote_type))
            if votes is not None:
                counted.extend(votes.counted())
        return counted
