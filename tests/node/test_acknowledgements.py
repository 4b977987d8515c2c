"""Issue 18 item 3, on real processes: what a 200 from `POST /txs` means across a node restart,
and `POST /txs?wait=commit` (docs/spec/rpc.md §Acknowledgements).

The nonce test is the soak's finding made deterministic: a client's transactions are pending on
the other validators (commits halted), its node is killed -9 right after accepting two more and
restarted, and the client goes on. Every transaction the client was given a 200 for must commit
once the quorum is back: none may be stranded behind another transaction of the same sender
with the same nonce, which is what re-reading a restarted node's too-low `next_nonce` made.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path
from typing import Any

from emrchain.client import transactions
from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import CommitTimeoutError, EmrClientError
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital
from emrchain.schema import Role
from emrchain.types.transaction import Transaction

START_TIMEOUT_S = 60.0
COMMIT_TIMEOUT_S = 120.0
ATTEMPTS = 20
"""Submissions a client makes of one transaction's content before the test gives up."""


class Sender:
    """An application on `EmrClient`: signs each registration with the library's next nonce
    and, when it is refused or the node is unreachable, signs it again with the next one."""

    def __init__(self, client: EmrClient, hospital: Hospital) -> None:
        self.client = client
        self.hospital = hospital
        self.acknowledged: list[Transaction] = []

    async def send_one(self) -> None:
        for _ in range(ATTEMPTS):
            try:
                tx = transactions.register_identity(
                    self.hospital.admin,
                    await self.client.chain_id(),
                    await self.client.next_nonce(),
                    organization_id=self.hospital.organization_id,
                    member=MemberIdentity.generate(),
                    role=Role.CLINICIAN,
                )
                verdict = await self.client.submit(tx)
            except EmrClientError:  # the node is restarting
                await asyncio.sleep(0.2)
                continue
            if verdict.accepted:
                self.acknowledged.append(tx)
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no acknowledgement in {ATTEMPTS} attempts")


async def in_thread(function: Any, *arguments: Any) -> Any:
    return await asyncio.to_thread(function, *arguments)


async def restart_scenario(network: Devnet) -> list[Transaction]:
    hospital = Hospital.from_home(network.rpc_urls[0], network.homes[0])
    async with EmrClient(network.rpc_urls[0], hospital.admin) as client:
        sender = Sender(client, hospital)
        # No quorum: what is accepted stays pending (node 1 keeps what node 0 gossips).
        await in_thread(network.stop, 2)
        await in_thread(network.stop, 3)
        for _ in range(5):
            await sender.send_one()
        await in_thread(
            network.wait_for,
            lambda: network.rpc(1, "/status")["mempool_txs"] >= 5,
            START_TIMEOUT_S,
            "node 1 to hold the five gossiped transactions",
        )
        # The worst moment: two more accepted, and node 0 killed before its next gossip tick.
        await sender.send_one()
        await sender.send_one()
        network.kill(0)
        network.start(0)
        await in_thread(
            network.wait_for, lambda: network.try_status(0) is not None, START_TIMEOUT_S, "RPC"
        )
        # The restarted node relearns the sender's pending transactions from its peers (node 1
        # sends a reconnecting peer its whole pool): its next nonce is past the first five.
        fifth = sender.acknowledged[4].nonce
        deadline = time.monotonic() + START_TIMEOUT_S
        while (await client.account())["next_nonce"] <= fifth:
            assert time.monotonic() < deadline, "node 0 never relearned the pending nonces"
            await asyncio.sleep(0.05)
        for _ in range(5):  # the client goes on, as soon as the node answers again
            await sender.send_one()
        await in_thread(network.start, 2)
        await in_thread(network.start, 3)
        return sender.acknowledged


def committed(network: Devnet, index: int, tx_id: str) -> bool:
    return network.rpc(index, f"/txs/{tx_id}").get("status") == "committed"


def test_no_acknowledged_transaction_is_stranded_by_a_stale_nonce_across_a_restart(
    tmp_path: Path,
) -> None:
    network = Devnet(tmp_path / "net", 4)
    try:
        network.start_all()
        network.wait_for_height(1, [0, 1, 2, 3], timeout_s=START_TIMEOUT_S)
        acknowledged = asyncio.run(restart_scenario(network))
        nonces = [tx.nonce for tx in acknowledged]
        # Never two acknowledged transactions for one nonce: the client did not sign over one.
        assert len(set(nonces)) == len(nonces), f"nonces acknowledged twice: {sorted(nonces)}"
        stranded = [tx.tx_id.hex() for tx in acknowledged]

        def all_committed() -> bool:
            nonlocal stranded
            stranded = [tx_id for tx_id in stranded if not committed(network, 1, tx_id)]
            return not stranded

        try:
            network.wait_for(all_committed, COMMIT_TIMEOUT_S, "every acknowledged tx to commit")
        except Exception:
            raise AssertionError(
                f"{len(stranded)} of {len(acknowledged)} acknowledged transactions never "
                f"committed (nonces {sorted(nonces)})"
            ) from None
    finally:
        network.stop_all()


