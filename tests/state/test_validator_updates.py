"""Validator updates: the >2/3 approval rule, epochs, bounds, and the height + 2 delay."""

from __future__ import annotations

import pytest

from emrchain.crypto.keycheck import FIELD_PRIME, _add, _decompress
from emrchain.schema import codec
from emrchain.state import (
    ApplicationRules,
    ResultCode,
    ValidatorUpdateError,
    apply_validator_updates,
    read_validator_sets,
)
from emrchain.state.validators import (
    ValidatorProposal,
    decode_proposals,
    encode_proposals,
    read_proposals,
)
from emrchain.types import DecodeError, Limits, Validator, ValidatorSet
from tests.crypto.test_keycheck import compress
from tests.state.chain import (
    CHAIN_ID,
    BuiltBlock,
    ChainBuilder,
    consumes_nonce,
    refused_writes,
    signer,
    validator_update_tx,
)

NEWCOMER = signer(10).public_key


def _decompress_or_fail(key: bytes) -> tuple[int, int, int, int]:
    point = _decompress(key)
    assert point is not None
    return point


class Approvals:
    """Send VALIDATOR_UPDATE transactions from validators, tracking each one's nonce."""

    def __init__(self, chain: ChainBuilder) -> None:
        self.chain = chain
        self.nonces: dict[int, int] = {}

    def tx(self, validator: int, key: bytes = NEWCOMER, power: int = 5, epoch: int = 1) -> bytes:
        self.nonces[validator] = self.nonces.get(validator, 0) + 1
        return validator_update_tx(signer(validator), self.nonces[validator], key, power, epoch)

    def block(self, txs: list[bytes]) -> BuiltBlock:
        """Add a block; a transaction refused before its nonce was consumed (nonce, signature
        or encoding errors) gives it back. A rule refusal consumes it, as an applied one does."""
        built = self.chain.add_block(txs)
        senders = {signer(index).public_key: index for index in range(16)}
        for raw, result in zip(txs, built.result.tx_results, strict=True):
            if not consumes_nonce(result.code):
                self.nonces[senders[codec.decode_transaction(raw, CHAIN_ID, 4096).sender]] -= 1
        return built


def codes(built) -> list[int]:
    return [result.code for result in built.result.tx_results]


def sets(chain: ChainBuilder) -> tuple[ValidatorSet, ValidatorSet]:
    return read_validator_sets(chain.state)


def test_exactly_two_thirds_is_not_enough_and_more_applies() -> None:
    chain = ChainBuilder(powers=(1, 1, 1))
    approvals = Approvals(chain)
    built = chain.add_block([approvals.tx(0), approvals.tx(1)])  # 2 of 3 = exactly 2/3
    assert codes(built) == [ResultCode.OK, ResultCode.OK]
    assert "2 of 3 voting power" in built.result.tx_results[1].message
    assert built.result.validator_updates == []
    assert NEWCOMER not in sets(chain)[1]
    assert len(read_proposals(chain.state)) == 1
    built = chain.add_block([approvals.tx(2)])
    assert "takes effect at height 4" in built.result.tx_results[0].message
    assert built.result.validator_updates == [Validator(NEWCOMER, 5)]
    assert read_proposals(chain.state) == []


def test_weighted_power_counts_not_heads() -> None:
    chain = ChainBuilder(powers=(2, 1, 3))  # total 6
    approvals = Approvals(chain)
    assert chain.add_block([approvals.tx(1), approvals.tx(2)]).result.validator_updates == []
    # 1 + 3 = 4 of 6 is exactly 2/3: still open; adding 2 makes 6 of 6.
    built = chain.add_block([approvals.tx(0)])
    assert built.result.validator_updates == [Validator(NEWCOMER, 5)]


def test_update_takes_effect_at_height_plus_two() -> None:
    chain = ChainBuilder(powers=(1, 1, 1, 1))
    genesis_set = chain.genesis_validators
    approvals = Approvals(chain)
    built = chain.add_block([approvals.tx(i) for i in range(3)])  # height 1
    assert built.block.header.validators_hash == genesis_set.hash
    assert built.block.header.next_validators_hash == genesis_set.hash
    second = chain.add_block()  # height 2: still signed by the genesis set
    assert second.block.header.validators_hash == genesis_set.hash
    assert second.block.header.next_validators_hash != genesis_set.hash
    third = chain.add_block()  # height 3: the new set
    new_set = ValidatorSet([*genesis_set, Validator(NEWCOMER, 5)])
    assert third.block.header.validators_hash == new_set.hash
    assert len(third.commit.signatures) == 5  # the newcomer signs from height 3 on


def test_only_current_validators_approve() -> None:
    chain = ChainBuilder()
    outsider = signer("outsider")
    built = chain.add_block([validator_update_tx(outsider, 1, NEWCOMER, 5, 1)])
    assert codes(built) == [ResultCode.NOT_A_VALIDATOR]
    assert "not in the validator set of height 1" in built.result.tx_results[0].message


