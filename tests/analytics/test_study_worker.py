"""The study worker's local computation over real sealed records and real chain state: only
opted-in patients' records (at the query's height, and still) enter a contribution."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from emrchain.analytics.contribution import QuerySpec, local_aggregate, noise_scales
from emrchain.analytics.worker import StudyWorker
from emrchain.client.envelope import seal_record
from emrchain.client.fhir_content import encode_resource
from emrchain.config.node import AnalyticsSection
from emrchain.keystore.member import OrganizationKey
from emrchain.records.service import RecordService
from emrchain.schema import QueryType, ResearchChoice, Role, TxKind
from emrchain.state.emr.studies import encode_participants, find_query
from emrchain.storage.file_kek import FileKeyRing
from emrchain.storage.local import LocalBlobStore
from emrchain.storage.memory_cache import MemoryCache
from emrchain.storage.vault import LevelDbKeyVault
from tests.state.emr.world import (
    A_ADMIN,
    A_CLINICIAN,
    B_ADMIN,
    HOSPITAL_A,
    HOSPITAL_B,
    OTHER_PATIENT,
    OTHER_PATIENT_ID,
    PATIENT,
    PATIENT_ID,
    World,
    actor,
    digest,
    member_fields,
)

MEASURE = "4548-4"
OPT_IN = {"choice": ResearchChoice.OPT_IN}
OPT_OUT = {"choice": ResearchChoice.OPT_OUT}
B_PATIENT = actor("b-patient")
B_PATIENT_ID = digest("patient-id/b")
SUM = QuerySpec(QueryType.SUM, MEASURE, 0, 1_000_000_000, 0, 1_000_000, 1_000_000)


def observation(value: float, code: str = MEASURE) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": {"value": value, "unit": "%"},
    }


class Hospital:
    """Hospital A's node side: a real record service (local blobs, vault, KEK ring)."""

    def __init__(self, home: Path, world: World) -> None:
        self.key = OrganizationKey.generate(HOSPITAL_A)
        self.records = RecordService(
            LocalBlobStore(home / "blobs", 1 << 20),
            MemoryCache(1 << 20, 100, 60_000),
            LevelDbKeyVault(home / "vault"),
            FileKeyRing(home / "kek"),
            self.key,
            1 << 20,
        )
        self.records.key_ring.generate()
        self.world = world
        self.worker = StudyWorker(
            self.records, lambda: world.state, b"test-chain", AnalyticsSection()
        )

    def store(self, label: str, patient_id: bytes, resource: dict[str, Any]) -> bytes:
        """Seal a FHIR resource to the organisation, keep its custody copy, anchor it."""
        record_id = digest("record/" + label)
        sealed = seal_record(
            encode_resource(resource), record_id, patient_id, {"org": self.key.public_key}
        )
        asyncio.run(self.records.store(record_id, sealed.ciphertext, sealed.wraps["org"]))
        fields = self.world.anchor_fields(record_id, patient_id)
        fields.update(
            ciphertext_sha256=sealed.ciphertext_sha256, cid=sealed.cid_bytes, size_bytes=sealed.size
        )
        self.world.send_ok(A_CLINICIAN, TxKind.ANCHOR_RECORD, fields)
        return record_id

    def values(self, query: QuerySpec = SUM, height: int | None = None) -> dict[bytes, int]:
        at = self.world.chain.height if height is None else height
        return asyncio.run(self.worker.local_values(self.world.state, query, at))


