"""NonceAnchorApplication: nonces, anchors, other kinds, bad input, block-level refusals."""

from __future__ import annotations

import dataclasses

import pytest

from emrchain._core import Verdict
from emrchain.schema import TxKind, codec
from emrchain.state import (
    DEFAULT_HANDLERS,
    AnchorRecord,
    BlockExecutionError,
    MemoryState,
    NonceAnchorApplication,
    ResultCode,
    TxResult,
    code_name,
    keys,
    read_progress,
)
from emrchain.state.application import HandlerContractError, writes_only_when_accepted
from tests.state.chain import (
    BLOCK_INTERVAL_MS,
    CHAIN_ID,
    GENESIS_TIME_MS,
    ChainBuilder,
    anchor_tx,
    refused_writes,
    signed_tx,
    signer,
)

ALICE = signer("alice")
BOB = signer("bob")


def codes(built) -> list[int]:
    return [result.code for result in built.result.tx_results]


def nonce_of(chain: ChainBuilder, key) -> int:
    raw = chain.state.get(keys.nonce_key(key.public_key))
    return 0 if raw is None else int.from_bytes(raw, "big")


def test_first_nonce_is_one_then_each_next_is_previous_plus_one() -> None:
    chain = ChainBuilder()
    built = chain.add_block(
        [
            anchor_tx(ALICE, 0, label=1),
            anchor_tx(ALICE, 2, label=2),
            anchor_tx(ALICE, 1, label=3),
            anchor_tx(ALICE, 1, label=4),
            anchor_tx(ALICE, 2, label=5),
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
    assert chain.add_block([anchor_tx(ALICE, 3, label=6)]).result.tx_results[0].code == 0
    assert nonce_of(chain, ALICE) == 3 and nonce_of(chain, BOB) == 0


def test_anchor_is_stored_with_block_height_and_time_and_duplicates_are_refused() -> None:
    chain = ChainBuilder()
    first = anchor_tx(ALICE, 1, label=9)
    chain.add_block([first])
    record_id = codec.decode_transaction(first, CHAIN_ID, 4096).fields["record_id"]
    record = AnchorRecord.decode(chain.state.get(keys.record_key(record_id)))
    fields = codec.decode_transaction(first, CHAIN_ID, 4096).fields
    assert record == AnchorRecord.from_fields(fields, ALICE.public_key, 1, GENESIS_TIME_MS + 1000)
    assert record.time_ms == GENESIS_TIME_MS + BLOCK_INTERVAL_MS
    # Same record id from another sender, and from the first sender again: refused, but each
    # consumes its nonce.
    built = chain.add_block([anchor_tx(BOB, 1, label=9), anchor_tx(ALICE, 2, label=9)])
    assert codes(built) == [ResultCode.DUPLICATE_RECORD] * 2
    assert record_id.hex() in built.result.tx_results[0].message
    assert nonce_of(chain, BOB) == 1 and nonce_of(chain, ALICE) == 2
    assert AnchorRecord.decode(chain.state.get(keys.record_key(record_id))) == record


def test_duplicate_record_within_one_block_only_first_applies() -> None:
    chain = ChainBuilder()
    built = chain.add_block([anchor_tx(ALICE, 1, label=3), anchor_tx(BOB, 1, label=3)])
    assert codes(built) == [ResultCode.OK, ResultCode.DUPLICATE_RECORD]


def test_refused_transaction_writes_nothing_but_its_consumed_nonce() -> None:
    chain = ChainBuilder()
    chain.add_block([anchor_tx(ALICE, 1, label=1)])
    empty = chain.add_block([])
    refused = chain.add_block([anchor_tx(BOB, 1, label=1), anchor_tx(ALICE, 5, label=2)])
    assert codes(refused) == [ResultCode.DUPLICATE_RECORD, ResultCode.NONCE_GAP]
    # Begin-block bookkeeping (progress), as for an empty block, and the nonce the rule-refused
    # transaction consumed; the one refused for its nonce writes nothing.
    assert set(empty.result.writes) == {keys.PROGRESS}
    assert set(refused.result.writes) == refused_writes(BOB.public_key)
    assert refused.result.writes[keys.nonce_key(BOB.public_key)] == (1).to_bytes(8, "big")
    assert nonce_of(chain, ALICE) == 1
    # Refused for the nonce or the signature: nothing at all, as for an empty block.
    good = anchor_tx(ALICE, 2, label=3)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    nothing = chain.add_block([anchor_tx(ALICE, 1, label=3), anchor_tx(BOB, 3, label=3), forged])
    assert codes(nothing) == [ResultCode.NONCE_USED, ResultCode.NONCE_GAP, Verdict.BAD_SIGNATURE]
    assert set(nothing.result.writes) == {keys.PROGRESS}


def test_refused_transaction_consumes_its_nonce_so_it_cannot_be_replayed() -> None:
    chain = ChainBuilder()
    chain.add_block([anchor_tx(ALICE, 1, label=1)])
    refused = anchor_tx(BOB, 1, label=1)  # valid bytes, but the record id is taken
    built = chain.add_block([refused])
    assert codes(built) == [ResultCode.DUPLICATE_RECORD]
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
    assert codes(chain.add_block([anchor_tx(BOB, 2, label=2)])) == [ResultCode.OK]
    assert nonce_of(chain, BOB) == 2


@pytest.mark.parametrize(
    "kind", [kind for kind in TxKind if kind not in (TxKind.ANCHOR_RECORD, TxKind.VALIDATOR_UPDATE)]
)
def test_other_kinds_only_consume_their_nonce(kind: TxKind) -> None:
    from tests.core.txgen import default_values

    chain = ChainBuilder()
    built = chain.add_block([signed_tx(ALICE, kind, 1, default_values(kind))])
    assert codes(built) == [ResultCode.OK]
    assert set(built.result.writes) == {keys.PROGRESS, keys.nonce_key(ALICE.public_key)}


def test_bad_input_in_a_block_gets_its_stateless_verdict_and_changes_nothing() -> None:
    chain = ChainBuilder()
    good = anchor_tx(ALICE, 1, label=1)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    unknown_kind = bytearray(anchor_tx(ALICE, 1, label=2))
    unknown_kind[2 + len(CHAIN_ID)] = 99
    other_chain = signed_tx(ALICE, TxKind.ANCHOR_RECORD, 1, _anchor_fields(), chain_id=b"other")
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


def _anchor_fields() -> dict:
    from emrchain.workload import anchor_fields

    return anchor_fields(7, 0, 0)


def test_check_tx_agrees_with_execution_and_writes_nothing() -> None:
    chain = ChainBuilder()
    chain.add_block([anchor_tx(ALICE, 1, label=1)])
    view = chain.state

    def check(raw: bytes) -> int:
        return chain.app.check_tx(codec.decode_transaction(raw, CHAIN_ID, 4096), view).code

    assert check(anchor_tx(ALICE, 1, label=2)) == ResultCode.NONCE_USED
    assert check(anchor_tx(ALICE, 3, label=2)) == ResultCode.NONCE_GAP
    assert check(anchor_tx(BOB, 1, label=1)) == ResultCode.DUPLICATE_RECORD
    assert check(anchor_tx(ALICE, 2, label=2)) == ResultCode.OK
    assert nonce_of(chain, ALICE) == 1 and chain.state.last_height() == 1
    assert chain.app.info() == (1, chain.state.last_app_hash())


def test_block_that_does_not_fit_the_state_is_refused_whole() -> None:
    chain = ChainBuilder()
    block = chain.propose([anchor_tx(ALICE, 1)])
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
        [anchor_tx(ALICE, 1, label=1), anchor_tx(BOB, 1, label=2)],
        [anchor_tx(ALICE, 2, label=3), anchor_tx(BOB, 3, label=4), b"junk"],
        [],
    ]
    for txs in batches:
        a, b = first.add_block(txs), second.add_block(txs)
        assert a.result == b.result
    assert list(first.state.items()) == list(second.state.items())
    assert first.state.last_app_hash() == second.state.last_app_hash()


def test_application_refuses_incomplete_handler_table_and_bad_chain_id() -> None:
    with pytest.raises(ValueError, match="no handler"):
        NonceAnchorApplication(CHAIN_ID, MemoryState(), handlers={})
    with pytest.raises(ValueError, match="chain_id"):
        NonceAnchorApplication(b"Bad Chain", MemoryState())


def test_signature_verdicts_from_proposal_validation_are_used_as_given() -> None:
    from emrchain import _core

    chain = ChainBuilder()
    txs = [anchor_tx(ALICE, 1, label=1), anchor_tx(BOB, 1, label=2)]
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
    txs = [anchor_tx(ALICE, 1, label=1), anchor_tx(BOB, 1, label=2)]
    block = chain.propose(txs)
    checked = chain.app.execute_block(block, chain.state)
    verdicts, _ = _core.check_transactions(list(txs), CHAIN_ID, DEFAULT_LIMITS.max_tx_bytes)
    given = chain.app.execute_block(block, chain.state, stateless_verdicts=bytes(verdicts))
    assert given == checked
    with pytest.raises(BlockExecutionError, match="1 stateless verdicts for 2 transactions"):
        chain.app.execute_block(block, chain.state, stateless_verdicts=b"\x00")


def test_anchor_record_encoding_round_trips_and_is_bounded() -> None:
    from emrchain.types import DecodeError, EncodeError

    record = AnchorRecord(b"\x01" * 32, b"\x02" * 32, b"cid-bytes", 3, 1 << 40, b"\x03" * 32, 9, 7)
    encoded = record.encode()
    assert len(encoded) == 32 + 32 + 1 + 9 + 1 + 8 + 32 + 8 + 8
    assert AnchorRecord.decode(encoded) == record
    with pytest.raises(DecodeError, match="trailing"):
        AnchorRecord.decode(encoded + b"\x00")
    with pytest.raises(DecodeError, match="shorter than 2"):
        AnchorRecord.decode(dataclasses.replace(record, cid=b"x").encode())
    with pytest.raises(EncodeError, match="submitter must be 32 bytes"):
        dataclasses.replace(record, submitter=b"short").encode()
    with pytest.raises(EncodeError, match="AnchorRecord"):
        dataclasses.replace(record, size_bytes=1 << 64).encode()


def _marked(write_first: bool):
    """A handler marked writes_only_when_accepted that refuses, after a write or before it."""

    def handler(tx, state, context):
        if write_first:
            state.put(b"Zscratch", b"written before the refusal")
        return TxResult.make(ResultCode.DUPLICATE_RECORD, "refused")

    return writes_only_when_accepted(handler)


def test_a_handler_marked_writes_only_when_accepted_runs_on_the_block_overlay() -> None:
    handlers = {**DEFAULT_HANDLERS, TxKind.ANCHOR_RECORD: _marked(write_first=False)}
    chain = ChainBuilder(handlers=handlers)
    built = chain.add_block([anchor_tx(ALICE, 1, label=1)])
    assert codes(built) == [ResultCode.DUPLICATE_RECORD]
    assert set(built.result.writes) == refused_writes(ALICE.public_key)


def test_a_marked_handler_that_writes_then_refuses_stops_the_block() -> None:
    # Marked wrongly, its write would survive the refusal: the pipeline refuses to go on.
    handlers = {**DEFAULT_HANDLERS, TxKind.ANCHOR_RECORD: _marked(write_first=True)}
    chain = ChainBuilder(handlers=handlers)
    with pytest.raises(HandlerContractError, match="wrote state and then refused"):
        chain.add_block([anchor_tx(ALICE, 1, label=1)])
