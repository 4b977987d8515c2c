"""`SyncEmrClient`: a blocking facade over `EmrClient` for scripts and the command line.

It runs one `EmrClient` on a private event loop in a daemon thread and each method waits for
its coroutine there (`asyncio.run_coroutine_threadsafe`). Not `asyncio.run` per call, because
the client keeps state between calls that a fresh loop would throw away: its HTTP connection
pool (an aiohttp session belongs to one loop) and its local nonce counter, which is what lets
several transactions go out back to back. A private loop also works when the caller already
runs an event loop of its own (the caller's loop is blocked while it waits, never deadlocked).

Use it as a context manager, or call `close()`: that closes the session and stops the thread.
Calls from several threads are serialised by the loop; results are those of `EmrClient`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from emrchain.client.export import ExportSummary
from emrchain.client.identity import MemberIdentity
from emrchain.client.replies import Committed, RecordRead, StoredRecord, Verdict
from emrchain.client.rpc import DEFAULT_COMMIT_TIMEOUT_S, DEFAULT_TRAIL_LIMIT, EmrClient
from emrchain.schema import AmendmentReason, ErasureReason, RecordType, ReviewOutcome
from emrchain.types.transaction import Transaction

Result = TypeVar("Result")
THREAD_JOIN_TIMEOUT_S = 10.0


class SyncEmrClient:
    """The methods of `EmrClient`, blocking. See the module docstring for how it runs."""

    def __init__(
        self, base_url: str, identity: MemberIdentity, chain_id: bytes | None = None, **options: Any
    ) -> None:
        # Built here so a bad URL raises in the caller's thread before any thread starts.
        self._client = EmrClient(base_url, identity, chain_id, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="emrchain-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def client(self) -> EmrClient:
        return self._client

    def __enter__(self) -> SyncEmrClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, coroutine: Coroutine[Any, Any, Result]) -> Result:
        if self._closed:
            coroutine.close()
            raise RuntimeError("this SyncEmrClient is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._run(self._client.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(THREAD_JOIN_TIMEOUT_S)
            if not self._thread.is_alive():
                self._loop.close()

    def chain_id(self) -> bytes:
        return self._run(self._client.chain_id())

    def status(self) -> dict[str, Any]:
        return self._run(self._client.status())

    def account(self, member_key: bytes | None = None) -> dict[str, Any]:
        return self._run(self._client.account(member_key))

    def next_nonce(self) -> int:
        return self._run(self._client.next_nonce())

    def submit(self, tx: Transaction) -> Verdict:
        return self._run(self._client.submit(tx))

    def submit_batch(self, txs: list[Transaction]) -> list[Verdict]:
        return self._run(self._client.submit_batch(txs))

    def wait_committed(
        self, tx_id: bytes, timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S
    ) -> Committed:
        return self._run(self._client.wait_committed(tx_id, timeout_s))

    def submit_and_commit(self, tx: Transaction) -> Committed:
        return self._run(self._client.submit_and_commit(tx))

    def submit_and_wait(
        self, tx: Transaction, timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S
    ) -> Committed:
        return self._run(self._client.submit_and_wait(tx, timeout_s))

    def put_record(
        self,
        plaintext: bytes,
        patient_id: bytes,
        record_type: RecordType,
    ) -> StoredRecord:
        return self._run(self._client.put_record(plaintext, patient_id, record_type))

    def get_record(self, record_id: bytes) -> RecordRead:
        return self._run(self._client.get_record(record_id))

    def grant(self, **arguments: Any) -> Committed:
        """Keyword arguments as `EmrClient.grant`."""
        return self._run(self._client.grant(**arguments))

    def revoke(self, grant_id: bytes) -> Committed:
        return self._run(self._client.revoke(grant_id))

    def break_glass(
        self, patient_id: bytes, reason: str, duration_ms: int, record_id: bytes | None = None
    ) -> Committed:
        return self._run(self._client.break_glass(patient_id, reason, duration_ms, record_id))

    def erase(self, record_id: bytes, reason: ErasureReason) -> Committed:
        return self._run(self._client.erase(record_id, reason))

    def amend_record(
        self,
        plaintext: bytes,
        patient_id: bytes,
        record_type: RecordType,
        supersedes: bytes,
        reason: AmendmentReason,
        note: str = "",
    ) -> StoredRecord:
        return self._run(
            self._client.amend_record(plaintext, patient_id, record_type, supersedes, reason, note)
        )

    def record_history(self, record_id: bytes) -> dict[str, Any]:
        return self._run(self._client.record_history(record_id))

    def reviews(
        self, status: str | None = None, after: int | None = None, limit: int = 100
    ) -> dict[str, Any]:
        return self._run(self._client.reviews(status, after, limit))

    def review(self, review_id: bytes) -> dict[str, Any]:
        return self._run(self._client.review(review_id))

    def close_review(self, review_id: bytes, outcome: ReviewOutcome, note: str = "") -> Committed:
        return self._run(self._client.close_review(review_id, outcome, note))

    def grants(
        self, *, patient_id: bytes | None = None, record_id: bytes | None = None
    ) -> dict[str, Any]:
        return self._run(self._client.grants(patient_id=patient_id, record_id=record_id))

    def access_events(
        self,
        *,
        patient_id: bytes | None = None,
        record_id: bytes | None = None,
        limit: int = DEFAULT_TRAIL_LIMIT,
        before: str | None = None,
    ) -> dict[str, Any]:
        return self._run(
            self._client.access_events(
                patient_id=patient_id, record_id=record_id, limit=limit, before=before
            )
        )

    def fhir_read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self._run(self._client.fhir_read(resource_type, resource_id))

    def fhir_search(self, resource_type: str, **parameters: str) -> dict[str, Any]:
        return self._run(self._client.fhir_search(resource_type, **parameters))

    def fhir_metadata(self) -> dict[str, Any]:
        return self._run(self._client.fhir_metadata())

    def store_fhir_resource(
        self, resource: dict[str, Any], patient_id: bytes, record_type: RecordType | None = None
    ) -> StoredRecord:
        return self._run(self._client.store_fhir_resource(resource, patient_id, record_type))

    def read_fhir_resource(self, record_id: bytes) -> dict[str, Any]:
        return self._run(self._client.read_fhir_resource(record_id))

    def read_attachment(self, document_reference: dict[str, Any]) -> dict[str, Any]:
        return self._run(self._client.read_attachment(document_reference))

    def export_patient(self, patient_id: bytes, out_dir: Path) -> ExportSummary:
        return self._run(self._client.export_patient(patient_id, out_dir))

    def all_access_events(
        self, *, patient_id: bytes | None = None, record_id: bytes | None = None
    ) -> list[dict[str, Any]]:
        """The whole trail, newest first (every page, fetched before this returns)."""
        return self._run(
            _gathered(self._client.all_access_events(patient_id=patient_id, record_id=record_id))
        )

    def patient_records(
        self, patient_id: bytes, *, after: str | None = None, limit: int = DEFAULT_TRAIL_LIMIT
    ) -> dict[str, Any]:
        return self._run(self._client.patient_records(patient_id, after=after, limit=limit))

    def all_patient_records(self, patient_id: bytes) -> list[dict[str, Any]]:
        return self._run(_gathered(self._client.all_patient_records(patient_id)))

    def patient_consents(
        self, patient_id: bytes, *, after: str | None = None, limit: int = DEFAULT_TRAIL_LIMIT
    ) -> dict[str, Any]:
        return self._run(self._client.patient_consents(patient_id, after=after, limit=limit))

    def all_patient_consents(self, patient_id: bytes) -> list[dict[str, Any]]:
        return self._run(_gathered(self._client.all_patient_consents(patient_id)))

    def shared_with_me(
        self, *, after: str | None = None, limit: int = DEFAULT_TRAIL_LIMIT
    ) -> dict[str, Any]:
        return self._run(self._client.shared_with_me(after=after, limit=limit))

    def all_shared_with_me(self) -> list[dict[str, Any]]:
        return self._run(_gathered(self._client.all_shared_with_me()))


async def _gathered(items: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item async for item in items]
