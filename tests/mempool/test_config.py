"""MempoolConfig.validate names the bad field; the Mempool refuses an invalid config."""

from __future__ import annotations

from dataclasses import replace

import pytest

from emrchain import schema
from emrchain.mempool import Mempool, MempoolConfig, MempoolConfigError
from emrchain.schema.verdicts import LimitError
from tests.mempool.txs import CHAIN_ID, Chain


def test_defaults_are_valid() -> None:
    MempoolConfig().validate()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_txs", 0),
        ("max_bytes", 100),  # below max_tx_bytes
        ("max_tx_bytes", schema.ENVELOPE_FIXED_BYTES),
        ("max_tx_bytes", schema.TX_MAX_BYTES_LIMIT + 1),
        ("max_batch_txs", 0),
        ("max_txs_per_sender", 0),
        ("max_txs_per_sender", 10_000_001),
        ("recheck_batch_txs", 0),
        ("seen_cache_entries", 0),
        ("verify_threads", -1),
        ("verify_threads", 257),
        ("max_txs", True),
        ("max_bytes", 1.5),
    ],
)
def test_bad_field_is_named(field: str, value: object) -> None:
    config = replace(MempoolConfig(), **{field: value})
    with pytest.raises(MempoolConfigError) as caught:
        config.validate()
    assert caught.value.field == field
    assert field in str(caught.value)
    with pytest.raises(MempoolConfigError):
        Mempool(config, CHAIN_ID, Chain())


def test_bad_chain_id_is_refused() -> None:
    with pytest.raises(LimitError):
        Mempool(MempoolConfig(), b"Bad Chain", Chain())