def test_duplicate_approval_and_stale_epoch_are_refused() -> None:
    chain = ChainBuilder(powers=(1, 1, 1))
    approvals = Approvals(chain)
    built = approvals.block([approvals.tx(0), approvals.tx(0)])
    assert codes(built) == [ResultCode.OK, ResultCode.DUPLICATE_APPROVAL]
    approvals.block([approvals.tx(1), approvals.tx(2)])  # applied with epoch 1
    built = approvals.block([approvals.tx(0, power=9, epoch=1)])
    assert codes(built) == [ResultCode.STALE_EPOCH]
    assert "not above 1" in built.result.tx_results[0].message
    built = approvals.block([approvals.tx(0, power=9, epoch=2)])
    assert codes(built) == [ResultCode.OK]


def test_invalid_resulting_sets_are_refused() -> None:
    chain = ChainBuilder(powers=(1,))
    approvals = Approvals(chain)
    lone = signer(0).public_key
    built = approvals.block([approvals.tx(0, key=NEWCOMER, power=0)])
    assert codes(built) == [ResultCode.INVALID_VALIDATOR_SET]
    assert "not a validator" in built.result.tx_results[0].message
    assert set(built.result.writes) == refused_writes(lone)  # only its consumed nonce
    built = approvals.block([approvals.tx(0, key=lone, power=0)])
    assert codes(built) == [ResultCode.INVALID_VALIDATOR_SET]
    assert "invalid" in built.result.tx_results[0].message  # the set would be empty
    assert read_proposals(chain.state) == []


def test_removal_applies() -> None:
    chain = ChainBuilder(powers=(1, 1, 1, 1))
    approvals = Approvals(chain)
    leaving = signer(3).public_key
    built = chain.add_block([approvals.tx(i, key=leaving, power=0) for i in range(3)])
    assert built.result.validator_updates == [Validator(leaving, 0)]
    chain.add_block()
    assert leaving not in sets(chain)[0]


def test_open_proposals_are_bounded_and_expire() -> None:
    rules = ApplicationRules(max_open_validator_proposals=2, validator_proposal_lifetime_blocks=3)
    chain = ChainBuilder(powers=(1, 1, 1, 1), rules=rules)
    approvals = Approvals(chain)
    built = approvals.block([approvals.tx(0, power=p) for p in (1, 2, 3)])  # height 1
    assert codes(built) == [ResultCode.OK, ResultCode.OK, ResultCode.TOO_MANY_PROPOSALS]
    assert "limit 2" in built.result.tx_results[2].message
    chain.add_block()
    # Height 3: the proposals opened at height 1 live until 1 + 3 = 4.
    assert codes(approvals.block([approvals.tx(0, power=3)])) == [ResultCode.TOO_MANY_PROPOSALS]
    built = approvals.block([approvals.tx(0, power=3)])  # height 4: both expired
    assert codes(built) == [ResultCode.OK]
    assert [p.power for p in read_proposals(chain.state)] == [3]


def test_apply_validator_updates_rules() -> None:
    a, b = signer(0).public_key, signer(1).public_key
    base = ValidatorSet([Validator(a, 1)])
    assert apply_validator_updates(base, [Validator(b, 2), Validator(a, 3)]) == ValidatorSet(
        [Validator(a, 3), Validator(b, 2)]
    )
    with pytest.raises(ValidatorUpdateError, match="not a validator"):
        apply_validator_updates(base, [Validator(b, 0)])
    with pytest.raises(ValidatorUpdateError, match=r"1\.\.1 validators"):
        apply_validator_updates(base, [Validator(b, 1)], Limits(max_validators=1))
    with pytest.raises(ValidatorUpdateError, match="power"):
        apply_validator_updates(base, [Validator(b, (1 << 50) + 1)])


def test_proposals_encoding_is_canonical() -> None:
    a, b = signer(0).public_key, signer(1).public_key
    proposals = [ValidatorProposal(a, 5, 1, 3, (a, b)), ValidatorProposal(a, 5, 2, 4, (b,))]
    assert decode_proposals(encode_proposals(reversed(proposals))) == proposals
    unsorted = encode_proposals(proposals[:1]).replace(a + b, b + a)
    with pytest.raises(DecodeError, match="approvers"):
        decode_proposals(unsorted)


@pytest.mark.parametrize(
    "key",
    [
        bytes.fromhex("01" + "00" * 31),  # the identity (order 1)
        (FIELD_PRIME - 1).to_bytes(32, "little"),  # the point of order 2
        compress(_add(_decompress_or_fail(NEWCOMER), (0, FIELD_PRIME - 1, 1, 0))),  # mixed
    ],
)
def test_a_key_outside_the_prime_order_group_is_refused(key: bytes) -> None:
    chain = ChainBuilder(powers=(1,))
    approvals = Approvals(chain)
    lone = signer(0).public_key
    built = approvals.block([approvals.tx(0, key=key, power=5)])
    assert codes(built) == [ResultCode.INVALID_VALIDATOR_KEY]
    assert "prime-order" in built.result.tx_results[0].message
    assert set(built.result.writes) == refused_writes(lone)  # only its consumed nonce
    assert key not in sets(chain)[1]
    # The broken variant of the check: the same update with a prime-order key applies.
    built = approvals.block([approvals.tx(0, key=NEWCOMER, power=5)])
    assert codes(built) == [ResultCode.OK]
