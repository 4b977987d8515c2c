"""The block pipeline (`state/pipeline.py`): nonces, refusals that consume them, bad input,
block-level refusals, verdicts handed over by validation, and the handler contract. Run on the
node's application; the transactions are registrations by the test organisation's admins."""

from __future__ import annotations

import dataclasses

import pytest

from emrchain._core import Verdict
from emrchain.schema import TxKind
from emrchain.state import (
    BlockExecutionError,
    BlockPipeline,
    MemoryState,
    ResultCode,
    TxResult,
    code_name,
    keys,
    read_progress,
)
from emrchain.state.application import HandlerContractError, writes_only_when_accepted
from emrchain.state.emr import EMR_HANDLERS, EmrApplication
from tests.state.chain import (
    ALICE,
    BOB,
    CHAIN_ID,
    GENESIS_TIME_MS,
    ChainBuilder,
    refused_writes,
    register_tx,
    registration_fields,
    signed_tx,
    signer,
)


def codes(built) -> list[int]:
    return [result.code for result in built.result.tx_results]


def nonce_of(chain: ChainBuilder, key) -> int:
    raw = chain.state.get(keys.nonce_key(key.public_key))
    return 0 if raw is None else int.from_bytes(raw, "big")


def member_entry(chain: ChainBuilder, label: int) -> bytes | None:
    """The state entry of the clinician `register_tx` registers under `label`, if any."""
    return chain.state.get(keys.member_key(signer(f"member/{label}").public_key))


def test_first_nonce_is_one_then_each_next_is_previous_plus_one() -> None:
    chain = ChainBuilder()
    built = chain.add_block(
        [
            register_tx(ALICE, 0, label=1),
            register_tx(ALICE, 2, label=2),
            register_tx(ALICE, 1, label=3),
            register_tx(ALICE, 1, label=4),
            register_tx(ALICE, 2, label=5),
        ]
    )
    assert codes(built) == [
        ResultCode.NONCE_USED,  # 0 is never valid
        ResultCode.NONCE_GAP,  # 2 before 1
        ResultCode.OK,
        ResultCode.NONCE_USED,  # 1 again
        ResultCode.OK,
    ]
    messages = [result.message for result in built.result.tx_results]
    assert "nonces start at 1" in messages[0]
    assert "next nonce is 1" in messages[1]
    assert "next nonce is 2" in messages[3]
    assert nonce_of(chain, ALICE) == 2
    assert chain.add_block([register_tx(ALICE, 3, label=6)]).result.tx_results[0].code == 0
    assert nonce_of(chain, ALICE) == 3 and nonce_of(chain, BOB) == 0


def test_a_refusal_by_a_rule_consumes_the_nonce_of_every_sender_it_refuses() -> None:
    chain = ChainBuilder()
    chain.add_block([register_tx(ALICE, 1, label=9)])
    registered = member_entry(chain, 9)
    assert registered is not None
    # The same member from another admin, and from the first admin again: refused, but each
    # consumes its nonce, and the registration stays as it was.
    built = chain.add_block([register_tx(BOB, 1, label=9), register_tx(ALICE, 2, label=9)])
    assert codes(built) == [ResultCode.KEY_IN_USE] * 2
    assert nonce_of(chain, BOB) == 1 and nonce_of(chain, ALICE) == 2
    assert member_entry(chain, 9) == registered


def test_a_duplicate_within_one_block_only_the_first_applies() -> None:
    chain = ChainBuilder()
    built = chain.add_block([register_tx(ALICE, 1, label=3), register_tx(BOB, 1, label=3)])
    assert codes(built) == [ResultCode.OK, ResultCode.KEY_IN_USE]


