"""A read waits for one block (served implies recorded), so a validator holding a reader's access
event cuts its commit pause to `[consensus] timeout_commit_reads_ms` instead of waiting out
`timeout_commit_ms` (`docs/spec/access-control.md` §6). Real single-validator processes; the
control, with the reads' pause as long as the commit pause, shows the test can fail.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest

from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import RecordType, Role

pytestmark = pytest.mark.slow

TIMEOUT_COMMIT_MS = 2_500
NO_PATIENT = bytes(32)


def read_seconds(root: Path, reads_pause_ms: int) -> list[float]:
    """Two reads of one record by its author, each timed from request to plaintext."""
    devnet = Devnet(
        root,
        1,
        consensus={
            "timeout_commit_ms": TIMEOUT_COMMIT_MS,
            "timeout_commit_reads_ms": reads_pause_ms,
        },
    )

    async def scenario() -> list[float]:
        hospital = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
        clinician, patient = MemberIdentity.generate(), MemberIdentity.generate()
        patient_id = secrets.token_bytes(32)
        await _register(
            hospital,
            [(clinician, Role.CLINICIAN, NO_PATIENT), (patient, Role.PATIENT, patient_id)],
        )
        async with EmrClient(hospital.rpc_url, clinician) as client:
            stored = await client.put_record(
                b"ferritin 45 ug/L",
                patient_id,
                RecordType.LAB_RESULT
            )
            durations = []
            for _ in range(2):  # each starts right after a commit: the pause is all ahead
                started = time.monotonic()
                read = await client.get_record(stored.record_id)
                durations.append(time.monotonic() - started)
                assert read.plaintext == b"ferritin 45 ug/L"
        return durations

    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        return asyncio.run(scenario())
    finally:
        devnet.stop_all()


def test_a_waiting_read_cuts_the_commit_pause_short(tmp_path: Path) -> None:
    hurried = read_seconds(tmp_path / "hurried", reads_pause_ms=10)
    assert max(hurried) < TIMEOUT_COMMIT_MS / 1000 / 2, hurried


def test_control_without_the_short_pause_a_read_waits_out_timeout_commit(tmp_path: Path) -> None:
    unhurried = read_seconds(tmp_path / "unhurried", reads_pause_ms=TIMEOUT_COMMIT_MS)
    assert min(unhurried) > TIMEOUT_COMMIT_MS / 1000 / 2, unhurried
