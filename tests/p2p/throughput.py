"""Throughput of one P2P connection over 127.0.0.1 (not a test; run it by hand).

    .venv/bin/python -m tests.p2p.throughput --messages 20000 --payload-bytes 8192

Two PeerManagers in one process (so both ends share one core's event loop: a conservative
figure). The sender refills its send queue whenever `send` refuses, so nothing is lost; the
clock runs from the first send to the last message received.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from emrchain.crypto.keys import Ed25519Signer
from emrchain.p2p import P2PConfig, PeerManager
from tests.p2p.helpers import CHAIN_ID, HOST, wait_until


async def measure(messages: int, payload_bytes: int) -> tuple[float, float]:
    signers = [Ed25519Signer.generate() for _ in range(2)]
    allowed = [signer.public_key for signer in signers]
    config = P2PConfig(listen_host=HOST, listen_port=0, max_frame_bytes=64 * 1024)
    receiver = PeerManager(config, signers[0], CHAIN_ID, allowed)
    sender = None
    try:
        await receiver.start()
        sender = PeerManager(
            P2PConfig(listen_host=HOST, listen_port=0, persistent_peers=(receiver.address,)),
            signers[1],
            CHAIN_ID,
            allowed,
        )
        await sender.start()
        await wait_until(lambda: receiver.is_connected(sender.node_id), what="connection")
        payload = b"\xa5" * payload_bytes

        async def consume() -> None:
            for _ in range(messages):
                await receiver.receive()

        started = time.perf_counter()
        consumer = asyncio.create_task(consume())
        for _ in range(messages):
            while not sender.send(receiver.node_id, 1, payload):
                await asyncio.sleep(0)  # queue full: let the writer drain it
        await consumer
        elapsed = time.perf_counter() - started
    finally:
        for manager in (sender, receiver):
            if manager is not None:
                await manager.close()
    return messages / elapsed, messages * payload_bytes / elapsed / (1024 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--payload-bytes", type=int, default=8_192)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    for run_number in range(1, arguments.runs + 1):
        rate, mebibytes = asyncio.run(measure(arguments.messages, arguments.payload_bytes))
        print(
            f"run {run_number}: {arguments.messages} x {arguments.payload_bytes} B: "
            f"{rate:,.0f} messages/s, {mebibytes:,.1f} MiB/s of payload"
        )


if __name__ == "__main__":
    main()
