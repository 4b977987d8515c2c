"""Issue #22 part 5 on a real 4-validator devnet: each hospital stores its share of the
breast-cancer rows as encrypted FHIR Observations through its own node, trains from what it
reads and decrypts back through its node, with secure aggregation under the organisation keys
on chain, and the model's SHA-256 is anchored on chain.

A subset of rows (ROWS_PER_HOSPITAL per hospital) keeps the test short; the full-data figures
come from `scripts/bench-federated`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sklearn.datasets import load_breast_cancer

from emrchain.analytics.experiment import breast_cancer_split, score
from emrchain.analytics.federated import (
    FederatedModel,
    Participant,
    TrainingPlan,
    seeded_noise,
    train,
)
from emrchain.client.replies import TransactionRefusedError
from emrchain.client.rpc import EmrClient
from emrchain.config.genesis import load_genesis
from emrchain.config.node import load_node_config
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity, load_organization_key
from emrchain.schema import QueryType, Role
from emrchain.state.codes import ResultCode
from tests.services.fixtures import run

pytestmark = pytest.mark.slow

NODES = 4
ROWS_PER_HOSPITAL = 25
NO_PATIENT = bytes(32)
TIMEOUT_S = 120.0
FEATURE_NAMES = [str(name) for name in load_breast_cancer().feature_names]
EPSILON_MILLIONTHS = 8_000_000
DELTA_UNITS = 10_000_000  # 1e-5 in the chain's 1e-12 units
FAR_FUTURE_MS = 4_102_444_800_000  # 2100-01-01
DIAGNOSES = {0.0: "malignant", 1.0: "benign"}  # scikit-learn's target coding


@dataclass
class Site:
    hospital: Hospital
    clinician: MemberIdentity
    patients: list[bytes]
    rows: tuple[np.ndarray, np.ndarray]
    record_ids: list[bytes]


def observation(patient_id: bytes, features: np.ndarray, label: float) -> dict[str, object]:
    """One patient's aspirate image features as a FHIR Observation; the diagnosis its value."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "imaging",
                    }
                ]
            }
        ],
        "code": {"text": "breast mass fine-needle aspirate, digitised image features"},
        "subject": {"reference": f"Patient/{patient_id.hex()}"},
        "component": [
            {"code": {"text": name}, "valueQuantity": {"value": float(value)}}
            for name, value in zip(FEATURE_NAMES, features, strict=True)
        ],
        "valueCodeableConcept": {"text": DIAGNOSES[float(label)]},
    }


def row_of(resource: dict[str, object]) -> tuple[list[float], float]:
    components = resource["component"]
    assert isinstance(components, list)
    values = {item["code"]["text"]: item["valueQuantity"]["value"] for item in components}
    diagnosis = resource["valueCodeableConcept"]
    assert isinstance(diagnosis, dict)
    label = {text: code for code, text in DIAGNOSES.items()}[diagnosis["text"]]
    return [float(values[name]) for name in FEATURE_NAMES], label


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    net = Devnet(tmp_path_factory.mktemp("federated") / "net", NODES)
    try:
        net.start_all()
        net.wait_for_height(1, list(range(NODES)), timeout_s=TIMEOUT_S)
        yield net
    finally:
        net.stop_all()


async def store(site: Site) -> None:
    """The hospital's clinician stores one Observation per patient through its own node."""
    async with EmrClient(site.hospital.rpc_url, site.clinician) as client:
        features, labels = site.rows
        for patient_id, row, label in zip(site.patients, features, labels, strict=True):
            stored = await client.store_fhir_resource(
                observation(patient_id, row, label), patient_id
            )
            site.record_ids.append(stored.record_id)


async def read_back(site: Site) -> tuple[np.ndarray, np.ndarray]:
    """What the hospital trains on: its own records, read and decrypted through its node."""
    rows, labels = [], []
    async with EmrClient(site.hospital.rpc_url, site.clinician) as client:
        for record_id in site.record_ids:
            row, label = row_of(await client.read_fhir_resource(record_id))
            rows.append(row)
            labels.append(label)
    return np.asarray(rows, dtype=np.float64), np.asarray(labels, dtype=np.float64)


async def read_all(sites: list[Site]) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(await asyncio.gather(*(read_back(site) for site in sites)))


