"""A real 4-validator devnet, a recording TCP proxy in front of each node's RPC, and the
portals of a patient, two clinicians and an auditor, served in-process on loopback ports.

Every byte a portal (or a node reaching another node's custody route) sends a node goes
through a proxy, which records it: the test of "no member key or plaintext reaches a node"
reads those recordings. `[records] custodian_rpc_urls` names the proxies, so the custody
hand-offs and reads at other custodians go through them too.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from emrchain.client import transactions
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.portal.app import Portal, start_portal
from emrchain.schema import Role

START_TIMEOUT_S = 120.0
Result = TypeVar("Result")


class BackgroundLoop:
    """An event loop in a daemon thread: the proxies and the portals run there, while the
    test's thread drives Chromium through Playwright's blocking API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Result], timeout_s: float = 120.0) -> Result:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class RecordingProxy:
    """A TCP proxy on a loopback port that keeps every byte sent to the node."""

    target_host: str = ""
    target_port: int = 0
    port: int = 0
    to_node: bytearray = field(default_factory=bytearray)
    connections: int = 0
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            node_reader, node_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.close()
            return

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool
        ) -> None:
            try:
                while chunk := await source.read(65536):
                    if record:
                        self.to_node.extend(chunk)
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, node_writer, True), pump(node_reader, writer, False))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@dataclass
class Member:
    seed: bytes
    identity: MemberIdentity
    portal: Portal

    @property
    def start_url(self) -> str:
        return self.portal.guard.start_url()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.portal.guard.port}"

    @property
    def secrets(self) -> list[bytes]:
        """Every private key of the member: its seed (the Ed25519 key) and its X25519 key."""
        return [self.seed, self.identity.encryption_private_key]


@dataclass
class World:
    devnet: Devnet
    proxies: list[RecordingProxy]
    loop: BackgroundLoop
    patient: Member
    author: Member
    """A clinician of the patient's organisation: stores the record."""
    reader: Member
    """A clinician of another organisation: reads only with the patient's grant."""
    auditor: Member
    patient_id: bytes
    runners: list[web.AppRunner] = field(default_factory=list)

    def received_by_nodes(self) -> bytes:
        return b"".join(bytes(proxy.to_node) for proxy in self.proxies)


def _member(seed: bytes, node_url: str) -> Member:
    identity = MemberIdentity.from_seed(seed)
    return Member(seed, identity, Portal(identity, node_url))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    loop = BackgroundLoop()
    devnet = Devnet(
        tmp_path_factory.mktemp("portal") / "net", 4, consensus={"create_empty_blocks": False}
    )
    proxies = [RecordingProxy() for _ in devnet.homes]
    for proxy, url in zip(proxies, devnet.rpc_urls, strict=True):
        target = urlsplit(url)
        proxy.target_host, proxy.target_port = str(target.hostname), int(target.port or 80)
        loop.run(proxy.start())
    hospitals = [
        Hospital.from_home(url, home)
        for url, home in zip(devnet.rpc_urls, devnet.homes, strict=True)
    ]
    custodian_urls = tuple(
        f"{hospital.organization_id}={proxy.url}"
        for hospital, proxy in zip(hospitals, proxies, strict=True)
    )
    for index in range(len(devnet.homes)):
        devnet.configure(index, {"records": {"custodian_rpc_urls": custodian_urls}})
    runners: list[web.AppRunner] = []
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0, 1, 2, 3], timeout_s=START_TIMEOUT_S)
        patient_id = secrets.token_bytes(32)
        patient, author, auditor = (_member(os.urandom(32), proxies[0].url) for _ in range(3))
        reader = _member(os.urandom(32), proxies[1].url)

        async def register() -> None:
            no_key = transactions.NO_KEY
            await _register(hospitals[0], [
                (patient.identity, Role.PATIENT, patient_id),
                (author.identity, Role.CLINICIAN, no_key),
                (auditor.identity, Role.AUDITOR, no_key),
            ])  # fmt: skip
            await _register(hospitals[1], [(reader.identity, Role.CLINICIAN, no_key)])

        loop.run(register())
        for member in (patient, author, reader, auditor):
            runners.append(loop.run(start_portal(member.portal)))
        yield World(devnet, proxies, loop, patient, author, reader, auditor, patient_id, runners)
    finally:
        for runner in runners:
            loop.run(runner.cleanup())
        for proxy in proxies:
            loop.run(proxy.stop())
        devnet.stop_all()
        loop.stop()


def signed_in(browser: Any, member: Member) -> Any:
    """A page of a fresh browser context (own cookies) that opened the member's start URL."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(member.start_url)
    return page
