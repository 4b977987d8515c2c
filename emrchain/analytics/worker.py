"""The study worker of one organisation's node (`docs/spec/analytics.md` §4).

After each committed block it looks for applied STUDY_QUERY transactions of studies its
organisation takes part in, and for each computes the organisation's contribution: the values
of the query's measure in the records it holds in custody, of its own patients who were opted in
to research at the query's height (and still are), one per patient, decrypted in memory; the
exact local aggregate; plus this organisation's share of the calibrated noise; then masked
pairwise with the other participants (secure aggregation), so only the sum of all
contributions is ever readable. The contribution is kept, bounded, for the sponsor to fetch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from emrchain.analytics.contribution import (
    Observation,
    QuerySpec,
    add_noise,
    latest_per_patient,
    local_aggregate,
    noise_scales,
    observation_of,
)
from emrchain.analytics.secure_aggregation import (
    MINIMUM_SURVIVORS_FLOOR,
    MaskContext,
    mask_contribution,
)
from emrchain.client.fhir_content import fhir_resource_of
from emrchain.config.node import AnalyticsSection
from emrchain.records.service import RecordService
from emrchain.schema import U64_MAX, TxKind
from emrchain.schema.codec import decode_payload
from emrchain.state.emr.amendments import record_amendments
from emrchain.state.emr.studies import Study, StudyQuery, find_query, opted_in_at, read_study
from emrchain.state.emr.tables import patient_member, read_organization, read_record
from emrchain.state.result import TxResult
from emrchain.state.view import StateView
from emrchain.storage.cid import cid_bytes_to_text
from emrchain.types import envelope
from emrchain.types.block import Block

logger = logging.getLogger(__name__)
VAULT_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class Contribution:
    study_id: bytes
    query_id: bytes
    organization_id: str
    vector: list[int]
    """Masked: integers modulo 2^64 (only the sum over every participant means anything).
    Unmasked (a single-participant study): the noisy aggregate itself, signed."""
    masked: bool


def query_spec(query: StudyQuery) -> QuerySpec:
    return QuerySpec(
        query.query_type,
        query.measure,
        query.lower_milli,
        query.upper_milli,
        query.bins,
        query.epsilon,
        query.delta,
    )


def mask_context(chain_id: bytes, study_id: bytes, query_id: bytes) -> MaskContext:
    """Round 0 of the query's masks (a query is computed once)."""
    return MaskContext(chain_id.decode(), study_id.hex(), query_id.hex(), 0)


def organization_public_keys(view: StateView, participants: Sequence[str]) -> dict[str, bytes]:
    keys = {}
    for organization_id in participants:
        organization = read_organization(view, organization_id)
        if organization is not None:
            keys[organization_id] = organization.encryption_key
    return keys


