"""The `emrchain fhir` commands against a real node (in process, through the CLI's main)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emrchain import cli
from emrchain.client.identity import PASSPHRASE_VARIABLE
from tests.client.conftest import RealNode
from tests.client.test_commands import PASS, Keys
from tests.fhir.test_fhir_routes import OBSERVATION
from tests.fhir.validate import validated


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_fhir_put_get_read_and_search(
    real_node: RealNode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(PASSPHRASE_VARIABLE, PASS)
    cast = real_node.cast()
    keys = Keys(real_node, cast, tmp_path)
    patient_hex = cast.patient_id.hex()
    resource_file = tmp_path / "observation.json"
    resource_file.write_text(json.dumps(OBSERVATION))

    status, out, err = main(
        capsys, "fhir", "put", str(resource_file), "--patient", patient_hex, *keys("clinician")
    )
    assert status == 0, err
    record_hex = out.split()[1]
    status, out, err = main(capsys, "fhir", "get", record_hex, *keys("patient"))
    assert status == 0, err
    assert json.loads(out) == OBSERVATION
    status, out, err = main(
        capsys, "fhir", "read", "DocumentReference", record_hex, *keys("patient")
    )
    assert status == 0, err
    assert validated(json.loads(out)).id == record_hex
    status, out, err = main(
        capsys,
        "fhir",
        "search",
        "AuditEvent",
        f"patient={patient_hex}",
        "_count=1",
        *keys("auditor"),
    )
    assert status == 0, err
    bundle = json.loads(out)
    validated(bundle)
    assert len(bundle["entry"]) == 1 and bundle["total"] == 1  # the patient's read

    # Refusals: one line each, exit 1 (the node's) or 2 (the arguments).
    status, _, err = main(
        capsys, "fhir", "search", "Consent", "name=x", f"patient={patient_hex}", *keys("patient")
    )
    assert status == 1 and "HTTP 400 bad_search" in err and len(err.strip().splitlines()) == 1
    status, _, err = main(
        capsys, "fhir", "search", "Consent", f"patient={patient_hex}", *keys("outsider")
    )
    assert status == 1 and "HTTP 404 not_found" in err
    not_fhir = tmp_path / "note.json"
    not_fhir.write_text('{"note": "no resourceType"}')
    status, _, err = main(
        capsys, "fhir", "put", str(not_fhir), "--patient", patient_hex, *keys("clinician")
    )
    assert status == 1 and "resourceType" in err
    status, _, err = main(capsys, "fhir", "read", "document-reference", "x", *keys("patient"))
    assert status == 2 and "not a FHIR resource type" in err
    status, _, err = main(capsys, "fhir", "search", "Consent", "novalue", *keys("patient"))
    assert status == 2 and "NAME=VALUE" in err
