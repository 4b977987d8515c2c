"""Issue 5 acceptance on a real 4-validator devnet, through the client library:

- plaintext with a unique marker is found nowhere in what the nodes wrote (LevelDB directories,
  blob stores, custody vaults, logs);
- a break-glass read appears in the patient's access log with its reason, flagged for review;
- after erasure, reads answer 410 Gone, and the node's blob and custody copy are deleted, while
  the chain keeps the anchor hash and the tombstone.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from pathlib import Path

import pytest

from emrchain.client.replies import Gone
from emrchain.client.rpc import EmrClient
from emrchain.config.node import load_node_config
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import ErasureReason, RecordType, Role
from emrchain.storage.local import LocalBlobStore
from emrchain.storage.vault import LevelDbKeyVault

BREAK_GLASS_REASON = "unconscious patient in the emergency room, no consent possible"
NO_PATIENT = bytes(32)


def files_containing(root: Path, marker: bytes) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and marker in path.read_bytes():
            found.append(path)
    return found


async def scenario(devnet: Devnet, marker: bytes) -> dict[str, object]:
    a = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
    b = Hospital.from_home(devnet.rpc_urls[1], devnet.homes[1])
    clinician, patient, emergency = (MemberIdentity.generate() for _ in range(3))
    patient_id = secrets.token_bytes(32)
    await _register(
        a, [(clinician, Role.CLINICIAN, NO_PATIENT), (patient, Role.PATIENT, patient_id)]
    )
    await _register(b, [(emergency, Role.CLINICIAN, NO_PATIENT)])
    plaintexts = [marker + b" visit %d: potassium 4.1 mmol/L" % index for index in range(3)]
    async with EmrClient(a.rpc_url, clinician) as author:
        stored = [
            await author.put_record(
                text, patient_id, RecordType.LAB_RESULT)
            for text in plaintexts
        ]
    # Hospital B's emergency clinician has no grant: break-glass, then read through the
    # custodian node (hospital A's).
    async with EmrClient(a.rpc_url, emergency) as responder:
        await responder.break_glass(patient_id, BREAK_GLASS_REASON, 3_600_000)
        emergency_read = await responder.get_record(stored[0].record_id)
    async with EmrClient(a.rpc_url, patient) as owner:
        trail = await owner.access_events(patient_id=patient_id)
        await owner.erase(stored[1].record_id, ErasureReason.PATIENT_REQUEST)
        try:
            await owner.get_record(stored[1].record_id)
            after_erasure: object = None
        except Gone as gone:
            after_erasure = gone
        own_read = await owner.get_record(stored[2].record_id)
    return {
        "stored": stored,
        "plaintexts": plaintexts,
        "emergency_read": emergency_read,
        "trail": trail,
        "after_erasure": after_erasure,
        "own_read": own_read,
        "patient_id": patient_id,
    }


@pytest.mark.slow
def test_privacy_break_glass_and_erasure(tmp_path: Path) -> None:
    marker = b"EMRCHAIN-PLAINTEXT-MARKER-" + secrets.token_hex(16).encode()
    network = Devnet(tmp_path / "net", 4)
    try:
        network.start_all()
        network.wait_for_height(1, [0, 1, 2, 3], timeout_s=60)
        outcome = asyncio.run(scenario(network, marker))
        top = network.height(0)
        network.wait_for_height(top, [1, 2, 3], timeout_s=60)
        erased_record = outcome["stored"][1]
        chain_view = network.rpc(3, f"/txs/{erased_record.anchor_tx_id.hex()}")
        # The erasure's local deletions run right after its commit; the node logs when done.
        erased_line = f"erased record {erased_record.record_id.hex()[:16]}"
        network.wait_for(
            lambda: erased_line in network.log_path(0).read_text(),
            30,
            "node 0 to delete the erased record's blob and custody copy",
            poll_s=0.05,
        )
    finally:
        network.stop_all()

    stored = outcome["stored"]
    assert outcome["emergency_read"].plaintext == outcome["plaintexts"][0]
    assert outcome["own_read"].plaintext == outcome["plaintexts"][2]

    events = outcome["trail"]["events"]
    declarations = [event for event in events if event["kind"] == "break_glass"]
    assert len(declarations) == 1
    assert declarations[0]["reason"] == BREAK_GLASS_REASON
    assert declarations[0]["flagged_for_review"]
    reads = [event for event in events if event["kind"] == "access"]
    assert [event["basis"] for event in reads] == ["break_glass"]
    assert reads[0]["flagged_for_review"]
    assert reads[0]["record_id"] == stored[0].record_id.hex()

    assert isinstance(outcome["after_erasure"], Gone)
    assert outcome["after_erasure"].status == 410
    # The anchor stays on chain (its hash and position), with the tombstone executed.
    assert chain_view["status"] == "committed"
    config = load_node_config(network.homes[0])
    vault = LevelDbKeyVault(config.resolve(config.records.vault_dir))
    try:
        assert vault.get(erased_record.record_id) is None
        assert vault.get(stored[0].record_id) is not None  # custody of the others remains
    finally:
        vault.close()
    blobs = LocalBlobStore(config.resolve(config.records.blob_dir), config.records.max_record_bytes)
    assert not asyncio.run(blobs.has(erased_record.cid_text))
    assert asyncio.run(blobs.has(stored[0].cid_text))

    # No plaintext at rest anywhere the nodes wrote: chain DBs, blobs, vaults, keys, logs.
    assert files_containing(network.root, marker) == []
    # The scan can find the marker: a control file written the same way is found.
    control = network.root / "control.bin"
    control.write_bytes(b"\x00prefix" + outcome["plaintexts"][0] + b"suffix")
    assert files_containing(network.root, marker) == [control]
    assert hashlib.sha256(marker).digest() not in control.read_bytes()