def test_hospitals_train_from_their_encrypted_records_and_anchor_the_model(
    devnet: Devnet,
) -> None:
    split = breast_cancer_split(skewed=False)
    sites = []
    for index in range(NODES):
        hospital = Hospital.from_home(devnet.rpc_urls[index], devnet.homes[index])
        features, labels = split.parts[index]
        sites.append(
            Site(
                hospital,
                MemberIdentity.generate(),
                [secrets.token_bytes(32) for _ in range(ROWS_PER_HOSPITAL)],
                (features[:ROWS_PER_HOSPITAL], labels[:ROWS_PER_HOSPITAL]),
                [],
            )
        )

    async def register_and_store() -> None:
        await asyncio.gather(
            *(
                _register(
                    site.hospital,
                    [(site.clinician, Role.CLINICIAN, NO_PATIENT)]
                    + [(MemberIdentity.generate(), Role.PATIENT, pid) for pid in site.patients],
                )
                for site in sites
            )
        )
        await asyncio.gather(*(store(site) for site in sites))

    run(register_and_store(), deadline_s=TIMEOUT_S)

    # The organisations' public keys come from the chain (its genesis registry); each hospital
    # holds its own private organisation key in its node home.
    genesis = load_genesis(load_node_config(devnet.homes[0]).genesis_path)
    on_chain = {org.organization_id: org.encryption_key for org in genesis.organizations}
    read = run(read_all(sites), deadline_s=TIMEOUT_S)
    participants = []
    for index, (site, (features, labels)) in enumerate(zip(sites, read, strict=True)):
        key = load_organization_key(load_node_config(devnet.homes[index]).organization_key_path)
        private = X25519PrivateKey.from_private_bytes(key.private_key)
        assert private.public_key().public_bytes_raw() == on_chain[key.organization_id]
        assert np.array_equal(features, site.rows[0]) and np.array_equal(labels, site.rows[1])
        participants.append(Participant(key.organization_id, private, features, labels))

    study_id, query_id = secrets.token_bytes(32), secrets.token_bytes(32)
    run(open_study(sites, study_id, query_id), deadline_s=TIMEOUT_S)
    plan = TrainingPlan(8.0)
    # Hospital C sends nothing in gradient round 5: the survivors reveal their seeds with it.
    binding = {
        "chain_id": genesis.chain_id,
        "study_id": study_id.hex(),
        "query_id": query_id.hex(),
        "dropouts": {5: frozenset({participants[2].organization_id})},
    }
    model = train(participants, plan, seeded_noise(np.random.default_rng(7)), **binding)
    # The same rows trained offline give the very same model: nothing was lost on the way.
    offline = [
        Participant(p.organization_id, p.private_key, *site.rows)
        for p, site in zip(participants, sites, strict=True)
    ]
    again = train(offline, plan, seeded_noise(np.random.default_rng(7)), **binding)
    assert model.sha256() == again.sha256()
    assert score(model.probabilities(split.test_features), split.test_labels).accuracy > 0.85
    anchor_model(sites, study_id, query_id, model)


async def open_study(sites: list[Site], study_id: bytes, query_id: bytes) -> None:
    """Hospital A's clinician proposes the study, every participant's admin approves it, and
    the training is registered as its one query, spending (8, 1e-5) of its budget on chain."""
    sponsor = sites[0]
    async with EmrClient(sponsor.hospital.rpc_url, sponsor.clinician) as client:
        await client.propose_study(
            study_id=study_id,
            purpose="federated logistic regression, breast-cancer aspirates (issue #22)",
            query_types=[QueryType.MEAN],
            epsilon_total=EPSILON_MILLIONTHS,
            delta_total=DELTA_UNITS,
            participants=[site.hospital.organization_id for site in sites],
            expires_at_ms=FAR_FUTURE_MS,
        )
    for site in sites:
        async with EmrClient(site.hospital.rpc_url, site.hospital.admin) as admin:
            await admin.approve_study(study_id)
    # No query type names a model yet: MEAN (of the model's weights) carries its budget.
    async with EmrClient(sponsor.hospital.rpc_url, sponsor.clinician) as client:
        await client.submit_study_query(
            study_id=study_id,
            query_id=query_id,
            query_type=QueryType.MEAN,
            measure="federated-logistic-regression",
            lower_milli=0,
            upper_milli=1000,
            epsilon=EPSILON_MILLIONTHS,
            delta=DELTA_UNITS,
        )


def anchor_model(
    sites: list[Site], study_id: bytes, query_id: bytes, model: FederatedModel
) -> None:
    """STUDY_RESULT with the model's SHA-256: every node's study shows it, and only once."""
    sponsor = sites[0]

    async def anchor() -> int:
        async with EmrClient(sponsor.hospital.rpc_url, sponsor.clinician) as client:
            return (await client.anchor_study_result(study_id, query_id, model.sha256())).height

    async def study_at(site: Site) -> dict[str, Any]:
        async with EmrClient(site.hospital.rpc_url, site.hospital.admin) as admin:
            return await admin.study(study_id)

    height = run(anchor(), deadline_s=TIMEOUT_S)
    for site in sites:
        deadline = time.monotonic() + TIMEOUT_S
        while (study := run(study_at(site)))["result_count"] < 1:
            assert time.monotonic() < deadline, f"{site.hospital.organization_id} lags"
            time.sleep(0.2)
        [query] = study["queries"]
        assert query["result_sha256"] == model.sha256().hex()
        assert query["result_height"] == height
        assert study["epsilon_spent"] == EPSILON_MILLIONTHS
    with pytest.raises(TransactionRefusedError) as refused:
        run(anchor())
    assert refused.value.code == ResultCode.RESULT_ALREADY_ANCHORED