class StudyWorker:
    """Computes and keeps this organisation's contributions."""

    def __init__(
        self,
        records: RecordService,
        state_view: Callable[[], StateView],
        chain_id: bytes,
        settings: AnalyticsSection,
    ) -> None:
        self.records = records
        self.state_view = state_view
        self.chain_id = chain_id
        self.settings = settings
        self._waiting: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue(
            settings.max_queries_waiting
        )
        self._kept: OrderedDict[tuple[bytes, bytes], Contribution] = OrderedDict()
        self.failed = 0

    @property
    def organization_id(self) -> str | None:
        return self.records.organization_id

    def on_commit(self, block: Block, _ids: Sequence[bytes], results: list[TxResult]) -> None:
        """Queue each applied STUDY_QUERY of a study this organisation takes part in."""
        own = self.organization_id
        if own is None:
            return
        for raw, result in zip(block.txs, results, strict=True):
            if result.code != 0 or envelope.kind(raw) != TxKind.STUDY_QUERY:
                continue
            fields = decode_payload(TxKind.STUDY_QUERY, envelope.payload(raw))
            study = read_study(self.state_view(), fields["study_id"])
            if study is None or own not in study.participants:
                continue
            try:
                self._waiting.put_nowait((fields["study_id"], fields["query_id"]))
            except asyncio.QueueFull:
                self.failed += 1
                logger.error("study worker: %d queries waiting; dropped one", self._waiting.qsize())

    async def run(self) -> None:
        """Compute queued queries one at a time until cancelled; a failure is logged."""
        while True:
            study_id, query_id = await self._waiting.get()
            try:
                await self.compute(study_id, query_id)
            except Exception:  # one query's failure must not stop the worker
                self.failed += 1
                logger.exception("study worker: query %s failed", query_id.hex()[:16])

    def contribution(self, study_id: bytes, query_id: bytes) -> Contribution | None:
        return self._kept.get((study_id, query_id))

    async def compute(self, study_id: bytes, query_id: bytes) -> Contribution:
        """Compute once: a second noisy draw of the same query would let the sponsor average
        the noise away, spending more than the chain recorded."""
        kept = self._kept.get((study_id, query_id))
        if kept is not None:
            return kept
        view = self.state_view()
        study = read_study(view, study_id)
        query = find_query(view, study_id, query_id)
        if study is None or query is None:
            raise ValueError("the study or query is not in the committed state")
        spec = query_spec(query)
        values = await self.local_values(view, spec, query.height)
        exact = local_aggregate(spec, values.values())
        participants = len(study.participants)
        # OpenDP's calibration and sampling are CPU work: off the event loop.
        noisy = await asyncio.to_thread(lambda: add_noise(exact, noise_scales(spec, participants)))
        contribution = self._masked(view, study, query_id, noisy)
        self._keep(contribution)
        logger.info(
            "study %s query %s: contribution ready", study_id.hex()[:16], query_id.hex()[:16]
        )
        return contribution

    def _masked(
        self, view: StateView, study: Study, query_id: bytes, noisy: list[int]
    ) -> Contribution:
        own = self.organization_id
        organization_key = self.records.organization_key
        assert own is not None and organization_key is not None
        if len(study.participants) < MINIMUM_SURVIVORS_FLOOR:
            # Alone, the noisy aggregate is the released figure: nothing to hide it among.
            return Contribution(study.study_id, query_id, own, noisy, masked=False)
        masked = mask_contribution(
            noisy,
            own,
            list(study.participants),
            X25519PrivateKey.from_private_bytes(organization_key.private_key),
            organization_public_keys(view, study.participants),
            mask_context(self.chain_id, study.study_id, query_id),
        )
        return Contribution(study.study_id, query_id, own, masked, masked=True)

    def _keep(self, contribution: Contribution) -> None:
        self._kept[(contribution.study_id, contribution.query_id)] = contribution
        while len(self._kept) > self.settings.max_contributions_kept:
            self._kept.popitem(last=False)

    async def local_values(
        self, view: StateView, query: QuerySpec, query_height: int
    ) -> dict[bytes, int]:
        """One value per patient: the measure's most recent value in the custody records of
        this organisation's own patients who were opted in at `query_height` and still are.
        Records anchored after the query, erased or superseded are left out."""
        observations: list[Observation] = []
        scanned = 0
        after = b""
        while page := self.records.vault.iterate(after, VAULT_PAGE):
            after = page[-1].record_id
            for wrap in page:
                if scanned >= self.settings.max_records_per_query:
                    logger.error("study worker: stopped at %d records", scanned)
                    return latest_per_patient(observations)
                observation = await self._observation(view, wrap.record_id, query, query_height)
                scanned += 1
                if observation is not None:
                    observations.append(observation)
        return latest_per_patient(observations)

    async def _observation(
        self, view: StateView, record_id: bytes, query: QuerySpec, query_height: int
    ) -> Observation | None:
        record = read_record(view, record_id)
        if record is None or record.is_erased or record.height > query_height:
            return None
        patient = patient_member(view, record.patient_id)
        if patient is None or patient.organization_id != self.organization_id:
            return None  # each patient is counted once: by their own organisation
        if not (
            opted_in_at(view, record.patient_id, query_height)
            and opted_in_at(view, record.patient_id, U64_MAX)
        ):
            return None
        if record_amendments(view, record_id).status != "current":
            return None
        plaintext = await self.records.custody_plaintext(
            record_id, record.patient_id, cid_bytes_to_text(record.cid), record.ciphertext_sha256
        )
        resource = fhir_resource_of(plaintext) if plaintext is not None else None
        value = observation_of(resource, query.measure) if resource is not None else None
        return None if value is None else Observation(record.patient_id, value, record.height)
