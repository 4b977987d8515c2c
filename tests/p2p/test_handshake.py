"""The handshake over real TCP on 127.0.0.1: success, refusals, and the attacks it must stop.

Each attack is played for real: a man in the middle with its own ephemeral keys, a replay of a
recorded dialer, a reflected hello, a signature made for the other role, a small-order key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from nacl import bindings as sodium

from emrchain.crypto.keys import Ed25519Signer
from emrchain.p2p.errors import HandshakeError, HandshakeFailure
from emrchain.p2p.framing import STREAM_HEADER_BYTES, FrameOpener, FrameSealer, frame_prefix
from emrchain.p2p.handshake import (
    AUTH_CIPHERTEXT_BYTES,
    HandshakeResult,
    Role,
    auth_signed_message,
    encode_hello,
    perform_handshake,
    session_keys,
    transcript_hash,
)
from tests.p2p.helpers import CHAIN_ID, HOST, OpenSockets, TestServer, run

DIALER = Ed25519Signer(b"\x01" * 32)
RESPONDER = Ed25519Signer(b"\x02" * 32)
OTHER = Ed25519Signer(b"\x03" * 32)
STRANGER = Ed25519Signer(b"\x04" * 32)
ALL_KNOWN = {DIALER.public_key, RESPONDER.public_key, OTHER.public_key}

Outcome = HandshakeResult | HandshakeError


@dataclass
class Responder:
    """A listening socket that runs the responder side once per connection."""

    server: asyncio.Server
    outcomes: asyncio.Queue[Outcome]
    writers: list[asyncio.StreamWriter]

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    async def outcome(self) -> Outcome:
        async with asyncio.timeout(3):
            return await self.outcomes.get()

    async def close(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


async def start_responder(
    key: Ed25519Signer = RESPONDER,
    chain_id: bytes = CHAIN_ID,
    allowed: set[bytes] | None = None,
    timeout_s: float = 2.0,
) -> Responder:
    outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            async with asyncio.timeout(timeout_s):
                outcome: Outcome = await perform_handshake(
                    reader,
                    writer,
                    role=Role.RESPONDER,
                    node_key=key,
                    chain_id=chain_id,
                    allowed_peer_keys=ALL_KNOWN if allowed is None else allowed,
                )
        except HandshakeError as error:
            outcome = error
            writer.transport.abort()  # what the manager does on a refusal
        except TimeoutError:
            outcome = HandshakeError(HandshakeFailure.TIMEOUT, "test responder timed out")
            writer.transport.abort()
        outcomes.put_nowait(outcome)

    server = await asyncio.start_server(serve, HOST, 0)
    return Responder(server, outcomes, writers)


async def dial(
    port: int,
    key: Ed25519Signer = DIALER,
    chain_id: bytes = CHAIN_ID,
    allowed: set[bytes] | None = None,
    expected: bytes | None = RESPONDER.public_key,
) -> Outcome:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        async with asyncio.timeout(2):
            return await perform_handshake(
                reader,
                writer,
                role=Role.DIALER,
                node_key=key,
                chain_id=chain_id,
                allowed_peer_keys=ALL_KNOWN if allowed is None else allowed,
                expected_peer_key=expected,
            )
    except HandshakeError as error:
        return error
    finally:
        writer.transport.abort()


def failure(outcome: Outcome) -> HandshakeFailure:
    assert isinstance(outcome, HandshakeError), f"expected a refusal, got {outcome!r}"
    return outcome.reason


def test_success_gives_both_sides_the_same_two_streams() -> None:
    async def scenario() -> None:
        responder = await start_responder()
        try:
            dialer_side = await dial(responder.port)
            responder_side = await responder.outcome()
        finally:
            await responder.close()
        assert isinstance(dialer_side, HandshakeResult)
        assert isinstance(responder_side, HandshakeResult)
        assert dialer_side.peer_public_key == RESPONDER.public_key
        assert responder_side.peer_public_key == DIALER.public_key
        # The transport continues where the handshake stopped, in both directions.
        frame = dialer_side.sealer.seal_message(7, b"to responder")
        assert responder_side.opener.open_message(frame) == (7, b"to responder")
        frame = responder_side.sealer.seal_message(9, b"to dialer")
        assert dialer_side.opener.open_message(frame) == (9, b"to dialer")

    run(scenario())


@pytest.mark.parametrize(
    ("dialer_kwargs", "responder_kwargs", "dialer_failure", "responder_failure"),
    [
        # An unknown dialer is refused by the responder, which then hangs up without ever
        # proving who it is.
        ({"key": STRANGER}, {}, HandshakeFailure.CONNECTION_CLOSED, HandshakeFailure.UNKNOWN_PEER),
        # A responder whose key is not allowed: the dialer refuses it and never sends "ready",
        # so the responder never registers the dialer either.
        (
            {"expected": None},
            {"key": STRANGER},
            HandshakeFailure.UNKNOWN_PEER,
            HandshakeFailure.CONNECTION_CLOSED,
        ),
        # An allowed node answered, but not the one dialed.
        (
            {"expected": OTHER.public_key},
            {},
            HandshakeFailure.UNEXPECTED_PEER_KEY,
            HandshakeFailure.CONNECTION_CLOSED,
        ),
        (
            {"chain_id": b"other-chain"},
            {},
            HandshakeFailure.CHAIN_ID_MISMATCH,
            HandshakeFailure.CHAIN_ID_MISMATCH,
        ),
        # Dialing ourselves (e.g. our own address in the peer list).
        (
            {"key": RESPONDER},
            {},
            HandshakeFailure.CONNECTION_CLOSED,
            HandshakeFailure.SELF_CONNECTION,
        ),
    ],
)
def test_refusals(
    dialer_kwargs: dict[str, object],
    responder_kwargs: dict[str, object],
    dialer_failure: HandshakeFailure,
    responder_failure: HandshakeFailure,
) -> None:
    async def scenario() -> None:
        responder = await start_responder(**responder_kwargs)  # type: ignore[arg-type]
        try:
            dialer_side = await dial(responder.port, **dialer_kwargs)  # type: ignore[arg-type]
            responder_side = await responder.outcome()
        finally:
            await responder.close()
        assert failure(dialer_side) is dialer_failure
        assert failure(responder_side) is responder_failure

    run(scenario())


# --------------------------------------------------------------------------- raw attackers


@dataclass
class RawDialer:
    """The dialer side done by hand, so a test can deviate from the protocol at any step."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    own_hello: bytes
    peer_hello: bytes
    public: bytes
    secret: bytes


