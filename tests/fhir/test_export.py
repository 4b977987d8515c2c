"""The patient's export (`emrchain export --patient`) against a real node: every record of the
patient decrypted into the output directory, and a FHIR Bundle that validates with the R4B
models and holds every record, every grant (revoked ones too) and every access event of the
trail, the export's own reads included; nothing written anywhere else."""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path
from typing import Any

import pytest

from emrchain import cli
from emrchain.client.fhir_content import encode_resource
from emrchain.client.identity import PASSPHRASE_VARIABLE
from emrchain.client.rpc import EmrClient
from emrchain.schema import AmendmentReason, ErasureReason, RecordType
from tests.client.conftest import Cast, RealNode
from tests.client.test_commands import PASS, Keys
from tests.fhir.test_fhir_routes import OBSERVATION, run
from tests.fhir.validate import validated

BREAK_GLASS_REASON = "unconscious patient in the emergency room"


async def history_of(node: RealNode, cast: Cast, marker: str) -> dict[str, Any]:
    """Four records (a FHIR Observation and its correction, a binary file, one the patient
    erases), a record grant revoked, an organisation grant in force, a read under it and a
    break-glass."""
    observation = {**OBSERVATION, "note": [{"text": marker}]}
    scan = marker.encode() + b"\x00\x01\x02 not JSON, not FHIR"
    async with EmrClient(node.url, cast.clinician) as clinician:
        fhir_record = await clinician.store_fhir_resource(observation, cast.patient_id)
        binary = await clinician.put_record(scan, cast.patient_id, RecordType.IMAGING)
        doomed = await clinician.put_record(b"wrong patient", cast.patient_id, RecordType.OTHER)
        corrected = {**observation, "status": "corrected"}
        amended = await clinician.amend_record(
            encode_resource(corrected),
            cast.patient_id,
            RecordType.LAB_RESULT,
            fhir_record.record_id,
            AmendmentReason.CORRECTION,
        )
    async with EmrClient(node.url, cast.patient) as patient:
        revoked = await patient.grant(
            record_id=fhir_record.record_id, grantee_member=cast.outsider.member_key
        )
        await patient.revoke(revoked.tx_id)
        in_force = await patient.grant(
            patient_id=cast.patient_id, grantee_organization=node.clinic_b.organization_id
        )
        await patient.erase(doomed.record_id, ErasureReason.PATIENT_REQUEST)
    async with EmrClient(node.url, cast.outsider) as outsider:
        await outsider.get_record(binary.record_id)
        await outsider.break_glass(cast.patient_id, BREAK_GLASS_REASON, 60_000)
    return {
        "observation": observation,
        "corrected": corrected,
        "amended": amended.record_id.hex(),
        "scan": scan,
        "fhir_record": fhir_record.record_id.hex(),
        "binary": binary.record_id.hex(),
        "erased": doomed.record_id.hex(),
        "revoked": revoked.tx_id.hex(),
        "in_force": in_force.tx_id.hex(),
    }


def by_type(bundle: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        entry["resource"]["id"]: entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
        and entry["fullUrl"].startswith("urn:emrchain:" + resource_type)
    }


def test_the_patients_export_holds_every_record_and_every_access_event(
    real_node: RealNode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(PASSPHRASE_VARIABLE, PASS)
    cast = real_node.cast()
    marker = "EMRCHAIN-EXPORT-MARKER-" + secrets.token_hex(16)
    made = run(history_of(real_node, cast, marker))
    patient_hex = cast.patient_id.hex()

    async def trail() -> list[dict[str, Any]]:
        async with EmrClient(real_node.url, cast.auditor) as auditor:
            return [item async for item in auditor.all_access_events(patient_id=cast.patient_id)]

    before = run(trail())
    keys = Keys(real_node, cast, tmp_path)
    out = tmp_path / "export"
    status = cli.main(["export", "--patient", patient_hex, "--out", str(out), *keys("patient")])
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert "exported 3 of 4 records" in printed.out

    bundle = json.loads((out / "bundle.json").read_text())
    validated(bundle)  # the Bundle and every entry, with the R4B models
    assert bundle["type"] == "collection"

    async def index() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with EmrClient(real_node.url, cast.auditor) as auditor:
            records = [item async for item in auditor.all_patient_records(cast.patient_id)]
            consents = [item async for item in auditor.all_patient_consents(cast.patient_id)]
            return records, consents

    records, consents = run(index())
    after = run(trail())
    documents = by_type(bundle, "DocumentReference")
    assert (
        set(documents)
        == {item["record_id"] for item in records}
        == {made["fhir_record"], made["binary"], made["erased"], made["amended"]}
    )
    assert documents[made["fhir_record"]]["status"] == "superseded"
    assert documents[made["amended"]]["relatesTo"] == [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{made['fhir_record']}"}}
    ]
    assert set(by_type(bundle, "Provenance")) == set(documents)
    # Every access event of the trail, the export's own three reads included.
    assert set(by_type(bundle, "AuditEvent")) == {event["event_id"] for event in after}
    own_reads = [event for event in after if event not in before]
    assert sorted(event["record_id"] for event in own_reads) == sorted(
        [made["fhir_record"], made["binary"], made["amended"]]
    )
    assert all(event["basis"] == "patient" for event in own_reads)
    flagged = [
        event
        for event in by_type(bundle, "AuditEvent").values()
        if event["subtype"][0]["code"] == "break_glass"
    ]
    assert len(flagged) == 1 and flagged[0]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    # Every grant, the revoked one as inactive.
    consent_resources = by_type(bundle, "Consent")
    assert set(consent_resources) == {item["grant_id"] for item in consents}
    assert consent_resources[made["revoked"]]["status"] == "inactive"
    assert consent_resources[made["in_force"]]["status"] == "active"
    # The stored FHIR resource comes back as itself, in the Bundle and in its file.
    stored = [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["fullUrl"] == f"urn:emrchain:record:{made['fhir_record']}"
    ]
    assert stored == [made["observation"]]
    corrected = [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["fullUrl"] == f"urn:emrchain:record:{made['amended']}"
    ]
    assert corrected == [made["corrected"]]
    fhir_file = out / "records" / f"{made['fhir_record']}.json"
    assert json.loads(fhir_file.read_bytes()) == made["observation"]
    assert (out / "records" / f"{made['binary']}.bin").read_bytes() == made["scan"]
    attachment = documents[made["binary"]]["content"][0]["attachment"]
    assert attachment["url"] == f"records/{made['binary']}.bin"
    erased = documents[made["erased"]]
    assert (
        erased["status"] == "entered-in-error" and "url" not in erased["content"][0]["attachment"]
    )
    assert sorted(path.name for path in (out / "records").iterdir()) == sorted(
        [fhir_file.name, f"{made['binary']}.bin", f"{made['amended']}.json"]
    )
    # Private files only in the output directory; the plaintext nowhere else.
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(
        stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600)
        for path in out.rglob("*")
    )
    outside = [
        path
        for path in tmp_path.rglob("*")
        if path.is_file() and out not in path.parents and marker.encode() in path.read_bytes()
    ]
    assert outside == [] and real_node.files_containing(marker.encode()) == []
    # A second export never mixes with the first.
    status = cli.main(["export", "--patient", patient_hex, "--out", str(out), *keys("patient")])
    assert status == 1 and "not an empty directory" in capsys.readouterr().err
