"""PeerManager over real TCP on 127.0.0.1: mesh, refusals, queues, timeouts, restart, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from emrchain.crypto.keys import Ed25519Signer
from emrchain.p2p import CloseReason, HandshakeFailure, MessageTooLargeError, PeerManager
from tests.p2p.helpers import (
    CHAIN_ID,
    OpenSockets,
    address_at,
    close_all,
    exchange,
    fast_config,
    fully_connected,
    linked_pair,
    nothing_received,
    receive_within,
    run,
    start_node,
    wait_until,
)


def keys(count: int) -> list[Ed25519Signer]:
    return [Ed25519Signer.generate() for _ in range(count)]


def public_keys(signers: list[Ed25519Signer]) -> list[bytes]:
    return [signer.public_key for signer in signers]


def test_three_nodes_form_a_mesh_and_exchange_on_several_channels() -> None:
    async def scenario() -> None:
        signers = keys(3)
        allowed = public_keys(signers)
        a = b = c = None
        try:
            c = await start_node(signers[2], allowed)
            b = await start_node(signers[1], allowed, persistent_peers=(c.manager.address,))
            a = await start_node(
                signers[0], allowed, persistent_peers=(b.manager.address, c.manager.address)
            )
            nodes = [a, b, c]
            await fully_connected(nodes)
            for sender in nodes:
                for receiver in nodes:
                    if sender is receiver:
                        continue
                    for channel in (1, 2, 200):
                        payload = f"{sender.node_id[:8]}->{receiver.node_id[:8]}#{channel}"
                        await exchange(sender, receiver, channel, payload.encode())
            # Large payloads and ordering within one connection.
            big = [bytes([i]) * 60_000 for i in range(5)]
            for payload in big:
                assert a.manager.send(b.node_id, 3, payload)
            assert [(await receive_within(b.manager)).payload for _ in big] == big
            # Broadcast reaches every other node exactly once.
            assert a.manager.broadcast(4, b"to all") == 2
            for receiver in (b, c):
                assert await receive_within(receiver.manager) == (a.node_id, 4, b"to all")
            assert await nothing_received(b.manager)
            for node in nodes:
                others = {n.node_id for n in nodes if n is not node}
                assert set(node.events.connected) == others
                stats = node.manager.stats()
                assert stats.handshake_failures == {}
                assert stats.frames_out > 0 and stats.bytes_in > 0
        finally:
            await close_all(a, b, c)
        assert a is not None and c is not None
        # Closing notifies the disconnects.
        assert {peer for peer, _ in a.events.disconnected} == {b.node_id, c.node_id}

    run(scenario())


def test_frames_larger_than_the_read_buffer_still_arrive() -> None:
    async def scenario() -> None:
        async with linked_pair(max_read_buffer_bytes=1_024) as (a, b):
            limit = a.manager.config.max_payload_bytes
            for size in (1_023, 1_025, 2_049, limit):
                await exchange(a, b, 5, bytes(range(256)) * (size // 256) + b"\x07" * (size % 256))

    run(scenario())


def test_channel_and_size_are_checked_on_send() -> None:
    async def scenario() -> None:
        signers = keys(2)
        manager = PeerManager(fast_config(), signers[0], CHAIN_ID, public_keys(signers))
        peer = signers[1].public_key.hex()
        limit = manager.config.max_payload_bytes
        with pytest.raises(ValueError, match="channel"):
            manager.send(peer, 0, b"")
        with pytest.raises(ValueError, match="channel"):
            manager.send(peer, 256, b"")
        with pytest.raises(TypeError):
            manager.send(peer, 1, 5)  # type: ignore[arg-type]
        with pytest.raises(MessageTooLargeError):
            manager.broadcast(1, b"\x00" * (limit + 1))
        # Within limits but not connected: refused without raising, and counted.
        assert not manager.send(peer, 1, b"\x00" * limit)
        assert manager.stats().send_not_connected == 1

    run(scenario())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chain_id": b""}, "chain_id"),
        ({"allowed": [b"short"]}, "32 bytes"),
        ({"persistent_peers": ("nonsense",)}, "address"),
    ],
)
def test_bad_manager_arguments(kwargs: dict[str, object], message: str) -> None:
    signer = Ed25519Signer.generate()
    allowed = kwargs.pop("allowed", [signer.public_key])
    chain_id = kwargs.pop("chain_id", CHAIN_ID)
    with pytest.raises(ValueError, match=message):
        PeerManager(fast_config(**kwargs), signer, chain_id, allowed)  # type: ignore[arg-type]


def test_unknown_dialer_is_refused() -> None:
    async def scenario() -> None:
        known, stranger = keys(2)
        a = x = None
        try:
            a = await start_node(known, [known.public_key])
            # The stranger believes A is allowed; A does not know the stranger.
            x = await start_node(
                stranger,
                [known.public_key, stranger.public_key],
                persistent_peers=(a.manager.address,),
            )
            await wait_until(
                lambda: a.manager.stats().handshake_failures[HandshakeFailure.UNKNOWN_PEER] >= 2,
                what="two refused attempts (the stranger keeps retrying with backoff)",
            )
            failures = x.manager.stats().handshake_failures
            assert failures[HandshakeFailure.CONNECTION_CLOSED] >= 1
            assert a.manager.connected_peers() == [] and x.manager.connected_peers() == []
            assert a.events.connected == [] and x.events.connected == []
            standing = a.manager.standing()
            assert (
                standing.unknown_peer_refusals
                == a.manager.stats().handshake_failures[HandshakeFailure.UNKNOWN_PEER]
            )
            assert standing.unknown_peer_refusals >= 2 and standing.strikes == {}
        finally:
            await close_all(a, x)

    run(scenario())


@pytest.mark.parametrize("responder_is_allowed", [True, False])
def test_responder_with_an_unexpected_key_is_refused(responder_is_allowed: bool) -> None:
    async def scenario() -> None:
        dialer, expected, impostor = keys(3)
        allowed = [dialer.public_key, expected.public_key]
        if responder_is_allowed:
            allowed.append(impostor.public_key)
        a = i = None
        try:
            # The impostor accepts A, but A dials expected's id and finds the impostor's key.
            i = await start_node(impostor, [dialer.public_key])
            a = await start_node(
                dialer,
                allowed,
                persistent_peers=(address_at(expected.public_key.hex(), i.manager.listen_port),),
            )
            reason = (
                HandshakeFailure.UNEXPECTED_PEER_KEY
                if responder_is_allowed
                else HandshakeFailure.UNKNOWN_PEER
            )
            await wait_until(lambda: a.manager.stats().handshake_failures[reason] >= 1)
            # A never sent "ready", so the impostor never counted A as connected either.
            await wait_until(
                lambda: (
                    i.manager.stats().handshake_failures[HandshakeFailure.CONNECTION_CLOSED] >= 1
                )
            )
            assert a.events.connected == [] and i.events.connected == []
        finally:
            await close_all(a, i)

    run(scenario())


def test_wrong_chain_id_is_refused_by_both_sides() -> None:
    async def scenario() -> None:
        signers = keys(2)
        allowed = public_keys(signers)
        a = b = None
        try:
            a = await start_node(signers[0], allowed)
            b = await start_node(
                signers[1], allowed, chain_id=b"other-chain", persistent_peers=(a.manager.address,)
            )
            for node in (a, b):
                await wait_until(
                    lambda node=node: (
                        node.manager.stats().handshake_failures[HandshakeFailure.CHAIN_ID_MISMATCH]
                        >= 1
                    )
                )
            assert a.manager.connected_peers() == [] and b.manager.connected_peers() == []
        finally:
            await close_all(a, b)

    run(scenario())


def test_pre_handshake_garbage_and_silence_close_only_that_connection() -> None:
    async def scenario() -> None:
        signers = keys(2)
        allowed = public_keys(signers)
        a = b = None
        sockets = OpenSockets()
        try:
            a = await start_node(signers[0], allowed, handshake_timeout_ms=200)
            b = await start_node(signers[1], allowed, persistent_peers=(a.manager.address,))
            await fully_connected([a, b])
            port = a.manager.listen_port
            garbage_reader, garbage_writer = await sockets.connect(port)
            garbage_writer.write(b"GET / HTTP/1.1\r\nHost: node\r\n\r\n" + b"x" * 100)
            # Taken before the connect: A's 200 ms handshake clock starts at its accept, later.
            started = asyncio.get_running_loop().time()
            silent_reader, _ = await sockets.connect(port)
            # A sends its hello, then hangs up: at once on garbage, after the timeout on silence.
            async with asyncio.timeout(10):
                await garbage_reader.read()
                await silent_reader.read()
            elapsed = asyncio.get_running_loop().time() - started
            assert 0.19 < elapsed < 5.0  # the timeout, not forever (margin for a loaded machine)
            failures = a.manager.stats().handshake_failures
            assert failures[HandshakeFailure.BAD_HELLO] == 1
            assert failures[HandshakeFailure.TIMEOUT] == 1
            # The legitimate connection was never disturbed.
            await exchange(b, a, 1, b"still here")
            await exchange(a, b, 1, b"me too")
            assert a.manager.stats().disconnects == {}
        finally:
            await sockets.close()
            await close_all(a, b)

    run(scenario())


def test_pending_handshakes_are_bounded() -> None:
    async def scenario() -> None:
        signer = Ed25519Signer.generate()
        a = None
        sockets = OpenSockets()
        try:
            a = await start_node(
                signer,
                [signer.public_key],
                max_pending_handshakes=2,
                max_pending_handshakes_per_address=1,
            )
            port = a.manager.listen_port
            sources = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
            readers = [(await sockets.connect(port, source))[0] for source in sources]
            # The third connection is closed on accept, while the first two wait for a hello.
            async with asyncio.timeout(2):
                assert await readers[2].read() == b""
            failures = a.manager.stats().handshake_failures
            assert failures == {HandshakeFailure.TOO_MANY_PENDING: 1}
        finally:
            await sockets.close()
            await close_all(a)

    run(scenario())


def test_send_queue_is_bounded_and_drops_the_newest() -> None:
    async def scenario() -> None:
        async with linked_pair(a_options={"send_queue_max_messages": 8}) as (a, b):
            # No await in between: the writer task cannot run, so the queue fills up.
            accepted = [a.manager.send(b.node_id, 1, bytes([i])) for i in range(20)]
            assert accepted == [True] * 8 + [False] * 12
            stats = a.manager.stats()
            assert stats.send_queue_drops == 12
            assert stats.peers[b.node_id].send_queue_drops == 12
            received = [(await receive_within(b.manager)).payload for _ in range(8)]
            assert received == [bytes([i]) for i in range(8)]
            assert await nothing_received(b.manager)
            # Once drained, the queue accepts again.
            await exchange(a, b, 1, b"after the burst")

    run(scenario())


def test_reconnects_after_the_peer_restarts_on_the_same_port() -> None:
    async def scenario() -> None:
        signers = keys(2)
        allowed = public_keys(signers)
        a = b = restarted = None
        try:
            b = await start_node(signers[1], allowed)
            port = b.manager.listen_port
            a = await start_node(signers[0], allowed, persistent_peers=(b.manager.address,))
            await fully_connected([a, b])
            await b.manager.close()
            await wait_until(lambda: not a.manager.is_connected(b.node_id))
            assert a.events.disconnected == [(b.node_id, CloseReason.CLOSED_BY_PEER)]
            # Nobody listens on B's port now: A's redials fail and back off.
            await wait_until(lambda: a.manager.stats().dial_failures >= 1)
            restarted = await start_node(signers[1], allowed, listen_port=port)
            await fully_connected([a, restarted])
            await exchange(a, restarted, 2, b"welcome back")
            await exchange(restarted, a, 2, b"thanks")
            assert a.events.connected == [b.node_id, b.node_id]
        finally:
            await close_all(a, b, restarted)

    run(scenario())


def test_simultaneous_dials_converge_to_one_connection() -> None:
    async def scenario() -> None:
        signers = keys(2)
        allowed = public_keys(signers)
        # Bind both ports first, then let both dial each other at the same moment.
        a = await start_node(signers[0], allowed)
        b = await start_node(signers[1], allowed)
        ports = (a.manager.listen_port, b.manager.listen_port)
        await close_all(a, b)
        a = b = None
        try:
            a_task = start_node(
                signers[0],
                allowed,
                listen_port=ports[0],
                persistent_peers=(address_at(signers[1].public_key.hex(), ports[1]),),
            )
            b_task = start_node(
                signers[1],
                allowed,
                listen_port=ports[1],
                persistent_peers=(address_at(signers[0].public_key.hex(), ports[0]),),
            )
            a, b = await asyncio.gather(a_task, b_task)
            await fully_connected([a, b])

            def one_link_each() -> bool:
                # Both dials may have completed: the duplicate's sockets are closed again.
                return a.manager.open_sockets == 1 and b.manager.open_sockets == 1

            await wait_until(one_link_each, what="the duplicate connection resolved")
            assert a.manager.is_connected(b.node_id) and b.manager.is_connected(a.node_id)
            settled = (a.manager.stats().connections_established, len(a.events.connected))
            # Two round trips over the surviving link: no reconnection happens meanwhile.
            for _ in range(2):
                await exchange(a, b, 1, b"one link")
                await exchange(b, a, 1, b"one link back")
            assert one_link_each()
            assert (a.manager.stats().connections_established, len(a.events.connected)) == settled
            for node in (a, b):
                disconnects = node.manager.stats().disconnects
                assert set(disconnects) <= {
                    CloseReason.DUPLICATE_CONNECTION,
                    CloseReason.REPLACED_BY_DUPLICATE,
                    CloseReason.CLOSED_BY_PEER,
                }
        finally:
            await close_all(a, b)

    run(scenario())


def test_removing_a_peer_from_the_allowed_set_disconnects_it() -> None:
    async def scenario() -> None:
        async with linked_pair() as (a, b):
            a.manager.set_allowed_peer_keys([a.key.public_key])
            assert not a.manager.is_connected(b.node_id)
            assert a.events.disconnected == [(b.node_id, CloseReason.PEER_NO_LONGER_ALLOWED)]
            # B redials and is now refused at the handshake.
            await wait_until(
                lambda: a.manager.stats().handshake_failures[HandshakeFailure.UNKNOWN_PEER] >= 1
            )

    run(scenario())


def test_keepalive_holds_an_idle_link_open() -> None:
    async def scenario() -> None:
        async with linked_pair(ping_interval_ms=50, idle_timeout_ms=200) as (a, b):
            # Twelve keepalives at 50 ms span three idle timeouts without application traffic.
            await wait_until(lambda: a.manager.stats().frames_in >= 12)
            assert a.manager.stats().disconnects == {} and b.manager.stats().disconnects == {}

    run(scenario())


def test_close_leaves_no_task_and_no_socket() -> None:
    async def scenario() -> None:
        signers = keys(3)
        allowed = public_keys(signers)
        c = await start_node(signers[2], allowed)
        b = await start_node(signers[1], allowed, persistent_peers=(c.manager.address,))
        # A also dials a port where nobody listens: its dial loop is mid-backoff at close().
        a = await start_node(
            signers[0],
            allowed,
            persistent_peers=(b.manager.address, address_at(signers[2].public_key.hex(), 1)),
        )
        sockets = OpenSockets()
        try:
            await wait_until(lambda: len(a.manager.connected_peers()) == 1)
            await sockets.connect(a.manager.listen_port)  # a handshake in progress at close()
            await wait_until(lambda: a.manager.pending_inbound_handshakes == 1)
        finally:
            await close_all(a, b, c)
            await sockets.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert a.manager.connected_peers() == []
        for node in (a, b, c):
            assert node.manager._transports == set()

    run(scenario())
