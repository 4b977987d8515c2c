"""Hot-path shortcuts give exactly the results of the paths they replace."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from emrchain import _core
from emrchain._core.reference import txcheck
from emrchain.schema import codec
from tests.core.txgen import CHAIN_ID, valid_transactions

MAX_TX_BYTES = 65_000


@settings(max_examples=300, deadline=None)
@given(st.lists(valid_transactions(), min_size=1, max_size=5))
def test_decode_accepted_equals_decode_transaction(txs: list[bytes]) -> None:
    verdicts, _ = _core.check_transactions(txs, CHAIN_ID, MAX_TX_BYTES)
    assert not any(verdicts)
    for raw in txs:
        assert txcheck.decode_accepted(raw) == codec.decode_transaction(
            raw, CHAIN_ID, MAX_TX_BYTES
        )
