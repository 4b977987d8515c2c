"""Each signature is verified once per node: admission, proposal validation and execution share
the outcome (in-process node on a temporary home; no network)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from emrchain import _core
from emrchain.devnet.workload import anchor_transactions
from emrchain.node.node import Node
from tests.node.in_process import (
    CHAIN_ID,
    commit_for,
    commit_own_block,
    proposal_with,
    register_workload_senders,
    single_validator_node,
)


class CountingVerify:
    def __init__(self) -> None:
        self.verified: list[bytes] = []
        self._real = _core.verify_transactions

    def __call__(self, txs: Sequence[bytes], threads: int = 0) -> bytes:
        self.verified.extend(txs)
        return self._real(txs, threads)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with single_validator_node(tmp_path) as opened:
        yield opened


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingVerify:
    counter = CountingVerify()
    monkeypatch.setattr(_core, "verify_transactions", counter)
    return counter


def test_own_proposal_is_validated_and_executed_without_verifying_again(
    node: Node, counting: CountingVerify
) -> None:
    register_workload_senders(node, senders=8, seed=3)
    verified_before = node.mempool.stats().signatures_verified
    txs = anchor_transactions(40, chain_id=CHAIN_ID.encode(), senders=8, seed=3)
    admitted = node.mempool.admit_batch(txs)
    assert all(admission.accepted for admission in admitted)
    verified_at_admission = node.mempool.stats().signatures_verified - verified_before
    block = commit_own_block(node)
    assert len(block.txs) == 40
    assert counting.verified == []
    assert node.mempool.stats().signatures_verified - verified_before == verified_at_admission
    assert verified_at_admission == 40
    results = node.chain.store.tx_results(block.height)
    # Every anchor executed (applied), with the signature outcomes admission had found.
    assert results is not None and [result.code for result in results] == [0] * 40


def test_a_proposal_verifies_only_what_admission_did_not(
    node: Node, counting: CountingVerify
) -> None:
    chain = node.chain
    register_workload_senders(node, senders=30, seed=4)
    txs = anchor_transactions(30, chain_id=CHAIN_ID.encode(), senders=30, seed=4)
    node.mempool.admit_batch(txs[:10])
    # A peer's proposal carrying 20 transactions this node never admitted.
    proposal = proposal_with(node, txs)
    verdict = chain.validate_block(proposal)
    assert verdict.valid, verdict.reason
    assert sorted(counting.verified) == sorted(txs[10:])
    # Their gossip arriving now is not verified again, and neither is execution.
    node.mempool.admit_batch(txs[10:])
    chain.apply_block(proposal, commit_for(node, proposal), verdict)
    assert sorted(counting.verified) == sorted(txs[10:])


def test_admission_pipeline_verifies_ahead_once_and_admits_in_order(node: Node) -> None:
    """Signatures are verified by the worker (once), the mempool's own verify call is served
    from those outcomes, and the results equal direct admission, in submission order."""
    import asyncio

    from emrchain.node.admission import AdmissionPipeline

    counting = CountingVerify()
    pipeline = AdmissionPipeline(verify=counting)
    pipeline.attach(node.mempool)
    node.mempool._verify = pipeline.verify_hook  # the node wires it at construction
    register_workload_senders(node, senders=6, seed=5)
    counting.verified.clear()  # the registrations went through the hook
    txs = anchor_transactions(60, chain_id=CHAIN_ID.encode(), senders=6, seed=5)
    bad = txs[30][:-1] + bytes([txs[30][-1] ^ 1])  # a broken signature

    async def run() -> list[list[bool]]:
        pipeline.start()
        try:
            first, second = await asyncio.gather(
                pipeline.admit(txs[:30]), pipeline.admit([bad, *txs[31:]])
            )
        finally:
            await pipeline.stop()
        return [[admission.accepted for admission in batch] for batch in (first, second)]

    first, second = asyncio.run(run())
    assert first == [True] * 30
    # Round-robin over 6 senders: index 30 is sender 0's, refused for its signature, so sender
    # 0's later nonces (every 6th) leave a gap; every other sender's are admitted.
    assert second == [index % 6 != 0 for index in range(30, 60)]
    assert len(counting.verified) == 60  # each transaction once, in the worker
    assert pipeline.preverified_txs == 60


def test_the_worker_verifies_batch_after_batch_while_the_loop_is_busy(node: Node) -> None:
    """Batches handed to the worker are verified one after another without the event loop:
    while the loop is blocked (as when it executes a block), verification goes on."""
    import asyncio
    import threading

    from emrchain.node.admission import AdmissionPipeline

    batches = 3
    done = threading.Semaphore(0)
    counting = CountingVerify()

    def verify(txs: Sequence[bytes], threads: int = 0) -> bytes:
        outcome = counting(txs, threads)
        done.release()
        return outcome

    pipeline = AdmissionPipeline(verify=verify)
    pipeline.attach(node.mempool)
    node.mempool._verify = pipeline.verify_hook
    register_workload_senders(node, senders=3, seed=8)
    counting.verified.clear()  # the registrations went through the hook
    txs = anchor_transactions(30, chain_id=CHAIN_ID.encode(), senders=3, seed=8)

    async def run() -> list[list[bool]]:
        pipeline.start()
        try:
            outcomes = [
                asyncio.ensure_future(pipeline.admit(txs[index::batches]))
                for index in range(batches)
            ]
            for _ in range(100):  # let the loop hand every batch over
                await asyncio.sleep(0)
            # The loop now blocks; every handed-over batch must still get verified.
            for _ in range(batches):
                assert done.acquire(timeout=10), "verification waited for the event loop"
            admitted = await asyncio.gather(*outcomes)
        finally:
            await pipeline.stop()
        return [[admission.accepted for admission in batch] for batch in admitted]

    admitted = asyncio.run(run())
    # Senders take turns in `txs`, so batch k holds sender k's nonces 1..10: all admitted.
    assert admitted == [[True] * 10] * batches
    assert len(counting.verified) == 30


def test_gossip_arriving_after_its_block_committed_is_not_verified_again(node: Node) -> None:
    """A follower often verifies a proposal's transactions before their gossip arrives; once
    the block committed, that gossip is refused as committed, so pre-verifying it would be
    wasted work (on a busy devnet it was a third of all verifications)."""
    import asyncio

    from emrchain.node.admission import AdmissionPipeline

    counting = CountingVerify()
    pipeline = AdmissionPipeline(verify=counting)
    pipeline.attach(node.mempool)
    node.mempool._verify = pipeline.verify_hook
    chain = node.chain
    register_workload_senders(node, senders=20, seed=6)
    workload = anchor_transactions(40, chain_id=CHAIN_ID.encode(), senders=20, seed=6)
    txs = workload[:20]  # each sender's nonce 1
    proposal = proposal_with(node, txs)
    verdict = chain.validate_block(proposal)
    assert verdict.valid, verdict.reason
    chain.apply_block(proposal, commit_for(node, proposal), verdict)
    results = chain.store.tx_results(proposal.height)
    assert results is not None and [result.code for result in results] == [0] * 20
    later = workload[20]  # a sender's nonce 2, never seen: must still be verified
    bad = later[:-1] + bytes([later[-1] ^ 1])

    async def gossip() -> list[str]:
        pipeline.start()
        try:
            admissions = await pipeline.admit([*txs, bad])
        finally:
            await pipeline.stop()
        return [admission.code for admission in admissions]

    counting.verified.clear()  # the senders' registrations went through the hook
    codes = asyncio.run(gossip())
    assert counting.verified == [bad]
    assert pipeline.preverified_txs == 1
    assert codes[:20] == ["duplicate"] * 20  # committed: refused without verification
    assert codes[20] == "bad_signature"