async def raw_hello(
    sockets: OpenSockets, port: int, ephemeral_public: bytes | None = None
) -> RawDialer:
    public, secret = sodium.crypto_kx_keypair()
    public = public if ephemeral_public is None else ephemeral_public
    reader, writer = await sockets.connect(port)
    own_hello = encode_hello(CHAIN_ID, public)
    writer.write(own_hello)
    (length,) = await reader.readexactly(1)
    peer_hello = bytes((length,)) + await reader.readexactly(length)
    return RawDialer(reader, writer, own_hello, peer_hello, public, secret)


async def raw_auth(
    raw: RawDialer, key: Ed25519Signer, sign: Callable[[bytes], bytes] | None = None
) -> None:
    """Send a dialer auth; `sign` replaces the correct signature (for forgery tests)."""
    _, send_key = session_keys(Role.DIALER, raw.public, raw.secret, raw.peer_hello[-32:])
    transcript = transcript_hash(raw.own_hello, raw.peer_hello)
    message = auth_signed_message(CHAIN_ID, Role.DIALER, transcript)
    signature = key.sign(message) if sign is None else sign(transcript)
    sealer = FrameSealer(send_key)
    ciphertext = sealer.seal(key.public_key + signature)
    raw.writer.write(sealer.header + frame_prefix(ciphertext) + ciphertext)
    await raw.writer.drain()


def attack(play: Callable[[OpenSockets, int], Awaitable[None]]) -> HandshakeFailure:
    """Run `play(sockets, port)` against a fresh responder; return why the responder refused."""

    async def scenario() -> HandshakeFailure:
        responder = await start_responder()
        sockets = OpenSockets()
        try:
            await play(sockets, responder.port)
            return failure(await responder.outcome())
        finally:
            await sockets.close()
            await responder.close()

    return run(scenario())


def test_garbage_instead_of_a_hello() -> None:
    async def play(sockets: OpenSockets, port: int) -> None:
        _, writer = await sockets.connect(port)
        writer.write(b"GET / HTTP/1.1\r\nHost: node\r\n\r\n" + b"x" * 100)

    assert attack(play) is HandshakeFailure.BAD_HELLO


def test_other_protocol_version() -> None:
    async def play(sockets: OpenSockets, port: int) -> None:
        _, writer = await sockets.connect(port)
        writer.write(encode_hello(CHAIN_ID, b"\x09" * 32, version=2))

    assert attack(play) is HandshakeFailure.VERSION_MISMATCH


def test_reflected_hello() -> None:
    async def play(sockets: OpenSockets, port: int) -> None:
        reader, writer = await sockets.connect(port)
        (length,) = await reader.readexactly(1)
        writer.write(bytes((length,)) + await reader.readexactly(length))  # echo it back

    assert attack(play) is HandshakeFailure.REFLECTED_HELLO


def test_small_order_ephemeral_key() -> None:
    async def play(sockets: OpenSockets, port: int) -> None:
        await raw_hello(sockets, port, ephemeral_public=b"\x00" * 32)

    assert attack(play) is HandshakeFailure.KEY_EXCHANGE_FAILED


