"""The allowed set following committed state (`docs/spec/p2p.md` §4.1), over real TCP: a peer
becomes dialable when it is allowed, is dialled at its advertised address, and is dropped and
refused once it is no longer allowed."""

from __future__ import annotations

from emrchain.crypto.keys import Ed25519Signer
from emrchain.p2p import CloseReason, HandshakeFailure
from tests.p2p.helpers import close_all, run, start_node, wait_until


def test_a_persistent_peer_not_yet_allowed_is_dialled_once_it_is() -> None:
    async def scenario() -> None:
        a_key, b_key = Ed25519Signer.generate(), Ed25519Signer.generate()
        a = b = None
        try:
            b = await start_node(b_key, [b_key.public_key, a_key.public_key])
            # A starts before the chain lets B in: it keeps B in its config but does not dial.
            a = await start_node(a_key, [a_key.public_key], persistent_peers=(b.manager.address,))
            assert not a.manager.is_connected(b.node_id)
            a.manager.set_allowed_peer_keys([a_key.public_key, b_key.public_key])
            await wait_until(lambda: a.manager.is_connected(b.node_id), timeout_s=5.0)
        finally:
            await close_all(a, b)

    run(scenario())


def test_allowed_peers_are_dialled_at_their_advertised_address_and_dropped_when_removed() -> None:
    async def scenario() -> None:
        a_key, b_key, c_key = (Ed25519Signer.generate() for _ in range(3))
        everyone = [a_key.public_key, b_key.public_key, c_key.public_key]
        a = b = c = None
        try:
            b = await start_node(b_key, everyone)
            c = await start_node(c_key, everyone)
            a = await start_node(a_key, [a_key.public_key, b_key.public_key])
            advertised = {
                b_key.public_key: f"127.0.0.1:{b.manager.listen_port}",
                c_key.public_key: f"127.0.0.1:{c.manager.listen_port}",
            }
            a.manager.set_advertised_addresses(advertised)
            # C advertises an address but is not allowed: not dialled.
            assert a.manager.dialled_advertised_peers() == [b.node_id]
            await wait_until(lambda: a.manager.is_connected(b.node_id), timeout_s=5.0)
            a.manager.set_allowed_peer_keys(everyone)
            a.manager.set_advertised_addresses(advertised)
            await wait_until(lambda: a.manager.is_connected(c.node_id), timeout_s=5.0)
            # B is removed: disconnected, no longer dialled, and refused if it dials.
            a.manager.set_allowed_peer_keys([a_key.public_key, c_key.public_key])
            a.manager.set_advertised_addresses(advertised)
            assert not a.manager.is_connected(b.node_id)
            assert (b.node_id, CloseReason.PEER_NO_LONGER_ALLOWED) in a.events.disconnected
            assert a.manager.dialled_advertised_peers() == [c.node_id]
            b.manager.set_advertised_addresses({a_key.public_key: a.manager.address[65:]})
            await wait_until(
                lambda: a.manager.stats().handshake_failures[HandshakeFailure.UNKNOWN_PEER] >= 1,
                timeout_s=5.0,
            )
            assert not a.manager.is_connected(b.node_id)
        finally:
            await close_all(a, b, c)

    run(scenario())


def test_advertised_dials_are_bounded() -> None:
    async def scenario() -> None:
        key = Ed25519Signer.generate()
        others = [Ed25519Signer.generate().public_key for _ in range(5)]
        node = await start_node(key, [key.public_key, *others], max_dialled_registry_peers=2)
        try:
            node.manager.set_advertised_addresses({k: "127.0.0.1:9" for k in others})
            assert node.manager.dialled_advertised_peers() == sorted(k.hex() for k in others)[:2]
        finally:
            await close_all(node)

    run(scenario())
