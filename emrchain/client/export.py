"""The patient's export (`emrchain export --patient`): every record decrypted, and a FHIR
Bundle describing them and their access trail, the accounting of disclosures.

Runs on the patient's machine with the patient's key. It lists the patient's records
(`GET /patients/{id}/records`), reads each through the node — each read is an ACCESS_EVENT on
the ledger, as for any read, so the export is itself accounted for —, decrypts it here, and
writes the plaintext to `<out>/records/<record id>.json` (a FHIR resource) or `.bin`. Then it
lists the patient's consents (revoked ones too, `GET /patients/{id}/consents`) and the whole
access trail (`GET /patients/{id}/access-events`, paged with `before`), after its own reads,
and writes `<out>/bundle.json`: a collection Bundle with the Patient, a DocumentReference
(attachment: the exported file) and a Provenance per record, each stored FHIR resource as
itself, a Consent per grant and an AuditEvent per access event (`emrchain/fhir`). Nothing is
written outside `out_dir`; every file is created new, mode 0600, in a directory of mode 0700.
`collect_export` builds the same files in memory: the portal serves them as one download.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emrchain.client.fhir_content import fhir_resource_of
from emrchain.client.replies import EmrClientError
from emrchain.fhir import resources

if TYPE_CHECKING:
    from emrchain.client.rpc import EmrClient

RECORDS_DIRECTORY = "records"
BUNDLE_FILE = "bundle.json"


@dataclass(frozen=True, slots=True)
class ExportSummary:
    out_dir: Path
    bundle_path: Path
    records: int
    """Records of the patient the node listed (erased ones included, as tombstones)."""
    files: tuple[Path, ...]
    """The decrypted records written."""
    fhir_resources: int
    """How many of them hold a FHIR resource (returned in the Bundle as themselves)."""
    consents: int
    access_events: int
    failures: dict[str, str] = field(default_factory=dict)
    """Record id → why it could not be read (its DocumentReference has no attachment)."""


def _private_directory(path: Path) -> None:
    """`path` and its parents, the leaf mode 0700; an existing leaf must be empty: an export
    never mixes with, nor overwrites, what is there."""
    if path.exists():
        if not path.is_dir() or any(path.iterdir()):
            raise FileExistsError(f"{path} exists and is not an empty directory")
        path.chmod(0o700)
        return
    path.mkdir(parents=True, mode=0o700)
    path.chmod(0o700)


def _write_new(path: Path, data: bytes) -> None:
    """A new file, mode 0600 from its creation (never readable by others, even briefly)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


async def _amendments(client: EmrClient, record_hex: str) -> dict[str, Any]:
    """The record's amendment status and what it supersedes (`GET /records/{id}/history`),
    for its DocumentReference; nothing when the node cannot say."""
    try:
        history = await client.record_history(bytes.fromhex(record_hex))
    except EmrClientError:
        return {}
    return {"status": history.get("status"), "supersedes": history.get("supersedes", [])}


@dataclass(frozen=True, slots=True)
class ExportContents:
    """The export in memory (the portal serves it as a download without touching the disk)."""

    files: dict[str, bytes]
    """Path inside the export (`records/<id>.json|.bin`, `bundle.json`) → content."""
    records: int
    fhir_resources: int
    consents: int
    access_events: int
    failures: dict[str, str] = field(default_factory=dict)


async def export_patient(client: EmrClient, patient_id: bytes, out_dir: Path) -> ExportSummary:
    _private_directory(out_dir)
    (out_dir / RECORDS_DIRECTORY).mkdir(mode=0o700)
    contents = await collect_export(client, patient_id)
    for name, data in contents.files.items():
        _write_new(out_dir / name, data)
    return ExportSummary(
        out_dir=out_dir,
        bundle_path=out_dir / BUNDLE_FILE,
        records=contents.records,
        files=tuple(out_dir / name for name in contents.files if name != BUNDLE_FILE),
        fhir_resources=contents.fhir_resources,
        consents=contents.consents,
        access_events=contents.access_events,
        failures=contents.failures,
    )


async def collect_export(client: EmrClient, patient_id: bytes) -> ExportContents:
    """Read and decrypt every record of the patient and build the Bundle, in memory."""
    patient_hex = patient_id.hex()
    anchors = [item async for item in client.all_patient_records(patient_id)]
    entries: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    failures: dict[str, str] = {}
    stored: list[dict[str, Any]] = []
    for anchor in anchors:
        record_hex = str(anchor["record_id"])
        attachment: str | None = None
        if not anchor.get("erased"):
            try:
                read = await client.get_record(bytes.fromhex(record_hex))
            except EmrClientError as error:
                failures[record_hex] = str(error)
            else:
                resource = fhir_resource_of(read.plaintext)
                name = f"{record_hex}.json" if resource is not None else f"{record_hex}.bin"
                attachment = f"{RECORDS_DIRECTORY}/{name}"
                files[attachment] = read.plaintext
                if resource is not None:
                    stored.append({"record_id": record_hex, "resource": resource})
        described = {**anchor, **await _amendments(client, record_hex)}
        entries.append(resources.document_reference(described, attachment, patient_id=patient_hex))
        entries.append(resources.provenance(described))
    consents = [item async for item in client.all_patient_consents(patient_id)]
    # Listed after the reads: the trail holds the export's own reads.
    events = [item async for item in client.all_access_events(patient_id=patient_id)]
    now_ms = time.time_ns() // 1_000_000
    account = await client.account()
    member = account.get("member") or {}
    bundle_entries = [
        (
            f"urn:emrchain:Patient:{patient_hex}",
            resources.patient(patient_hex, organization_id=member.get("organization_id")),
        ),
        *((resources.full_url(entry), entry) for entry in entries),
        *((f"urn:emrchain:record:{item['record_id']}", item["resource"]) for item in stored),
        *(
            (resources.full_url(mapped), mapped)
            for mapped in (
                resources.consent(grant, now_ms, patient_id=patient_hex) for grant in consents
            )
        ),
        *(
            (resources.full_url(mapped), mapped)
            for mapped in (resources.audit_event(event) for event in events)
        ),
    ]
    bundle = resources.collection(bundle_entries, f"export-{patient_hex[:16]}-{now_ms}", now_ms)
    files[BUNDLE_FILE] = json.dumps(bundle, indent=1, ensure_ascii=False).encode("utf-8")
    return ExportContents(
        files=files,
        records=len(anchors),
        fhir_resources=len(stored),
        consents=len(consents),
        access_events=len(events),
        failures=failures,
    )
