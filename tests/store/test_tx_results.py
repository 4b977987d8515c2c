"""The stored form of a block's transaction results (`store/tx_results.py`): the bytes are the
field-by-field `Writer` encoding of the module docstring, the round trip is exact, and what does
not fit is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain.state.codes import ResultCode
from emrchain.state.result import MAX_TX_RESULT_MESSAGE_BYTES, TxResult
from emrchain.store.tx_results import decode_tx_results, encode_tx_results
from emrchain.types.codec import EncodeError, Writer


def writer_encoding(results: list[TxResult]) -> bytes:
    """count u32 | per tx: code u16 | message bytes16, written field by field."""
    writer = Writer().u32(len(results))
    for code, message in results:
        writer.u16(code).var_bytes(message.encode("utf-8"), 2)
    return writer.bytes()


messages = st.text(max_size=40).filter(
    lambda text: len(text.encode("utf-8")) <= MAX_TX_RESULT_MESSAGE_BYTES
)
results_lists = st.lists(
    st.builds(TxResult, st.integers(0, 0xFFFF), messages), max_size=50
)


@settings(max_examples=200, deadline=None)
@given(results=results_lists)
def test_encoding_is_the_field_by_field_form_and_round_trips(results: list[TxResult]) -> None:
    encoded = encode_tx_results(results)
    assert encoded == writer_encoding(results)
    assert decode_tx_results(encoded, len(results)) == results


def test_result_codes_as_the_application_returns_them() -> None:
    results = [TxResult(ResultCode.OK, "record 0011 anchored"), TxResult(ResultCode.NONCE_GAP, "")]
    assert encode_tx_results(results) == writer_encoding(results)


@pytest.mark.parametrize("code", [-1, 0x10000, True, 1.0, "1"])
def test_a_code_outside_u16_is_refused(code: object) -> None:
    with pytest.raises(EncodeError, match="does not fit u16"):
        encode_tx_results([TxResult(code, "x")])  # type: ignore[arg-type]


def test_a_message_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        encode_tx_results([TxResult(0, "x" * (MAX_TX_RESULT_MESSAGE_BYTES + 1))])
