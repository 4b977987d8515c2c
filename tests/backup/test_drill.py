"""Disaster drill (issue 20): a 4-hospital devnet of real node processes with custody sets of
three; hospital-0's node writes a backup while it runs; records are written before and after
it; hospital-0's node is killed and its home deleted (`rm -rf`); it is restored from the
backup, started, block-syncs and serves again.

Checked: every record anchored before the backup reads again through hospital-0's own node
(its custody copy and ciphertext came back from the archive); each record written after the
backup is recovered through the other custodians of its set, and hospital-0's node answers
`not_custodian` for it (the documented gap, docs/spec/backup.md §6); the four nodes agree on
the chain; the restored validator signs again, only above its signing hold. The time to
restore (restore command, then start to caught-up-and-serving) is printed.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from emrchain.backup.archive import load_identity
from emrchain.client.replies import Conflict
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.schema import RecordType
from tests.backup.support import emrchain, emrchain_json
from tests.records.test_erasure import ErasureNet, start_erasure_net

pytestmark = pytest.mark.slow

HOSPITALS = 4
LOST = 0
BEFORE = 3
AFTER = 2
TIMEOUT_S = 60.0
Returned = TypeVar("Returned")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErasureNet]:
    devnet = Devnet(tmp_path_factory.mktemp("drill") / "net", HOSPITALS)
    try:
        yield start_erasure_net(devnet)
    finally:
        devnet.stop_all()


async def put(net: ErasureNet, count: int) -> dict[bytes, bytes]:
    stored = {}
    async with EmrClient(net.hospitals[LOST].rpc_url, net.clinician) as client:
        for index in range(count):
            plaintext = b"creatinine %d umol/L " % (60 + index) + secrets.token_bytes(16)
            result = await client.put_record(plaintext, net.patient_id, RecordType.LAB_RESULT)
            assert not result.custody_failures
            stored[result.record_id] = plaintext
    return stored


async def read_here(net: ErasureNet, record_id: bytes) -> bytes:
    """A read served by hospital-0's node itself (no failover to other custodians)."""
    async with EmrClient(net.hospitals[LOST].rpc_url, net.clinician) as client:
        read, _ = await client._read(record_id)
        return read.plaintext


async def read_anywhere(net: ErasureNet, record_id: bytes) -> bytes:
    """The client's read: hospital-0's node first, then the record's other custodians."""
    async with EmrClient(net.hospitals[LOST].rpc_url, net.clinician) as client:
        return (await client.get_record(record_id)).plaintext


async def custodians(net: ErasureNet, record_id: bytes) -> list[str]:
    async with EmrClient(net.hospitals[1].rpc_url, net.patient) as patient:
        listing = await patient.custody(record_id)
    return [item["organization_id"] for item in listing["custodians"]]


def run(coroutine: Coroutine[Any, Any, Returned]) -> Returned:
    return asyncio.run(coroutine)


def test_a_deleted_home_is_restored_from_its_backup(net: ErasureNet, tmp_path: Path) -> None:
    devnet = net.devnet
    identity_file = tmp_path / "recovery.txt"
    assert emrchain("backup", "keygen", "--out", identity_file).returncode == 0
    recipient = str(load_identity(identity_file).to_public())

    before = run(put(net, BEFORE))
    for record_id, plaintext in before.items():
        assert run(custodians(net, record_id))[0] == net.hospitals[LOST].organization_id
        assert run(read_here(net, record_id)) == plaintext
    backup = emrchain_json(
        "backup",
        "create",
        "--home",
        devnet.homes[LOST],
        "--recipient",
        recipient,
        "--output",
        tmp_path / "backups",
    )
    assert backup["made_by"] == "the running node"
    after = run(put(net, AFTER))

    # The disaster: the process dies and its home is gone.
    devnet.kill(LOST)
    head_at_loss = max(devnet.height(index) for index in range(1, HOSPITALS))
    shutil.rmtree(devnet.homes[LOST])
    assert not devnet.homes[LOST].exists()

    started = time.monotonic()
    restored = emrchain_json(
        "restore", backup["path"], "--identity", identity_file, "--home", devnet.homes[LOST]
    )
    restore_s = time.monotonic() - started
    assert restored["height"] == backup["height"]
    # The lost node can have signed up to the head at its loss + 1; the guard refuses that.
    hold = restored["signing_hold_height"]
    assert hold >= head_at_loss + 2
    devnet.start(LOST)
    target = max(devnet.height(index) for index in range(1, HOSPITALS))
    devnet.wait_for(
        lambda: devnet.height(LOST) >= target, timeout_s=TIMEOUT_S, what="the restored node to sync"
    )
    first = next(iter(before))
    assert run(read_here(net, first)) == before[first]
    total_s = time.monotonic() - started
    print(
        f"\ntime to restore: {total_s:.2f} s (restore command {restore_s:.2f} s, start, sync "
        f"from height {backup['height']} to {target} and first read {total_s - restore_s:.2f} s)"
    )

    # Records anchored before the backup: served by the restored node itself.
    for record_id, plaintext in before.items():
        assert run(read_here(net, record_id)) == plaintext
    # Records written after it: the anchors came back by block sync, this node's custody copy
    # did not; the other custodians serve them (the client fails over), this node says so.
    for record_id, plaintext in after.items():
        with pytest.raises(Conflict) as refused:
            run(read_here(net, record_id))
        assert refused.value.code == "not_custodian"
        assert run(read_anywhere(net, record_id)) == plaintext

    # Agreement: every node holds the same block at a height all have reached.
    common = min(devnet.height(index) for index in range(HOSPITALS))
    headers = [devnet.rpc(index, f"/blocks/{common}")["header"] for index in range(HOSPITALS)]
    assert all(header == headers[0] for header in headers)

    # The restored validator votes again, above its hold only.
    validator = devnet.rpc(LOST, "/status")["validator"]

    def signed_above_hold() -> bool:
        height = devnet.height(LOST)
        if height <= hold:
            return False
        return validator in devnet.rpc(LOST, f"/blocks/{height}")["commit"]["signers"]

    devnet.wait_for(signed_above_hold, timeout_s=TIMEOUT_S, what="a commit signed by node0")
    for height in range(head_at_loss + 2, hold + 1):
        assert validator not in devnet.rpc(LOST, f"/blocks/{height}")["commit"]["signers"]

    # A running node's home is never replaced, even with --force (its database is locked).
    refused = emrchain(
        "restore",
        backup["path"],
        "--identity",
        identity_file,
        "--home",
        devnet.homes[LOST],
        "--force",
        "--signing-hold-height",
        "0",
    )
    assert refused.returncode == 1
    assert "a node is running with this home; stop it first" in refused.stderr
    assert devnet.is_running(LOST) and devnet.height(LOST) >= target
