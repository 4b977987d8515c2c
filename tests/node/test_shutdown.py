"""Issue 18 item 3, on real processes: SIGTERM closes every stream and exits promptly whatever
is connected, an immediate restart on the same home works, and every start-up refusal is one
line on stderr with a non-zero exit status and no traceback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from emrchain.config.node import load_node_config, render_node_config
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import Role
from tests.rpc.test_patient_stream import signed_headers

MAX_EXIT_S = 1.0
START_TIMEOUT_S = 60.0
BLOCK_SUBSCRIBERS = 3


async def _first_frame(socket: aiohttp.ClientWebSocketResponse) -> dict:
    message = await asyncio.wait_for(socket.receive(), timeout=30)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def _read_until_closed(socket: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read frames until the node closes the stream; the close code."""
    while True:
        message = await socket.receive()
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return socket.close_code


async def _terminate_with_subscribers(network: Devnet) -> tuple[float, list[int | None]]:
    """Subscribe to every stream (block streams that read, one that never reads, a patient
    stream), SIGTERM the node once each has had a frame; (seconds to exit, close codes)."""
    url, home = network.rpc_urls[0], network.homes[0]
    hospital = Hospital.from_home(url, home)
    patient, patient_id = MemberIdentity.generate(), secrets.token_bytes(32)
    await _register(hospital, [(patient, Role.PATIENT, patient_id)])
    status = network.rpc(0, "/status")
    chain_id, node_id = status["chain_id"].encode(), bytes.fromhex(status["node_id"])
    path = f"/ws/patients/{patient_id.hex()}"
    async with aiohttp.ClientSession() as session:
        readers = [await session.ws_connect(url + "/ws/blocks") for _ in range(BLOCK_SUBSCRIBERS)]
        readers.append(
            await session.ws_connect(
                url + path, headers=signed_headers(patient, chain_id, node_id, path)
            )
        )
        silent = await session.ws_connect(url + "/ws/blocks")  # never reads a frame
        for socket in readers:
            await _first_frame(socket)
        closing = [asyncio.create_task(_read_until_closed(socket)) for socket in readers]
        process = network.processes[0]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        while process.poll() is None and time.monotonic() - started < 60:
            await asyncio.sleep(0.005)
        exit_s = time.monotonic() - started
        codes = await asyncio.wait_for(asyncio.gather(*closing), timeout=30)
        await silent.close()
    assert process.returncode == 0, process.returncode
    return exit_s, codes


def test_sigterm_with_stream_subscribers_exits_within_a_second_and_restarts(
    tmp_path: Path,
) -> None:
    network = Devnet(tmp_path / "net", 1)
    try:
        network.start_all()
        network.wait_for_height(1, [0], timeout_s=START_TIMEOUT_S)
        exit_s, codes = asyncio.run(_terminate_with_subscribers(network))
        print(f"SIGTERM with {BLOCK_SUBSCRIBERS + 2} subscribers: exited in {exit_s:.3f} s")
        assert exit_s < MAX_EXIT_S, f"took {exit_s:.2f} s to exit"
        # Every reading subscriber was told the node is going away (1001), not cut off.
        assert codes == [aiohttp.WSCloseCode.GOING_AWAY] * len(codes), codes
        stopped_at = network.height(0)
        network.start(0)  # at once, on the same home: the database lock was released
        network.wait_for_height(stopped_at + 2, [0], timeout_s=START_TIMEOUT_S)
        assert "Traceback" not in network.log_path(0).read_text()
    finally:
        network.stop_all()


def start_refusal(home: Path) -> tuple[int, list[str]]:
    """Run `emrchain start` on `home`, expecting a refusal: (exit status, stderr lines)."""
    completed = subprocess.run(
        [sys.executable, "-m", "emrchain.cli", "start", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    assert completed.returncode != 0
    return completed.returncode, completed.stderr.strip().splitlines()


def copy_home(network: Devnet, index: int, destination: Path) -> Path:
    shutil.copytree(network.homes[index], destination)
    return destination


def test_start_up_refusals_are_one_line(tmp_path: Path) -> None:
    network = Devnet(tmp_path / "net", 2)
    try:
        network.start(0)
        network.wait_for(lambda: network.try_status(0) is not None, START_TIMEOUT_S, "node0 RPC")

        # A second node on a home that runs: one line, before anything else is logged.
        status, lines = start_refusal(network.homes[0])
        assert status == 1
        assert len(lines) == 1, lines
        assert lines[0].startswith("emrchain start: error: "), lines
        assert "another emrchain node is running with this home" in lines[0]

        # A garbled key file, and a config value out of range: one line each (the config's
        # names the setting and its range).
        garbled = copy_home(network, 1, tmp_path / "garbled")
        (garbled / "config" / "node_key.json").write_text("{not json")
        status, lines = start_refusal(garbled)
        assert len(lines) == 1 and "node_key.json: not a valid key file" in lines[0], lines
        bad_config = copy_home(network, 1, tmp_path / "bad-config")
        config_path = load_node_config(bad_config).config_path
        text = config_path.read_text()
        config_path.write_text(text.replace("\ntimeout_commit_ms = ", "\ntimeout_commit_ms = -5 #"))
        status, lines = start_refusal(bad_config)
        assert lines == [
            f"emrchain start: error: {config_path}: [consensus] timeout_commit_ms: must be "
            "within 0..600000, got -5"
        ], lines

        # The RPC address of the running node: the refusal names the setting (a few start-up
        # log lines may come first; the refusal is the last line and the only error).
        clash = copy_home(network, 1, tmp_path / "clash")
        config = load_node_config(clash)
        taken = load_node_config(network.homes[0]).rpc.listen_address
        rpc = dataclasses.replace(config.rpc, listen_address=taken)
        config.config_path.write_text(render_node_config(dataclasses.replace(config, rpc=rpc)))
        status, lines = start_refusal(clash)
        assert lines[-1] == (
            f"emrchain start: error: [rpc] listen_address {taken}: cannot listen "
            "(Address already in use)"
        ), lines
        assert sum("error" in line.lower() for line in lines) == 1, lines

        # A database of another chain than the genesis says.
        network.stop(0)
        other_chain = copy_home(network, 0, tmp_path / "other-chain")
        genesis_path = other_chain / "config" / "genesis.json"
        genesis = json.loads(genesis_path.read_text())
        genesis["chain_id"] = "another-chain"
        genesis_path.write_text(json.dumps(genesis))
        status, lines = start_refusal(other_chain)
        assert lines[-1] == (
            "emrchain start: error: the data directory holds chain 'emrchain-devnet', genesis "
            "says 'another-chain': run `emrchain unsafe-reset-all` to start over"
        ), lines
    finally:
        network.stop_all()
