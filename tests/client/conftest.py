"""A real node for the client tests: one single-validator devnet (`emrchain start` in its own
process) per test session, and fresh members registered on it for every test.

The node's home holds what `emrchain testnet` writes for demos: the organisation `hospital-0`
with its X25519 custody key and its first admin's identity. At start-up that admin also
registers a second organisation, `clinic-b` (sponsored by hospital-0), and its first admin, so
tests can have a clinician with no right to hospital-0's records until consent gives one.
Each test registers its own members (`RealNode.cast()`, `RealNode.register()`): tests share the
chain but no member, patient or record.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emrchain.client import transactions
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity, OrganizationKey
from emrchain.schema import Role

CLINIC_B = "clinic-b"
NO_PATIENT = transactions.NO_KEY
START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Cast:
    """Members of one test: hospital-0's clinician, patient and auditor, and a clinician of
    clinic-b (no access to hospital-0's records without a grant or break-glass)."""

    clinician: MemberIdentity
    patient: MemberIdentity
    patient_id: bytes
    auditor: MemberIdentity
    outsider: MemberIdentity


@dataclass(frozen=True, slots=True)
class RealNode:
    devnet: Devnet
    hospital: Hospital
    """hospital-0: the node's own organisation, its custody key and first admin."""
    clinic_b: Hospital
    """clinic-b on the same node: its key and its first admin (registered at start-up)."""

    @property
    def url(self) -> str:
        return self.hospital.rpc_url

    @property
    def home(self) -> Path:
        return self.devnet.homes[0]

    @property
    def custody_key(self) -> bytes:
        """The X25519 key uploads are wrapped for (the node's organisation key)."""
        return self.hospital.organization_key.public_key

    def register(
        self, *members: tuple[MemberIdentity, Role, bytes], hospital: Hospital | None = None
    ) -> None:
        """Register `(identity, role, patient id or NO_PATIENT)` with the admin of `hospital`
        (default hospital-0), back to back, and wait for the commits."""
        asyncio.run(_register(hospital or self.hospital, list(members)))

    def cast(self) -> Cast:
        cast = Cast(
            clinician=MemberIdentity.generate(),
            patient=MemberIdentity.generate(),
            patient_id=secrets.token_bytes(32),
            auditor=MemberIdentity.generate(),
            outsider=MemberIdentity.generate(),
        )

        async def both() -> None:
            await asyncio.gather(
                _register(
                    self.hospital,
                    [
                        (cast.clinician, Role.CLINICIAN, NO_PATIENT),
                        (cast.patient, Role.PATIENT, cast.patient_id),
                        (cast.auditor, Role.AUDITOR, NO_PATIENT),
                    ],
                ),
                _register(self.clinic_b, [(cast.outsider, Role.CLINICIAN, NO_PATIENT)]),
            )

        asyncio.run(both())
        return cast

    def files_containing(self, marker: bytes) -> list[Path]:
        """Every file under the node's home (chain and vault databases, blobs, keys, log) that
        holds `marker` (as in tests/node/test_emr_privacy.py)."""
        return [
            path
            for path in self.home.rglob("*")
            if path.is_file() and not path.is_symlink() and marker in path.read_bytes()
        ]


async def _found_clinic_b(hospital: Hospital, key: OrganizationKey, admin: MemberIdentity) -> None:
    async with EmrClient(hospital.rpc_url, hospital.admin) as client:
        await client.submit_and_wait(
            transactions.register_organization(
                hospital.admin,
                await client.chain_id(),
                await client.next_nonce(),
                organization_id=key.organization_id,
                name="Clinic B",
                encryption_key=key.public_key,
            )
        )
    await _register(
        Hospital(hospital.rpc_url, key.organization_id, key, hospital.admin),
        [(admin, Role.ADMIN, NO_PATIENT)],
    )


@pytest.fixture(scope="session")
def real_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    devnet = Devnet(tmp_path_factory.mktemp("client-node") / "net", 1)
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=START_TIMEOUT_S)
        hospital = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
        clinic_key = OrganizationKey.generate(CLINIC_B)
        clinic_admin = MemberIdentity.generate()
        asyncio.run(_found_clinic_b(hospital, clinic_key, clinic_admin))
        clinic_b = Hospital(hospital.rpc_url, CLINIC_B, clinic_key, clinic_admin)
        yield RealNode(devnet, hospital, clinic_b)
    finally:
        devnet.stop_all()