def test_refused_transaction_writes_nothing_but_its_consumed_nonce() -> None:
    chain = ChainBuilder()
    chain.add_block([register_tx(ALICE, 1, label=1)])
    empty = chain.add_block([])
    refused = chain.add_block([register_tx(BOB, 1, label=1), register_tx(ALICE, 5, label=2)])
    assert codes(refused) == [ResultCode.KEY_IN_USE, ResultCode.NONCE_GAP]
    # Begin-block bookkeeping (progress), as for an empty block, and the nonce the rule-refused
    # transaction consumed; the one refused for its nonce writes nothing.
    assert set(empty.result.writes) == {keys.PROGRESS}
    assert set(refused.result.writes) == refused_writes(BOB.public_key)
    assert refused.result.writes[keys.nonce_key(BOB.public_key)] == (1).to_bytes(8, "big")
    assert nonce_of(chain, ALICE) == 1
    # Refused for the nonce or the signature: nothing at all, as for an empty block.
    good = register_tx(ALICE, 2, label=3)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    nothing = chain.add_block(
        [register_tx(ALICE, 1, label=3), register_tx(BOB, 3, label=3), forged]
    )
    assert codes(nothing) == [ResultCode.NONCE_USED, ResultCode.NONCE_GAP, Verdict.BAD_SIGNATURE]
    assert set(nothing.result.writes) == {keys.PROGRESS}


def test_refused_transaction_consumes_its_nonce_so_it_cannot_be_replayed() -> None:
    chain = ChainBuilder()
    chain.add_block([register_tx(ALICE, 1, label=1)])
    refused = register_tx(BOB, 1, label=1)  # valid bytes, but the member key is taken
    built = chain.add_block([refused])
    assert codes(built) == [ResultCode.KEY_IN_USE]
    assert nonce_of(chain, BOB) == 1
    # The same signed bytes, included again in a later block (even twice), are refused for
    # their nonce before any rule runs, and change nothing.
    again = chain.add_block([refused, refused])
    assert codes(again) == [ResultCode.NONCE_USED] * 2
    assert (
        "nonce 1 is already used; the sender's next nonce is 2"
        in again.result.tx_results[0].message
    )
    assert set(again.result.writes) == {keys.PROGRESS}
    assert nonce_of(chain, BOB) == 1
    # The sender goes on with its next nonce.
    assert codes(chain.add_block([register_tx(BOB, 2, label=2)])) == [ResultCode.OK]
    assert nonce_of(chain, BOB) == 2


def test_bad_input_in_a_block_gets_its_stateless_verdict_and_changes_nothing() -> None:
    chain = ChainBuilder()
    good = register_tx(ALICE, 1, label=1)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    unknown_kind = bytearray(register_tx(ALICE, 1, label=2))
    unknown_kind[2 + len(CHAIN_ID)] = 99
    other_chain = signed_tx(
        ALICE, TxKind.REGISTER_MEMBER, 1, registration_fields(3), chain_id=b"other"
    )
    built = chain.add_block([b"\x01", bytes(unknown_kind), other_chain, forged, good[:-5], good])
    assert codes(built) == [
        Verdict.TRUNCATED,
        Verdict.UNKNOWN_KIND,
        Verdict.WRONG_CHAIN,
        Verdict.BAD_SIGNATURE,
        Verdict.TRUNCATED,
        ResultCode.OK,
    ]
    assert [code_name(code) for code in codes(built)][:4] == [
        "TRUNCATED",
        "UNKNOWN_KIND",
        "WRONG_CHAIN",
        "BAD_SIGNATURE",
    ]
    assert nonce_of(chain, ALICE) == 1


def test_block_that_does_not_fit_the_state_is_refused_whole() -> None:
    chain = ChainBuilder()
    block = chain.propose([register_tx(ALICE, 1)])
    wrong_height = dataclasses.replace(
        block, header=dataclasses.replace(block.header, height=2, previous_block_id=b"\x01" * 32)
    )
    with pytest.raises(BlockExecutionError, match="does not follow the executed height 0"):
        chain.app.execute_block(wrong_height, chain.state)
    wrong_set = dataclasses.replace(
        block, header=dataclasses.replace(block.header, validators_hash=b"\x02" * 32)
    )
    with pytest.raises(BlockExecutionError, match="validators_hash"):
        chain.app.execute_block(wrong_set, chain.state)
    wrong_chain = dataclasses.replace(
        block, header=dataclasses.replace(block.header, chain_id=b"other")
    )
    with pytest.raises(BlockExecutionError, match="another chain"):
        chain.app.execute_block(wrong_chain, chain.state)
    assert chain.state.last_height() == 0 and read_progress(chain.state) == (0, GENESIS_TIME_MS)