def submit_waiting(network: Devnet, index: int, tx: Transaction) -> dict[str, Any]:
    reply: dict[str, Any] = network.rpc(
        index, "/txs?wait=commit", {"txs": [tx.encode().hex()]}, timeout_s=30
    )
    return reply


def test_wait_for_commit_answers_with_the_height_or_a_timeout_that_may_still_commit(
    tmp_path: Path,
) -> None:
    network = Devnet(tmp_path / "net", 2, settings={"rpc": {"commit_wait_timeout_ms": 1_000}})
    try:
        network.start(0)  # alone: one of two validators, nothing commits
        network.wait_for(lambda: network.try_status(0) is not None, START_TIMEOUT_S, "node 0 RPC")
        hospital = Hospital.from_home(network.rpc_urls[0], network.homes[0])
        chain_id = network.rpc(0, "/status")["chain_id"].encode()

        def registration(nonce: int) -> Transaction:
            return transactions.register_identity(
                hospital.admin,
                chain_id,
                nonce,
                organization_id=hospital.organization_id,
                member=MemberIdentity.generate(),
                role=Role.CLINICIAN,
            )

        bad = network.rpc(0, "/txs?wait=soon", {"txs": [registration(1).encode().hex()]})
        assert bad["http_status"] == 400 and bad["error"]["code"] == "bad_wait", bad

        # No quorum: the wait ends with the specific timeout, which says it may still commit.
        first = registration(1)  # the admin's first transaction
        started = time.monotonic()
        timed_out = submit_waiting(network, 0, first)
        waited_s = time.monotonic() - started
        assert timed_out["http_status"] == 504, timed_out
        assert timed_out["error"]["code"] == "commit_timeout"
        assert "may still commit" in timed_out["error"]["message"]
        assert 1.0 <= waited_s < 5.0, waited_s
        # ... and it does, once the quorum is there.
        network.start(1)
        network.wait_for(
            lambda: committed(network, 0, first.tx_id.hex()), COMMIT_TIMEOUT_S, "first tx"
        )

        second = registration(2)
        reply = submit_waiting(network, 0, second)
        (result,) = reply["results"]
        assert result["accepted"] and result["outcome"] == "committed", reply
        assert result["result_code"] == 0
        status = network.rpc(0, f"/txs/{second.tx_id.hex()}")
        assert (result["height"], result["index"]) == (status["height"], status["index"])
        # A refused transaction is answered at once, its outcome "refused".
        (refused,) = submit_waiting(network, 0, registration(2))["results"]
        assert not refused["accepted"] and refused["outcome"] == "refused"
        assert refused["code"] == "nonce_too_low" and refused["height"] is None

        # The client library: submit_and_commit, and its timeout error.
        async def through_the_client() -> tuple[int, str]:
            async with EmrClient(network.rpc_urls[0], hospital.admin) as client:
                done = await client.submit_and_commit(registration(await client.next_nonce()))
                network.stop(1)
                try:
                    await client.submit_and_commit(registration(await client.next_nonce()))
                except CommitTimeoutError as error:
                    return done.height, str(error)
                raise AssertionError("committed without a quorum")

        height, timeout_message = asyncio.run(through_the_client())
        assert height > result["height"]
        assert "may still commit" in timeout_message

        # A request waiting for a commit does not hold up SIGTERM: it is answered 503.
        waiting: dict[str, Any] = {}
        waiter = threading.Thread(
            target=lambda: waiting.update(submit_waiting(network, 0, registration(5)))
        )
        waiter.start()
        network.wait_for(
            lambda: network.rpc(0, "/status")["mempool_txs"] >= 2, START_TIMEOUT_S, "admission"
        )
        process = network.processes[0]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        exit_s = time.monotonic() - started
        waiter.join(30)
        assert exit_s < 1.0, exit_s
        assert waiting.get("http_status") == 503, waiting
        assert waiting["error"]["code"] == "shutting_down"
    finally:
        network.stop_all()
