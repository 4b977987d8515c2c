"""Issue #18 items 1 and 2 on real `emrchain start` processes (`docs/spec/p2p.md` §4.1,
`docs/spec/state.md` §4.2, §4.5), driven through the CLI a hospital would use.

One 4-validator devnet serves the module, in order:

- a full node (`emrchain join`) is refused at the handshake while its key is unregistered;
  once hospital-0's admin registers it (`emrchain register-node`) it connects, block-syncs,
  takes a record and serves its read, and never signs a vote; `emrchain remove-node` gets it
  disconnected;
- under a steady anchor load, a 5th validator joins (`emrchain join`, three validators run
  `emrchain approve-validator`), syncs, and its signature appears in later commits; then
  validator 3 is removed (four approvals of five) and every other node disconnects it, while
  the chain keeps committing the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrchain.client.rpc import EmrClient
from emrchain.config.homes import ADMIN_IDENTITY_FILE, choose_free_ports
from emrchain.config.node import load_node_config
from emrchain.devnet.harness import DEVNET_CONSENSUS, Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.devnet.workload import iter_anchor_transactions
from emrchain.keystore import load_key_file, node_id
from emrchain.keystore.member import MemberIdentity, write_member_identity
from emrchain.schema import RecordType, Role

pytestmark = pytest.mark.slow

TIMEOUT_S = 120.0
NO_KEY = bytes(32)
PLAINTEXT = b"potassium 4.1 mmol/L"
LOAD_SENDERS = 20


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    devnet = Devnet(tmp_path_factory.mktemp("membership") / "net", 4)
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0, 1, 2, 3], timeout_s=TIMEOUT_S)
        yield devnet
    finally:
        devnet.stop_all()


def emrchain(*arguments: str) -> str:
    """Run one `emrchain` command as a user would; its stdout (a failure fails the test)."""
    done = subprocess.run(
        [sys.executable, "-m", "emrchain.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"emrchain {arguments[0]}: {done.stderr}{done.stdout}"
    return done.stdout


def node_key_of(home: Path) -> str:
    return node_id(load_key_file(load_node_config(home).node_key_path).public_key)


def validator_key_of(home: Path) -> str:
    return load_key_file(load_node_config(home).validator_key_path).public_key.hex()


def join(network: Devnet, name: str, organization_id: str = "") -> tuple[int, str]:
    """`emrchain join` a new home next to the devnet's; it joins the harness as the next
    index (not started). Returns (index, advertised p2p address)."""
    p2p_port, rpc_port = choose_free_ports("127.0.0.1", 2)
    home = network.root / name
    peers = [
        f"--peer={node_key_of(other)}@{load_node_config(other).p2p.listen_address}"
        for other in network.homes[:4]
    ]
    organization = [f"--organization-id={organization_id}"] if organization_id else []
    output = emrchain(
        "join",
        f"--home={home}",
        f"--moniker={name}",
        f"--genesis={load_node_config(network.homes[0]).genesis_path}",
        *peers,
        f"--p2p-address=127.0.0.1:{p2p_port}",
        f"--rpc-address=127.0.0.1:{rpc_port}",
        *organization,
    )
    assert node_key_of(home) in output and validator_key_of(home) in output
    network.homes.append(home)
    network.rpc_urls.append(f"http://127.0.0.1:{rpc_port}")
    index = len(network.homes) - 1
    network.configure(index, {"consensus": dict(DEVNET_CONSENSUS)})
    return index, f"127.0.0.1:{p2p_port}"


def peers_of(network: Devnet, index: int) -> set[str]:
    status = network.try_status(index)
    return set(status["peers"]) if status else set()


def handshake_refusals(network: Devnet, index: int) -> int:
    """Node `index`'s count of handshakes refused because the dialer's key is not allowed."""
    with urllib.request.urlopen(network.instrumentation_url(index) + "/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(r'p2p_handshake_failures_total\{reason="unknown_peer"\} ([0-9.e+]+)', text)
    return int(float(match.group(1))) if match else 0


def commit_signers(network: Devnet, index: int, height: int) -> list[str]:
    block = network.rpc(index, f"/blocks/{height}")
    commit = block.get("commit") or {}
    return list(commit.get("signers") or [])


def test_a_registered_full_node_syncs_serves_a_record_and_never_votes(network: Devnet) -> None:
    hospital = Hospital.from_home(network.rpc_urls[0], network.homes[0])
    full, address = join(network, "full-node", hospital.organization_id)
    full_home = network.homes[full]
    # The full node serves hospital-0's records: it holds the organisation's custody key.
    organization_key = load_node_config(network.homes[0]).organization_key_path
    target = load_node_config(full_home).organization_key_path
    target.write_bytes(organization_key.read_bytes())
    target.chmod(0o600)
    full_id = node_key_of(full_home)

    # Unregistered: every validator refuses it at the handshake; it learns nothing.
    refused_before = handshake_refusals(network, 0)
    network.start(full)
    network.wait_for(lambda: network.try_status(full) is not None, TIMEOUT_S, "the full node")
    network.wait_for(
        lambda: handshake_refusals(network, 0) > refused_before, TIMEOUT_S, "a refused handshake"
    )
    assert peers_of(network, full) == set()
    assert full_id not in peers_of(network, 0)
    assert network.height(full) == 0

    admin_file = load_node_config(network.homes[0]).resolve(ADMIN_IDENTITY_FILE)
    emrchain(
        "register-node",
        f"--key={admin_file}",
        f"--rpc={network.rpc_urls[0]}",
        f"--node-home={full_home}",
        f"--address={address}",
    )
    network.wait_for(
        lambda: all(full_id in peers_of(network, index) for index in range(4)),
        TIMEOUT_S,
        "every validator to accept the registered full node",
    )
    network.wait_for(
        lambda: network.height(full) >= network.height(0) - 1 >= 1, TIMEOUT_S, "block sync"
    )

    clinician, patient = MemberIdentity.generate(), MemberIdentity.generate()
    patient_id = secrets.token_bytes(32)

    async def record_through_the_full_node() -> bytes:
        await _register(
            hospital, [(clinician, Role.CLINICIAN, NO_KEY), (patient, Role.PATIENT, patient_id)]
        )
        registered_at = network.height(0)
        network.wait_for(
            lambda: network.height(full) >= registered_at, TIMEOUT_S, "the full node to follow"
        )
        async with EmrClient(network.rpc_urls[full], clinician) as author:
            stored = await author.put_record(
                PLAINTEXT, patient_id, RecordType.LAB_RESULT
            )
        async with EmrClient(network.rpc_urls[full], patient) as reader:
            read = await reader.get_record(stored.record_id)
        assert read.access_event_height >= 1
        return read.plaintext

    assert asyncio.run(record_through_the_full_node()) == PLAINTEXT

    # A clinician is no admin: its registration of a node is refused at execution.
    clinician_file = network.root / "clinician.json"
    write_member_identity(clinician_file, clinician)
    command = ["register-node", f"--key={clinician_file}", f"--rpc={network.rpc_urls[full]}"]
    refused = subprocess.run(
        [sys.executable, "-m", "emrchain.cli", *command, f"--node-home={full_home}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert refused.returncode == 1 and "ROLE_NOT_PERMITTED" in refused.stderr, refused.stderr

    full_validator = validator_key_of(full_home)
    assert network.rpc(full, "/status")["validator"] == full_validator
    assert "full node; validator key not in the set" in network.log_path(full).read_text()
    top = network.height(full)
    for height in range(1, top):
        assert full_validator not in commit_signers(network, full, height)

    # Hospital-1's admin cannot remove hospital-0's node: refused at execution, still connected.
    other_admin = load_node_config(network.homes[1]).resolve(ADMIN_IDENTITY_FILE)
    command = ["remove-node", f"--key={other_admin}", f"--rpc={network.rpc_urls[1]}"]
    refused = subprocess.run(
        [sys.executable, "-m", "emrchain.cli", *command, f"--node-key={full_id}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert refused.returncode == 1 and "NOT_AUTHORIZED" in refused.stderr, refused.stderr
    assert full_id in peers_of(network, 0)
    emrchain(
        "remove-node",
        f"--key={admin_file}",
        f"--rpc={network.rpc_urls[0]}",
        f"--node-key={full_id}",
    )
    network.wait_for(
        lambda: all(full_id not in peers_of(network, index) for index in range(4)),
        TIMEOUT_S,
        "every validator to disconnect the removed full node",
    )
    network.stop(full)


class Load:
    """Anchors from LOAD_SENDERS clinicians, submitted to nodes 0..2 in a thread until stopped."""

    def __init__(self, network: Devnet) -> None:
        self.network = network
        chain = network.rpc(0, "/status")["chain_id"].encode()
        self._txs = iter_anchor_transactions(
            200 * LOAD_SENDERS, chain_id=chain, senders=LOAD_SENDERS, seed=18
        )
        self.accepted: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = [tx for _, tx in zip(range(2 * LOAD_SENDERS), self._txs, strict=False)]
            if not batch:
                return
            # A node too busy to answer loses that batch; the load goes on with the next one.
            with contextlib.suppress(OSError):
                self.accepted += self.network.submit(batch, nodes=[0, 1, 2])
            self._stop.wait(0.25)


def test_a_validator_joins_under_load_votes_and_a_removed_one_is_disconnected(
    network: Devnet,
) -> None:
    network.register_workload_members(senders=LOAD_SENDERS, seed=18, committed_on=[0, 1, 2, 3])
    with Load(network) as load:
        joiner, address = join(network, "hospital-5")
        joiner_home = network.homes[joiner]
        joiner_key = validator_key_of(joiner_home)
        for index in range(3):  # 30 of 40: more than 2/3
            emrchain(
                "approve-validator",
                f"--home={network.homes[index]}",
                f"--validator-key={joiner_key}",
                f"--node-key={node_key_of(joiner_home)}",
                f"--address={address}",
                "--power=10",
                "--epoch=1",
            )
        approved_at = network.height(0)
        started = time.monotonic()
        network.start(joiner)
        network.wait_for(
            lambda: network.height(joiner) >= network.height(0) - 1 > approved_at,
            TIMEOUT_S,
            "the joining validator to block-sync",
        )

        def joiner_signed() -> bool:
            top = network.height(0)
            return any(
                joiner_key in commit_signers(network, 0, height)
                for height in range(max(approved_at + 2, top - 3), top + 1)
            )

        synced_s = time.monotonic() - started
        network.wait_for(joiner_signed, TIMEOUT_S, "a commit signed by the new validator")
        signing_s = time.monotonic() - started

        # Remove validator 3: four of the five (40 of 50) approve, the newcomer among them.
        removed = 3
        removed_id = node_key_of(network.homes[removed])
        for index in (0, 1, 2, joiner):
            emrchain(
                "approve-validator",
                f"--home={network.homes[index]}",
                f"--validator-key={validator_key_of(network.homes[removed])}",
                "--power=0",
                "--epoch=1",
            )
        remaining = [0, 1, 2, joiner]
        removal_started = time.monotonic()
        network.wait_for(
            lambda: all(removed_id not in peers_of(network, index) for index in remaining),
            TIMEOUT_S,
            "every remaining validator to disconnect the removed one",
        )
        disconnected_s = time.monotonic() - removal_started
        removed_at = max(network.height(index) for index in remaining)
        network.wait_for_height(removed_at + 3, remaining, timeout_s=TIMEOUT_S)
        assert removed_id not in peers_of(network, 0)
    assert len(load.accepted) > 0
    network.wait_committed(0, load.accepted[-1:], timeout_s=TIMEOUT_S)
    signed = sum(
        joiner_key in commit_signers(network, 0, height)
        for height in range(approved_at + 3, removed_at + 1)
    )
    print(
        f"membership: approved at height {approved_at}; joiner synced {synced_s:.1f} s and "
        f"first in a commit {signing_s:.1f} s after start; signed {signed} of "
        f"{removed_at - approved_at - 2} commits up to height {removed_at}; removed validator "
        f"disconnected {disconnected_s:.1f} s after the last approval committed; "
        f"{len(load.accepted)} load transactions accepted"
    )