def test_execution_is_deterministic_across_independent_applications() -> None:
    first, second = ChainBuilder(), ChainBuilder()
    batches = [
        [register_tx(ALICE, 1, label=1), register_tx(BOB, 1, label=2)],
        [register_tx(ALICE, 2, label=3), register_tx(BOB, 3, label=4), b"junk"],
        [],
    ]
    for txs in batches:
        a, b = first.add_block(txs), second.add_block(txs)
        assert a.result == b.result
    assert list(first.state.items()) == list(second.state.items())
    assert first.state.last_app_hash() == second.state.last_app_hash()


def test_the_pipeline_refuses_an_incomplete_handler_table_and_a_bad_chain_id() -> None:
    with pytest.raises(ValueError, match="no handler"):
        BlockPipeline(CHAIN_ID, MemoryState(), handlers={})
    with pytest.raises(ValueError, match="no handler"):
        without_erasure = {k: v for k, v in EMR_HANDLERS.items() if k != TxKind.ERASE_RECORD}
        BlockPipeline(CHAIN_ID, MemoryState(), handlers=without_erasure)
    with pytest.raises(ValueError, match="chain_id"):
        EmrApplication(b"Bad Chain", MemoryState())


def test_signature_verdicts_from_proposal_validation_are_used_as_given() -> None:
    from emrchain import _core

    chain = ChainBuilder()
    txs = [register_tx(ALICE, 1, label=1), register_tx(BOB, 1, label=2)]
    block = chain.propose(txs)
    verified = chain.app.execute_block(block, chain.state)
    given = chain.app.execute_block(
        block, chain.state, signature_verdicts=_core.verify_transactions(list(txs))
    )
    assert given == verified
    distrusted = chain.app.execute_block(block, chain.state, signature_verdicts=b"\x01\x00")
    assert [r.code for r in distrusted.tx_results] == [ResultCode.OK, Verdict.BAD_SIGNATURE]
    with pytest.raises(BlockExecutionError, match="1 signature verdicts for 2 transactions"):
        chain.app.execute_block(block, chain.state, signature_verdicts=b"\x01")


def test_stateless_verdicts_from_proposal_validation_are_used_as_given() -> None:
    from emrchain import _core
    from emrchain.types import DEFAULT_LIMITS

    chain = ChainBuilder()
    txs = [register_tx(ALICE, 1, label=1), register_tx(BOB, 1, label=2)]
    block = chain.propose(txs)
    checked = chain.app.execute_block(block, chain.state)
    verdicts, _ = _core.check_transactions(list(txs), CHAIN_ID, DEFAULT_LIMITS.max_tx_bytes)
    given = chain.app.execute_block(block, chain.state, stateless_verdicts=bytes(verdicts))
    assert given == checked
    with pytest.raises(BlockExecutionError, match="1 stateless verdicts for 2 transactions"):
        chain.app.execute_block(block, chain.state, stateless_verdicts=b"\x00")


def _marked(write_first: bool):
    """A handler marked writes_only_when_accepted that refuses, after a write or before it."""

    def handler(tx, state, context):
        if write_first:
            state.put(b"Zscratch", b"written before the refusal")
        return TxResult.make(ResultCode.KEY_IN_USE, "refused")

    return writes_only_when_accepted(handler)


def test_a_handler_marked_writes_only_when_accepted_runs_on_the_block_overlay() -> None:
    handlers = {**EMR_HANDLERS, TxKind.REGISTER_MEMBER: _marked(write_first=False)}
    chain = ChainBuilder(handlers=handlers)
    built = chain.add_block([register_tx(ALICE, 1, label=1)])
    assert codes(built) == [ResultCode.KEY_IN_USE]
    assert set(built.result.writes) == refused_writes(ALICE.public_key)


def test_a_marked_handler_that_writes_then_refuses_stops_the_block() -> None:
    # Marked wrongly, its write would survive the refusal: the pipeline refuses to go on.
    handlers = {**EMR_HANDLERS, TxKind.REGISTER_MEMBER: _marked(write_first=True)}
    chain = ChainBuilder(handlers=handlers)
    with pytest.raises(HandlerContractError, match="wrote state and then refused"):
        chain.add_block([register_tx(ALICE, 1, label=1)])
