"""A real node with its absence filter (on by default): a record id anchored once is refused
as a duplicate in a later block, also after a restart (the filter is rebuilt from the store),
and the filter covers exactly the anchored records."""

from __future__ import annotations

import asyncio
from pathlib import Path

from emrchain.devnet.workload import anchor_fields, anchor_transactions, sender_key
from emrchain.node.node import Node
from emrchain.schema import TxKind
from emrchain.state import ResultCode, keys
from emrchain.types import Transaction
from tests.node.in_process import (
    CHAIN_ID,
    commit_own_block,
    register_workload_senders,
    single_validator_node,
)

SEED = 13


def _duplicate_of_first_record(sender_index: int, nonce: int) -> bytes:
    """An anchor by workload sender `sender_index` of the record sender 0 anchored first."""
    fields = anchor_fields(SEED, 0, 1)
    signer = sender_key(SEED, sender_index)
    return Transaction.create(
        signer, CHAIN_ID.encode(), TxKind.ANCHOR_RECORD, nonce, fields
    ).encode()


def _commit(node: Node, txs: list[bytes]) -> list[int]:
    assert all(admission.accepted for admission in node.mempool.admit_batch(txs))
    block = commit_own_block(node)
    results = node.chain.store.tx_results(block.height)
    assert results is not None
    return [result.code for result in results]


def test_a_duplicate_record_is_refused_with_the_filter_and_after_a_restart(
    tmp_path: Path,
) -> None:
    with single_validator_node(tmp_path) as node:
        absence = node.store._absence
        assert absence is not None and absence.prefixes == {keys.EMR_RECORD_PREFIX}
        register_workload_senders(node, senders=2, seed=SEED)
        first = anchor_transactions(2, chain_id=CHAIN_ID.encode(), senders=2, seed=SEED)
        assert _commit(node, first) == [0, 0]
        assert absence.keys_added == 2
        assert _commit(node, [_duplicate_of_first_record(1, 2)]) == [ResultCode.DUPLICATE_RECORD]
        assert absence.keys_added == 2
        home = node.config.home
    restarted = Node.open(home)
    try:
        absence = restarted.store._absence
        assert absence is not None and absence.keys_added == 2
        assert _commit(restarted, [_duplicate_of_first_record(1, 3)]) == [
            ResultCode.DUPLICATE_RECORD
        ]
    finally:
        asyncio.run(restarted.records.close())
        restarted._database.close()
