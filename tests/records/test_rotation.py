"""KEK rotation on the file ring and on the real SoftHSM2 ring.

Records are read (custody key unwrapped and sealed to a reader, then opened) continuously while
the rotation runs; every read must give the record's data key. At the end every wrap is under
the new version and the old version is gone: its key file destroyed, or its object gone from
the token. A rotation that dies mid-way resumes from its persisted cursor.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from pathlib import Path

import pytest
from nacl.public import PrivateKey, SealedBox

from emrchain.hsm import HsmKeyRing
from emrchain.records import open_record_service
from emrchain.records.rotation import RotationProgress, read_state
from emrchain.records.service import RecordService
from tests.records.homes import (
    configure_home,
    hsm_settings,
    seal_organization_key,
    single_node_home,
)
from tests.records.test_hsm_wiring import sealed_data_key
from tests.services.fixtures import run

RECORDS = 240
BATCH_RECORDS = 16

_prefixes = itertools.count()


@pytest.fixture(params=["file", "hsm"])
def service_and_ring(request: pytest.FixtureRequest, tmp_path: Path):
    """(a record service with RECORDS stored records, their data keys, how to list the ring's
    versions as the key store itself sees them)."""
    home = single_node_home(tmp_path / "net")
    if request.param == "hsm":
        token = request.getfixturevalue("softhsm_token")
        worker = request.getfixturevalue("hsm_worker")
        prefix = f"kek-rot{next(_prefixes)}"
        config = configure_home(
            home,
            records={"kek_backend": "hsm", "hsm_kek_label_prefix": prefix, **hsm_settings(token)},
        )
        seal_organization_key(config, worker)

        def versions_in_store() -> list[int]:
            return HsmKeyRing(worker, prefix).versions()  # a fresh listing of the token
    else:
        config = configure_home(home)
        kek_dir = config.resolve(config.records.kek_dir)

        def versions_in_store() -> list[int]:
            return sorted(int(path.stem.removeprefix("kek-v")) for path in kek_dir.glob("*.json"))

    service = open_record_service(config)
    data_keys = {secrets.token_bytes(32): secrets.token_bytes(32) for _ in range(RECORDS)}

    async def fill() -> None:
        for record_id, data_key in data_keys.items():
            await service.store(record_id, secrets.token_bytes(64), sealed_data_key(home, data_key))

    run(fill())
    try:
        yield service, data_keys, versions_in_store
    finally:
        run(service.close())


async def read_until(
    service: RecordService, data_keys: dict[bytes, bytes], done: asyncio.Event, reads: list[int]
) -> None:
    """Read every record over and over until `done`, counting reads in `reads[0]`; each read
    must give the record's data key."""
    reader = PrivateKey.generate()
    while not done.is_set():
        for record_id, data_key in data_keys.items():
            sealed = service.seal_data_key_for(record_id, bytes(reader.public_key))
            assert sealed is not None and SealedBox(reader).decrypt(sealed) == data_key
            reads[0] += 1
            if reads[0] % 8 == 0:
                await asyncio.sleep(0)  # let the rotation's batches interleave with reads


def test_rotation_while_reading_keeps_every_record_readable_and_destroys_the_old_key(
    service_and_ring,
) -> None:
    service, data_keys, versions_in_store = service_and_ring
    assert versions_in_store() == [1]
    reads = [0]
    reads_at_progress: list[int] = []

    async def scenario() -> RotationProgress:
        done = asyncio.Event()
        reading = asyncio.create_task(read_until(service, data_keys, done, reads))
        rotation = service.begin_rotation(
            batch_records=BATCH_RECORDS,
            on_progress=lambda progress: reads_at_progress.append(reads[0]),
        )
        try:
            final = await rotation.run()
        finally:
            done.set()
        await reading
        return final

    final = run(scenario())
    assert final.finished and final.rewrapped_records == RECORDS
    assert final.target_version == 2 and final.retired_versions == (1,)
    batches = RECORDS // BATCH_RECORDS
    assert len(reads_at_progress) == batches + 1  # one report per batch, one at the end
    # Reads were served while every batch was being rewrapped: each batch's HSM work runs off
    # the event loop, so the reader gets in before the batch is reported. (How many reads fit
    # depends on the machine's load; that some do, batch after batch, does not.)
    per_batch = reads_at_progress[:batches]
    assert all(later > earlier for earlier, later in itertools.pairwise(per_batch))
    assert per_batch[0] > 0
    assert versions_in_store() == [2]  # the old key is gone from its store
    assert service.key_ring.versions() == [2]
    assert {wrap.kek_version for wrap in service.vault.iterate(limit=RECORDS + 1)} == {2}
    reader = PrivateKey.generate()
    for record_id, data_key in data_keys.items():
        sealed = service.seal_data_key_for(record_id, bytes(reader.public_key))
        assert SealedBox(reader).decrypt(sealed) == data_key
    assert read_state(service.rotation_state_path) is None


class CrashError(Exception):
    """Stands for the process dying after a batch was persisted."""


def test_a_rotation_that_died_resumes_from_its_cursor(service_and_ring) -> None:
    service, data_keys, versions_in_store = service_and_ring

    def crash_after_three_batches(progress: RotationProgress) -> None:
        if progress.rewrapped_records >= 3 * BATCH_RECORDS:
            raise CrashError

    first = service.begin_rotation(
        batch_records=BATCH_RECORDS, on_progress=crash_after_three_batches
    )
    with pytest.raises(CrashError):
        run(first.run())
    persisted = read_state(service.rotation_state_path)
    assert persisted is not None and persisted.rewrapped_records == 3 * BATCH_RECORDS
    assert persisted.cursor == sorted(data_keys)[3 * BATCH_RECORDS - 1]
    assert versions_in_store() == [1, 2]  # nothing destroyed before every wrap moved
    with pytest.raises(Exception, match="already in progress"):
        service.begin_rotation()

    resumed = service.resume_rotation(batch_records=BATCH_RECORDS)
    assert resumed is not None and resumed.progress == persisted
    final = run(resumed.run())
    # Cumulative count: the resumed run moved exactly the records the first one had not.
    assert final.finished and final.rewrapped_records == RECORDS
    assert versions_in_store() == [2]
    reader = PrivateKey.generate()
    for record_id, data_key in data_keys.items():
        sealed = service.seal_data_key_for(record_id, bytes(reader.public_key))
        assert SealedBox(reader).decrypt(sealed) == data_key
