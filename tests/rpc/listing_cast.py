"""One single-validator devnet with a hospital's cast (a patient with three records, another
patient, two clinicians, an auditor and the admin), for the listing tests on a real node
(`test_history_routes.py`, `test_shared_with_me.py`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from emrchain.client import transactions
from emrchain.client.replies import StoredRecord
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import RecordType, Role
from tests.rpc.bounded import run

NO_PATIENT = transactions.NO_KEY


@dataclass(frozen=True, slots=True)
class Cast:
    url: str
    patient: MemberIdentity
    patient_id: bytes
    other_patient: MemberIdentity
    clinician: MemberIdentity
    colleague: MemberIdentity
    auditor: MemberIdentity
    admin: MemberIdentity
    organization_id: str
    records: list[StoredRecord]


async def _cast(devnet: Devnet) -> Cast:
    hospital = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
    patient, other, clinician, colleague, auditor = (MemberIdentity.generate() for _ in range(5))
    patient_id = secrets.token_bytes(32)
    await _register(
        hospital,
        [
            (patient, Role.PATIENT, patient_id),
            (other, Role.PATIENT, secrets.token_bytes(32)),
            (clinician, Role.CLINICIAN, NO_PATIENT),
            (colleague, Role.CLINICIAN, NO_PATIENT),
            (auditor, Role.AUDITOR, NO_PATIENT),
        ],
    )
    url = devnet.rpc_urls[0]
    async with EmrClient(url, clinician) as author:
        records = [
            await author.put_record(b"visit %d" % number, patient_id, RecordType.CLINICAL_NOTE)
            for number in range(3)
        ]
    return Cast(
        url,
        patient,
        patient_id,
        other,
        clinician,
        colleague,
        auditor,
        hospital.admin,
        hospital.organization_id,
        records,
    )


def running_cast(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Cast]:
    """A module fixture's body: the devnet started, the cast made, the devnet stopped after."""
    devnet = Devnet(tmp_path_factory.mktemp(name) / "net", 1)
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        yield run(_cast(devnet))
    finally:
        devnet.stop_all()


def as_member(cast: Cast, member: MemberIdentity) -> EmrClient:
    return EmrClient(cast.url, member)
