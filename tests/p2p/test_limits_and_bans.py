"""Pre-authentication slots per address, the hello timeout, misbehaviour reports and bans, over
real TCP: attackers connect from other loopback addresses (127.0.0.2, 127.0.0.3...)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from emrchain.crypto.keys import Ed25519Signer
from emrchain.p2p import CloseReason, HandshakeFailure, Misbehaviour
from emrchain.p2p.handshake import encode_hello
from tests.p2p.helpers import (
    CHAIN_ID,
    Node,
    OpenSockets,
    close_all,
    exchange,
    fully_connected,
    lone_node,
    run,
    start_node,
    wait_until,
)

ATTACKER_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
SLOTS: dict[str, Any] = {"max_pending_handshakes": 16, "max_pending_handshakes_per_address": 4}


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def hold_silent_sockets(
    sockets: OpenSockets, port: int, host: str, count: int, stop: asyncio.Event
) -> None:
    """Keep `count` connections from `host` open and silent; reopen each one the node closes."""

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, _ = await sockets.connect(port, host)
                await reader.read()  # returns when the node closes it
            except OSError:
                await asyncio.sleep(0.001)

    await asyncio.gather(*(one() for _ in range(count)))


def test_one_address_cannot_take_more_than_its_slots() -> None:
    async def scenario() -> None:
        async with lone_node(**SLOTS) as (node, sockets):
            port = node.manager.listen_port
            held = [(await sockets.connect(port, ATTACKER_HOSTS[0]))[0] for _ in range(4)]
            refused, _ = await sockets.connect(port, ATTACKER_HOSTS[0])
            async with asyncio.timeout(2):
                assert await refused.read() == b""  # closed at accept
            await sockets.connect(port, ATTACKER_HOSTS[1])  # another address still gets in
            await wait_until(lambda: node.manager.pending_inbound_handshakes == 5)
            failures = node.manager.stats().handshake_failures
            assert failures == {HandshakeFailure.TOO_MANY_PENDING_FROM_ADDRESS: 1}
            assert all(not reader.at_eof() for reader in held)

    run(scenario())


@pytest.mark.parametrize("send_hello", [False, True], ids=["silent", "hello-without-auth"])
def test_an_unauthenticated_connection_is_closed_at_the_hello_timeout(send_hello: bool) -> None:
    async def scenario() -> None:
        # The whole handshake may take 5 s; an unauthenticated dialer only 0.2 s.
        async with lone_node(handshake_timeout_ms=5_000, hello_timeout_ms=200) as (node, sockets):
            started = asyncio.get_running_loop().time()
            reader, writer = await sockets.connect(node.manager.listen_port, ATTACKER_HOSTS[0])
            if send_hello:  # a valid hello needs no key: only the authentication does
                writer.write(encode_hello(CHAIN_ID, os.urandom(32)))
            async with asyncio.timeout(4):
                await reader.read()
            elapsed = asyncio.get_running_loop().time() - started
            assert 0.19 < elapsed < 2.0, elapsed
            assert node.manager.stats().handshake_failures == {HandshakeFailure.TIMEOUT: 1}
            assert node.manager.pending_inbound_handshakes == 0

    run(scenario())


def test_a_restarted_validator_reconnects_within_the_hello_timeout_under_a_slot_attack() -> None:
    """Attackers on three addresses keep as many silent sockets open as they can (reopening
    each one the node closes); the honest validator, restarted, is connected within
    hello_timeout_ms plus a margin."""
    hello_timeout_ms = 500
    margin_s = 1.5

    async def scenario() -> None:
        signers = [Ed25519Signer.generate() for _ in range(2)]
        allowed = [signer.public_key for signer in signers]
        victim = honest = None
        sockets = OpenSockets()
        stop = asyncio.Event()
        attack = None
        try:
            victim = await start_node(
                signers[0], allowed, hello_timeout_ms=hello_timeout_ms, **SLOTS
            )
            port = victim.manager.listen_port
            attack = asyncio.gather(
                *(hold_silent_sockets(sockets, port, host, 20, stop) for host in ATTACKER_HOSTS)
            )
            # The attack holds every slot its addresses may take (3 x 4 of 16).
            await wait_until(lambda: victim.manager.pending_inbound_handshakes >= 12)
            loop = asyncio.get_running_loop()
            started = loop.time()
            honest = await start_node(
                signers[1], allowed, persistent_peers=(victim.manager.address,), **SLOTS
            )
            await fully_connected([victim, honest], timeout_s=hello_timeout_ms / 1000 + margin_s)
            elapsed_s = loop.time() - started
            print(f"honest reconnect under attack: {elapsed_s * 1000:.0f} ms")
            assert elapsed_s < hello_timeout_ms / 1000 + margin_s
            failures = victim.manager.stats().handshake_failures
            assert failures[HandshakeFailure.TOO_MANY_PENDING_FROM_ADDRESS] > 0  # attack ran
            assert victim.manager.pending_inbound_handshakes == 12
            await exchange(honest, victim, 1, b"back")
        finally:
            stop.set()
            await sockets.close()
            await close_all(honest, victim)
            if attack is not None:
                await asyncio.gather(attack, return_exceptions=True)

    run(scenario())


@contextlib.asynccontextmanager
async def judge_and_offender(
    judge_dials: bool, **judge_options: Any
) -> AsyncIterator[tuple[Node, Node, FakeClock]]:
    """Two connected nodes: the judge, on a clock the test moves, and the offender it will ban.
    The judge dials the offender when `judge_dials`, else the offender dials the judge."""
    signers = [Ed25519Signer.generate() for _ in range(2)]
    allowed = [signer.public_key for signer in signers]
    clock = FakeClock()
    judge = offender = None
    try:
        if judge_dials:
            offender = await start_node(signers[1], allowed)
            dialled: tuple[str, ...] = (offender.manager.address,)
            judge = await start_node(
                signers[0], allowed, clock=clock, persistent_peers=dialled, **judge_options
            )
        else:
            judge = await start_node(signers[0], allowed, clock=clock, **judge_options)
            dialled = (judge.manager.address,)
            offender = await start_node(signers[1], allowed, persistent_peers=dialled)
        await fully_connected([judge, offender])
        yield judge, offender, clock
    finally:
        await close_all(offender, judge)


def test_a_severe_report_disconnects_and_bans_until_the_clock_passes_the_ban() -> None:
    async def scenario() -> None:
        async with judge_and_offender(False, ban_duration_ms=60_000) as (judge, offender, clock):
            assert judge.manager.report_misbehaviour(
                offender.node_id, Misbehaviour.INVALID_SIGNATURE
            )
            await wait_until(lambda: not offender.manager.is_connected(judge.node_id))
            assert judge.events.disconnected == [(offender.node_id, CloseReason.BANNED)]
            # What it sent before the ban may still be reported: that does not ban it again.
            clock.now += 30.0
            assert not judge.manager.report_misbehaviour(
                offender.node_id, Misbehaviour.EQUIVOCATION
            )
            # The offender keeps redialling; the judge refuses it once its key is known.
            await wait_until(
                lambda: judge.manager.stats().handshake_failures[HandshakeFailure.BANNED] >= 3
            )
            assert not judge.manager.is_connected(offender.node_id)
            assert judge.manager.banned_peers() == {offender.node_id: 30.0}
            stats = judge.manager.stats()
            assert stats.bans == 1 and stats.peers[offender.node_id].bans == 1
            assert stats.peers[offender.node_id].misbehaviour == {
                Misbehaviour.INVALID_SIGNATURE: 1,
                Misbehaviour.EQUIVOCATION: 1,
            }
            clock.now += 30.0
            await fully_connected([judge, offender])
            assert judge.manager.banned_peers() == {}

    run(scenario())


def test_a_banned_peer_is_not_dialled_until_its_ban_expires() -> None:
    async def scenario() -> None:
        async with judge_and_offender(True, misbehaviour_ban_threshold=3) as (
            judge,
            offender,
            clock,
        ):
            for _ in range(2):
                assert not judge.manager.report_misbehaviour(offender.node_id, Misbehaviour.FLOOD)
            assert judge.manager.is_connected(offender.node_id)  # below the threshold
            assert judge.manager.report_misbehaviour(offender.node_id, Misbehaviour.FLOOD)
            await wait_until(lambda: not offender.manager.is_connected(judge.node_id))
            await wait_until(lambda: judge.manager.stats().banned_dials_skipped >= 5)
            # Only the first connection ever reached the offender.
            assert offender.manager.stats().connections_established == 1
            assert offender.manager.stats().handshake_failures == {}
            clock.now += judge.manager.config.ban_duration_ms / 1000
            await fully_connected([judge, offender])
            assert offender.manager.stats().connections_established == 2

    run(scenario())


def test_strikes_decay_on_the_manager_clock_and_show_in_its_standing() -> None:
    async def scenario() -> None:
        options = {"misbehaviour_ban_threshold": 3, "strike_decay_ms": 60_000}
        async with judge_and_offender(False, **options) as (judge, offender, clock):
            peer = offender.node_id
            for _ in range(2):
                assert not judge.manager.report_misbehaviour(peer, Misbehaviour.SYNC_TIMEOUT)
            assert judge.manager.standing().strikes == {peer: {"sync_timeout": 2}}
            clock.now += 60.0  # both strikes expire: two more do not ban
            assert judge.manager.standing().strikes == {peer: {}}
            for _ in range(2):
                assert not judge.manager.report_misbehaviour(peer, Misbehaviour.SYNC_TIMEOUT)
            assert judge.manager.is_connected(peer)
            clock.now += 59.0  # still within the decay of the last two: the third bans
            assert judge.manager.report_misbehaviour(peer, Misbehaviour.SYNC_TIMEOUT)
            await wait_until(lambda: not judge.manager.is_connected(peer))
            standing = judge.manager.standing()
            assert standing.strikes == {} and standing.bans_in_force == 1 and standing.bans == 1
            assert standing.unknown_peer_refusals == 0
            clock.now += judge.manager.config.ban_duration_ms / 1000
            assert judge.manager.standing().bans_in_force == 0

    run(scenario())


def test_reports_against_a_peer_that_is_not_allowed_are_ignored() -> None:
    async def scenario() -> None:
        signer = Ed25519Signer.generate()
        node = await start_node(signer, [signer.public_key])
        try:
            stranger = Ed25519Signer.generate().public_key.hex()
            assert not node.manager.report_misbehaviour(stranger, Misbehaviour.EQUIVOCATION)
            assert not node.manager.report_misbehaviour("zz", Misbehaviour.EQUIVOCATION)
            stats = node.manager.stats()
            assert stats.misbehaviour == {} and stats.peers == {}
            with pytest.raises(ValueError):
                node.manager.report_misbehaviour(stranger, "made_up")  # type: ignore[arg-type]
        finally:
            await close_all(node)

    run(scenario())


def test_refusal_lines_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with lone_node(log_interval_ms=60_000, **SLOTS) as (node, sockets):
            port = node.manager.listen_port
            for _ in range(4 + 50):
                await sockets.connect(port, ATTACKER_HOSTS[0])
            await wait_until(
                lambda: node.manager.stats().handshake_failures[
                    HandshakeFailure.TOO_MANY_PENDING_FROM_ADDRESS
                ]
                == 50
            )

    with caplog.at_level(logging.WARNING, logger="emrchain.p2p"):
        run(scenario())
    refusals = [record for record in caplog.records if "refused" in record.getMessage()]
    assert len(refusals) == 1
