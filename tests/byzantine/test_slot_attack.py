"""Issue 17, "no keys needed": silent TCP connections that never send a hello must not keep a
restarted honest validator out. Real processes: four validators; an attacker on three other
loopback addresses (127.0.0.2-4) holds as many silent sockets to validator 0's P2P port as it is
allowed, reopening each one the node closes; validator 1 is killed (kill -9) and restarted, and
must be connected to validator 0 again and committing within RECONNECT_BOUND_S of its start.

Validator 0 is configured not to redial within the test (its reconnect delays are a minute), so
the way back is validator 1's inbound connection, the one the attack aims at. The broken variant
gives one address nearly every slot and a minute-long hello timeout (the defences of item 4
turned off): there the restarted validator stays out, which shows the test can fail."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from emrchain.config.node import load_node_config
from emrchain.devnet.harness import Devnet

ATTACKER_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
SOCKETS_PER_HOST = 20
RECONNECT_BOUND_S = 15.0
"""Process start (~2 s: imports, LevelDB, WAL replay) plus its first dial and the hello timeout
(1 s), with room for a loaded CI machine (measured: 2.3 s)."""
NO_REDIAL = {"reconnect_initial_ms": 60_000, "reconnect_max_ms": 60_000}
UNDEFENDED = {"max_pending_handshakes_per_address": 15, "hello_timeout_ms": 60_000}


class SlotAttack:
    """Silent sockets from ATTACKER_HOSTS to `port`, held in a thread of their own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections_made = 0
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        await asyncio.gather(
            *(self._hold(host) for host in ATTACKER_HOSTS for _ in range(SOCKETS_PER_HOST))
        )

    async def _hold(self, host: str) -> None:
        """One silent socket from `host`, reopened (after a breath) each time the node closes
        it; 127.0.0.2... are loopback addresses too, each another remote address to the node."""
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(host, 0)
                )
            except OSError:
                await asyncio.sleep(0.01)
                continue
            self.connections_made += 1
            read = asyncio.ensure_future(reader.read())
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait((read, stop), return_when=asyncio.FIRST_COMPLETED)
            read.cancel()
            stop.cancel()
            writer.transport.abort()
            await asyncio.sleep(0.01)

    def __enter__(self) -> SlotAttack:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


@pytest.mark.parametrize("defended", [True, False], ids=["defended", "broken-variant"])
def test_a_restarted_validator_gets_back_in_while_silent_sockets_hold_the_slots(
    tmp_path: Path, defended: bool
) -> None:
    with Devnet(tmp_path / "net", 4, consensus={"create_empty_blocks": True}) as network:
        network.configure(0, {"p2p": NO_REDIAL if defended else {**NO_REDIAL, **UNDEFENDED}})
        network.start_all()
        network.wait_for_height(3, [0, 1, 2, 3], timeout_s=60.0)
        port = load_node_config(network.homes[0]).p2p.listen_address.port
        with SlotAttack(port) as attack:
            network.wait_for(lambda: attack.connections_made >= 40, 30.0, "the attack's sockets")
            network.kill(1)
            network.wait_for(lambda: len(network.rpc(0, "/status")["peers"]) == 2, 30.0, "drop")
            started = time.monotonic()
            network.start(1)
            if not defended:
                with pytest.raises(Exception, match="back"):
                    network.wait_for(
                        lambda: len(network.rpc(0, "/status")["peers"]) == 3,
                        RECONNECT_BOUND_S,
                        "back",
                    )
                return
            network.wait_for(
                lambda: len(network.rpc(0, "/status")["peers"]) == 3, RECONNECT_BOUND_S, "back"
            )
            height = network.height(0)
            network.wait_for_height(height + 2, [0, 1], timeout_s=RECONNECT_BOUND_S)
            elapsed_s = time.monotonic() - started
            print(f"restarted validator connected and committing after {elapsed_s:.1f} s")
            assert elapsed_s < RECONNECT_BOUND_S
            assert attack.connections_made > 60, "the node kept closing the silent sockets"
