"""Damaged traffic on one established link closes that link only; the node then reconnects.

Mesh A, B, C where A reaches B through a `FaultProxy` (only A dials B, so the proxied link is
the only A–B link). The proxy damages the next frame from B to A; A must close the A–B link
with the matching reason, keep A–C and B–C working, and redial B through the proxy.
"""

from __future__ import annotations

import pytest

from emrchain.crypto.keys import Ed25519Signer
from emrchain.p2p import CloseReason
from tests.p2p.helpers import (
    Node,
    address_at,
    close_all,
    exchange,
    fast_config,
    fully_connected,
    run,
    start_node,
    wait_until,
)
from tests.p2p.proxy import Fault, FaultProxy

MAX_FRAME_BYTES = fast_config().max_frame_bytes


async def mesh_with_proxy(
    **config: object,
) -> tuple[Node, Node, Node, FaultProxy]:
    signers = [Ed25519Signer.generate() for _ in range(3)]
    allowed = [signer.public_key for signer in signers]
    nodes: list[Node] = []
    proxy = None
    try:
        c = await start_node(signers[2], allowed, **config)
        nodes.append(c)
        b = await start_node(signers[1], allowed, persistent_peers=(c.manager.address,), **config)
        nodes.append(b)
        proxy = FaultProxy(b.manager.listen_port, MAX_FRAME_BYTES)
        await proxy.start()
        a = await start_node(
            signers[0],
            allowed,
            persistent_peers=(address_at(b.node_id, proxy.port), c.manager.address),
            **config,
        )
        nodes.append(a)
        await fully_connected([a, b, c])
        return a, b, c, proxy
    except BaseException:
        await close_all(proxy, *nodes)
        raise


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.GARBAGE, CloseReason.DECRYPTION_FAILED),
        (Fault.OVERSIZED, CloseReason.FRAME_TOO_LARGE),
        (Fault.TRUNCATED, CloseReason.TRUNCATED_FRAME),
        (Fault.FLIPPED_BIT, CloseReason.DECRYPTION_FAILED),
    ],
)
def test_damaged_frame_closes_that_link_only_and_the_peer_is_reconnected(
    fault: Fault, reason: CloseReason
) -> None:
    async def scenario() -> None:
        a, b, c, proxy = await mesh_with_proxy()
        try:
            await exchange(b, a, 1, b"before")
            proxy.arm(fault)
            # This frame is the one damaged on its way to A.
            assert b.manager.send(a.node_id, 1, b"x" * 1_000)
            await wait_until(lambda: a.manager.stats().disconnects[reason] == 1, what=reason)
            assert proxy.applied == [fault]
            assert a.manager.stats().disconnects == {reason: 1}
            # The other links never noticed.
            await exchange(a, c, 2, b"a->c")
            await exchange(c, a, 2, b"c->a")
            await exchange(b, c, 2, b"b->c")
            assert c.manager.stats().disconnects == {}
            # A redials B through the proxy and the link works again.
            await wait_until(lambda: proxy.connections == 2, what="a second connection")
            await fully_connected([a, b, c])
            await exchange(b, a, 3, b"after")
            await exchange(a, b, 3, b"after")
            assert a.events.connected.count(b.node_id) == 2
        finally:
            await close_all(proxy, a, b, c)

    run(scenario())


def test_half_open_link_is_dropped_by_the_idle_timeout_then_reconnected() -> None:
    async def scenario() -> None:
        a, b, c, proxy = await mesh_with_proxy(ping_interval_ms=40, idle_timeout_ms=150)
        try:
            proxy.arm(Fault.BLACKHOLE)
            await wait_until(
                lambda: a.manager.stats().disconnects[CloseReason.IDLE_TIMEOUT] == 1,
                what="idle timeout",
            )
            proxy.heal()
            await exchange(a, c, 1, b"a->c")
            # Both ends: the responder registers one step after the dialer ("ready").
            await fully_connected([a, b, c])
            await exchange(b, a, 1, b"back")
        finally:
            await close_all(proxy, a, b, c)

    run(scenario())