def test_signature_for_the_responder_role_is_not_accepted_from_a_dialer() -> None:
    """Reflection at the signature level: the role byte is signed."""

    async def play(sockets: OpenSockets, port: int) -> None:
        raw = await raw_hello(sockets, port)
        await raw_auth(
            raw,
            DIALER,
            sign=lambda transcript: DIALER.sign(
                auth_signed_message(CHAIN_ID, Role.RESPONDER, transcript)
            ),
        )

    assert attack(play) is HandshakeFailure.BAD_SIGNATURE


def test_signature_on_another_chain_is_not_accepted() -> None:
    async def play(sockets: OpenSockets, port: int) -> None:
        raw = await raw_hello(sockets, port)
        await raw_auth(
            raw,
            DIALER,
            sign=lambda transcript: DIALER.sign(
                auth_signed_message(b"other-chain", Role.DIALER, transcript)
            ),
        )

    assert attack(play) is HandshakeFailure.BAD_SIGNATURE


def test_claiming_an_allowed_key_without_its_secret() -> None:
    async def play(sockets: OpenSockets, port: int) -> None:
        raw = await raw_hello(sockets, port)
        # STRANGER signs, but the auth names DIALER's (allowed) public key.
        impostor = Ed25519Signer(STRANGER.seed)
        impostor._public_key = DIALER.public_key  # type: ignore[misc]
        await raw_auth(raw, impostor)

    assert attack(play) is HandshakeFailure.BAD_SIGNATURE


def test_replayed_dialer_handshake() -> None:
    """Bytes recorded from a real dialer, replayed later: the responder's fresh ephemeral key
    yields different session keys, so the recorded auth does not even decrypt."""

    async def scenario() -> HandshakeFailure:
        responder = await start_responder()
        sockets = OpenSockets()
        recorded = bytearray()

        async def tee(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await sockets.connect(responder.port)

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, log: bool) -> None:
                while data := await src.read(4_096):
                    if log:
                        recorded.extend(data)
                    dst.write(data)

            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

        recorder = await TestServer(tee).start()
        try:
            assert isinstance(await dial(recorder.port), HandshakeResult)
            assert isinstance(await responder.outcome(), HandshakeResult)
            _, writer = await sockets.connect(responder.port)
            writer.write(bytes(recorded))
            return failure(await responder.outcome())
        finally:
            await recorder.close()
            await sockets.close()
            await responder.close()

    assert run(scenario()) is HandshakeFailure.AUTH_DECRYPTION_FAILED


def test_man_in_the_middle_with_its_own_ephemeral_keys() -> None:
    """The attacker runs a key exchange with each side and relays the dialer's auth,
    re-encrypted. It can read that auth (the dialer's identity is hidden from passive observers
    only), but the signature covers the dialer's transcript, not the responder's: refused."""

    async def scenario() -> tuple[HandshakeFailure, HandshakeFailure]:
        responder = await start_responder()
        sockets = OpenSockets()

        async def mitm(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter):
            to_dialer_public, to_dialer_secret = sodium.crypto_kx_keypair()
            to_responder = await raw_hello(sockets, responder.port)
            client_writer.write(encode_hello(CHAIN_ID, to_dialer_public))
            (length,) = await client_reader.readexactly(1)
            dialer_hello = bytes((length,)) + await client_reader.readexactly(length)
            receive_key, _ = session_keys(
                Role.RESPONDER, to_dialer_public, to_dialer_secret, dialer_hello[-32:]
            )
            header = await client_reader.readexactly(STREAM_HEADER_BYTES)
            await client_reader.readexactly(4)
            auth = FrameOpener(receive_key, header).open(
                await client_reader.readexactly(AUTH_CIPHERTEXT_BYTES)
            )
            _, send_key = session_keys(
                Role.DIALER,
                to_responder.public,
                to_responder.secret,
                to_responder.peer_hello[-32:],
            )
            sealer = FrameSealer(send_key)
            ciphertext = sealer.seal(auth)
            to_responder.writer.write(sealer.header + frame_prefix(ciphertext) + ciphertext)
            # The responder hangs up; the attacker, with nothing valid to show, does too.
            await to_responder.reader.read()
            client_writer.transport.abort()

        attacker = await TestServer(mitm).start()
        try:
            dialer_side = await dial(attacker.port)
            return failure(await responder.outcome()), failure(dialer_side)
        finally:
            await attacker.close()
            await sockets.close()
            await responder.close()

    responder_failure, dialer_failure = run(scenario())
    assert responder_failure is HandshakeFailure.BAD_SIGNATURE
    assert dialer_failure is HandshakeFailure.CONNECTION_CLOSED


def test_silent_peer_is_bounded_by_the_callers_timeout() -> None:
    async def scenario() -> None:
        responder = await start_responder(timeout_s=0.2)
        sockets = OpenSockets()
        try:
            await sockets.connect(responder.port)
            assert failure(await responder.outcome()) is HandshakeFailure.TIMEOUT
        finally:
            await sockets.close()
            await responder.close()

    run(scenario())