def test_opted_out_patients_never_enter_a_contribution(tmp_path: Path) -> None:
    world = World()
    hospital = Hospital(tmp_path, world)
    register = TxKind.REGISTER_MEMBER
    b_patient = member_fields(HOSPITAL_B, B_PATIENT, Role.PATIENT, B_PATIENT_ID)
    world.send_ok(B_ADMIN, register, b_patient)
    world.send_ok(PATIENT, TxKind.RESEARCH_CONSENT, OPT_IN)
    world.send_ok(B_PATIENT, TxKind.RESEARCH_CONSENT, OPT_IN)
    hospital.store("p1-old", PATIENT_ID, observation(6.0))
    hospital.store("p1", PATIENT_ID, observation(7.25))  # the latest value counts
    hospital.store("p1-other-measure", PATIENT_ID, observation(99.0, code="2345-7"))
    # The opted-out patient's extreme value, and a hospital-b patient's record held here.
    hospital.store("p2", OTHER_PATIENT_ID, observation(1_000_000.0))
    hospital.store("b1", B_PATIENT_ID, observation(500_000.0))
    first = world.chain.height
    assert hospital.values() == {PATIENT_ID: 7_250}
    assert local_aggregate(SUM, hospital.values().values()) == [7_250]
    count = QuerySpec(QueryType.COUNT, MEASURE, 0, 0, 0, 1_000_000, 1_000_000)
    assert local_aggregate(count, hospital.values(count).values()) == [1]
    # The opted-out patient opts in: their value enters queries after that height only.
    world.send_ok(OTHER_PATIENT, TxKind.RESEARCH_CONSENT, OPT_IN)
    assert hospital.values(height=first) == {PATIENT_ID: 7_250}
    assert hospital.values() == {PATIENT_ID: 7_250, OTHER_PATIENT_ID: 1_000_000_000}
    # A patient who opts out between two queries is out of the second, and out of the first
    # too if it was not computed yet (an opt-out is honoured at once).
    world.send_ok(OTHER_PATIENT, TxKind.RESEARCH_CONSENT, OPT_OUT)
    assert hospital.values() == {PATIENT_ID: 7_250}
    assert hospital.values(height=world.chain.height - 1) == {PATIENT_ID: 7_250}
    # Records anchored after the query's height are not read.
    hospital.store("p1-later", PATIENT_ID, observation(9.0))
    assert hospital.values(height=first) == {PATIENT_ID: 7_250}
    assert hospital.values() == {PATIENT_ID: 9_000}


def test_compute_masks_the_noisy_contribution(tmp_path: Path) -> None:
    world = World()
    hospital = Hospital(tmp_path, world)
    world.send_ok(PATIENT, TxKind.RESEARCH_CONSENT, OPT_IN)
    hospital.store("p1", PATIENT_ID, observation(7.0))
    study_id, query_id = digest("study"), digest("query")
    world.send_ok(
        A_CLINICIAN,
        TxKind.PROPOSE_STUDY,
        {
            "study_id": study_id,
            "purpose": "worker",
            "query_types": 1 << QueryType.HISTOGRAM,
            "epsilon_total": 5_000_000,
            "delta_total": 1_000_000,
            "participants": encode_participants([HOSPITAL_A, HOSPITAL_B]),
            "expires_at_ms": 1 << 60,
        },
    )
    world.send_ok(A_ADMIN, TxKind.APPROVE_STUDY, {"study_id": study_id})
    world.send_ok(B_ADMIN, TxKind.APPROVE_STUDY, {"study_id": study_id})
    histogram = {
        "study_id": study_id,
        "query_id": query_id,
        "query_type": QueryType.HISTOGRAM,
        "measure": MEASURE,
        "lower_milli": 4_000,
        "upper_milli": 14_000,
        "bins": 5,
        "epsilon": 1_000_000,
        "delta": 100_000,
    }
    world.send_ok(A_CLINICIAN, TxKind.STUDY_QUERY, histogram)
    query = find_query(world.state, study_id, query_id)
    assert query is not None
    contribution = asyncio.run(hospital.worker.compute(study_id, query_id))
    assert contribution.masked and len(contribution.vector) == 5
    assert hospital.worker.contribution(study_id, query_id) == contribution
    # Computed once: asking again gives the same draw, never fresh noise.
    assert asyncio.run(hospital.worker.compute(study_id, query_id)) == contribution
    # Masked words are spread over the whole ring, far from the small noisy counts.
    assert any(word > 1 << 32 for word in contribution.vector)
    scales = noise_scales(
        QuerySpec(QueryType.HISTOGRAM, MEASURE, 4_000, 14_000, 5, 1_000_000, 100_000), 2
    )
    assert all(0 < scale < 10 for scale in scales)
