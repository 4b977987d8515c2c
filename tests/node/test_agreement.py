"""Issue 4 acceptance: 4 validators commit 1,000 submitted transactions; every node reports the
same block ids and app hashes at every height; each inclusion proof verifies."""

from __future__ import annotations

import random

from emrchain.devnet.harness import Devnet
from emrchain.devnet.workload import anchor_transactions
from tests.node.conftest import assert_no_equivocation, assert_proof, assert_same_chain, chain_id


def test_four_validators_commit_1000_txs_and_agree(devnet: Devnet) -> None:
    devnet.register_workload_members(senders=40, seed=1)
    txs = anchor_transactions(1000, chain_id=chain_id(devnet), senders=40, seed=1)
    accepted = devnet.submit(txs)
    assert len(accepted) == 1000
    devnet.wait_committed(0, accepted, timeout_s=120)
    top = devnet.height(0)
    devnet.wait_for_height(top, [1, 2, 3], timeout_s=60)
    assert_same_chain(devnet, [0, 1, 2, 3])
    statuses = [devnet.rpc(index, f"/blocks/{top}") for index in range(4)]
    assert len({status["header"]["app_hash"] for status in statuses}) == 1
    sample = random.Random(4).sample(accepted, 100)
    for position, tx_id in enumerate(sample):
        assert_proof(devnet, position % 4, tx_id)
    assert_no_equivocation(devnet, [0, 1, 2, 3])


def test_bad_requests_change_nothing(devnet: Devnet) -> None:
    height = devnet.height(0)
    bad = [
        devnet.rpc(0, "/txs", {"txs": ["zz"]}),
        devnet.rpc(0, "/txs", {"nope": 1}),
        devnet.rpc(0, "/txs", {"txs": []}),
        devnet.rpc(0, "/txs/" + "ab" * 31),
        devnet.rpc(0, "/blocks/-1"),
        devnet.rpc(0, "/blocks/999999999"),
    ]
    codes = [reply["error"]["code"] for reply in bad]
    assert codes == [
        "bad_hex",
        "bad_request",
        "batch_size",
        "bad_length",
        "bad_height",
        "unknown_block",
    ]
    garbage = devnet.rpc(0, "/txs", {"txs": ["00" * 10, "01" * 300]})["results"]
    assert [result["accepted"] for result in garbage] == [False, False]
    assert [result["code"] for result in garbage] == ["bad_version", "wrong_chain"]
    devnet.wait_for_height(height + 2, [0, 1, 2, 3], timeout_s=30)
