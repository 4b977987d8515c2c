"""Client commands: one-line usage errors (exit 2), one-line runtime errors (exit 1), and every
command run as `python -m emrchain.cli` against a real node (tests/client/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from emrchain import cli
from emrchain.client.identity import (
    PASSPHRASE_VARIABLE,
    MemberIdentity,
    load_identity,
)
from emrchain.client.sync import SyncEmrClient
from emrchain.keystore.member import write_member_identity
from emrchain.keystore.sealed import MIN_LOG2_N
from emrchain.schema import RecordType, Role
from tests.client.conftest import Cast, RealNode

ID = "ab" * 32
AMEND = ["record", "amend", "f", "--supersedes", ID, "--patient", ID, "--type", "lab_result"]
"""A `record amend` command line without its reason: `[*AMEND[:5], <reason...>, *AMEND[5:]]`."""
PROPOSE = ["study", "propose", "--purpose", "p", "--participant", "a", "--query-types", "count"]
PASS = "a member key passphrase"
FAST = {"scrypt_log2_n": MIN_LOG2_N}  # the lowest cost the format accepts: fast tests


@pytest.fixture(autouse=True)
def passphrase_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands read the key files' passphrase from the environment."""
    monkeypatch.setenv(PASSPHRASE_VARIABLE, PASS)


COMMAND_TIMEOUT_S = 60.0


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:  # argparse exits for usage errors
        status = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line(err: str, command: str) -> None:
    assert err.startswith(f"emrchain {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("argv", "command", "says"),
    [
        (["keys", "new"], "keys new", "--out"),
        (
            ["record", "put", "f", "--patient", "zz", "--type", "lab_result", "--custody-key", ID],
            "record put",
            "patient id must be 64 hex characters",
        ),
        (
            ["record", "put", "f", "--patient", ID, "--type", "blood", "--custody-key", ID],
            "record put",
            "invalid choice",
        ),
        (["record", "get", ID, "--out", "x", "--rpc", "http://node:1/api"], "record get", "path"),
        (
            ["grant", "--record", ID, "--patient", ID, "--to-member", ID],
            "grant",
            "not allowed with argument",
        ),
        (["grant", "--record", ID], "grant", "one of the arguments --to-member"),
        (["grant", "--record", ID, "--to-organization", "Hospital B"], "grant", "a-z 0-9"),
        (
            ["grant", "--record", ID, "--to-organization", "hospital-1"],
            "grant",
            "needs --grantee-encryption-key",
        ),
        (["grant", "--patient", ID, "--to-member", ID, "--expires-ms", "-5"], "grant", "integer"),
        (["revoke", "00" * 32], "revoke", "must not be all zeros"),
        (["audit"], "audit", "one of the arguments --record --patient is required"),
        (
            ["break-glass", "--patient", ID, "--reason", "short", "--duration-ms", "10"],
            "break-glass",
            "must be 8..512 bytes, got 5",
        ),
        (
            [
                "break-glass",
                "--patient",
                ID,
                "--reason",
                "unconscious",
                "--duration-ms",
                "86400001",
            ],
            "break-glass",
            "1..86400000",
        ),
        (["erase", ID, "--reason", "because"], "erase", "invalid choice"),
        (
            [*AMEND[:5], "--reason", "typo", *AMEND[5:]],
            "record amend",
            "invalid choice",
        ),
        (
            [*AMEND[:5], "--reason", "addendum", "--note", "x" * 257, *AMEND[5:]],
            "record amend",
            "at most 256 bytes, got 257",
        ),
        (["reviews", "close", ID, "--outcome", "fine"], "reviews close", "invalid choice"),
        (["reviews", "list", "--status", "pending"], "reviews list", "invalid choice"),
        (["reviews", "list", "--limit", "0"], "reviews list", "1..1000"),
        ([*PROPOSE, "--epsilon", "x", "--delta", "0"], "study propose", "must be a number"),
        (["study", "query", ID, "--type", "median"], "study query", "invalid choice"),
        (["research-consent", "--opt-in", "--opt-out"], "research-consent", "not allowed"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], command: str, says: str
) -> None:
    key = ["--key", str(tmp_path / "key.json")] if argv[0] != "keys" else []
    status, out, err = run(capsys, *argv, *key)
    assert status == 2 and out == ""
    assert_one_line(err, command)
    assert says in err


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "clinician.json"
    identity = MemberIdentity.from_seed(hashlib.sha256(b"cli clinician").digest())
    write_member_identity(path, identity, PASS, **FAST)
    return path


def test_runtime_errors_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    status, _, err = run(capsys, "revoke", ID, "--key", str(tmp_path / "missing.json"))
    assert status == 1 and "key file not found" in err
    assert_one_line(err, "revoke")
    key_file.chmod(0o644)
    status, _, err = run(capsys, "revoke", ID, "--key", str(key_file))
    assert status == 1 and "mode" in err
    key_file.chmod(0o600)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    status, _, err = run(capsys, "revoke", ID, "--key", str(key_file), "--rpc", closed)
    assert status == 1 and "cannot reach" in err
    assert_one_line(err, "revoke")


# ---- the commands as a person runs them, against the real node -----------------------------


def emrchain(*argv: str, cwd: Path, passphrase: str | None = PASS) -> tuple[int, str, str]:
    """`python -m emrchain.cli ARGV` in its own process (stdin not a terminal, the member key
    passphrase in the environment unless None): (exit status, stdout, stderr)."""
    environment = {k: v for k, v in os.environ.items() if k != PASSPHRASE_VARIABLE}
    if passphrase is not None:
        environment[PASSPHRASE_VARIABLE] = passphrase
    done = subprocess.run(
        [sys.executable, "-m", "emrchain.cli", *argv],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout, done.stderr


class Keys:
    """The cast's identities as key files, and the connection arguments for each."""

    def __init__(self, node: RealNode, cast: Cast, directory: Path) -> None:
        self.url = node.url
        self.directory = directory
        for name in ("clinician", "patient", "auditor", "outsider"):
            write_member_identity(directory / f"{name}.json", getattr(cast, name), PASS, **FAST)

    def __call__(self, name: str) -> list[str]:
        return ["--rpc", self.url, "--key", str(self.directory / f"{name}.json")]


def store(node: RealNode, cast: Cast, plaintext: bytes) -> bytes:
    """The cast's clinician stores a record through the library (set-up, not under test)."""
    with SyncEmrClient(node.url, cast.clinician) as client:
        stored = client.put_record(
            plaintext, cast.patient_id, RecordType.LAB_RESULT)
    return stored.record_id


def test_keys_new_then_registered_and_used(real_node: RealNode, tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    # Without a passphrase (no terminal, nothing in the environment) nothing is written.
    status, _, err = emrchain("keys", "new", "--out", str(path), cwd=tmp_path, passphrase=None)
    assert status == 1 and PASSPHRASE_VARIABLE in err and not path.exists()
    assert_one_line(err, "keys new")
    status, out, err = emrchain("keys", "new", "--out", str(path), cwd=tmp_path, passphrase=PASS)
    assert status == 0, err
    assert "(encrypted)" in out and json.loads(path.read_text())["type"].endswith("-encrypted")
    identity = load_identity(path, PASS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert identity.member_key.hex() in out and identity.encryption_public_key.hex() in out
    status, _, err = emrchain("keys", "new", "--out", str(path), cwd=tmp_path, passphrase=PASS)
    assert status == 1 and "refusing to replace" in err
    assert_one_line(err, "keys new")
    assert load_identity(path, PASS).member_key == identity.member_key  # the first survives
    status, _, err = emrchain(
        "audit", "--patient", ID, "--rpc", real_node.url, "--key", str(path), cwd=tmp_path,
        passphrase="a wrong passphrase",
    )  # fmt: skip
    assert status == 1 and "wrong passphrase" in err

    # The admin registers the new key as a patient; the patient lists its own (empty) trail.
    patient_id = secrets.token_bytes(32)
    real_node.register((identity, Role.PATIENT, patient_id))
    status, out, err = emrchain(
        "audit", "--patient", patient_id.hex(), "--rpc", real_node.url, "--key", str(path),
        cwd=tmp_path, passphrase=PASS,
    )  # fmt: skip
    assert status == 0, err
    assert json.loads(out) == {"events": [], "total": 0, "dropped": 0, "next": None}


def test_keys_plain_and_encrypt(tmp_path: Path) -> None:
    plain, encrypted = tmp_path / "plain.json", tmp_path / "encrypted.json"
    status, out, err = emrchain("keys", "new", "--out", str(plain), "--plain", cwd=tmp_path)
    assert status == 0 and "(encrypted)" not in out, err
    assert "seed" in json.loads(plain.read_text())
    status, out, err = emrchain(
        "keys", "encrypt", "--key", str(plain), "--out", str(encrypted), cwd=tmp_path,
        passphrase=PASS,
    )  # fmt: skip
    assert status == 0 and "(encrypted)" in out, err
    assert load_identity(encrypted, PASS).signer.seed == load_identity(plain).signer.seed


def test_record_put_get_audit_and_erase_through_the_commands(
    capsys: pytest.CaptureFixture[str], real_node: RealNode, tmp_path: Path
) -> None:
    cast = real_node.cast()
    keys = Keys(real_node, cast, tmp_path)
    marker = b"EMRCHAIN-CLI-MARKER-" + secrets.token_hex(16).encode()
    plaintext = tmp_path / "lab.txt"
    plaintext.write_bytes(marker + b" potassium 4.1 mmol/l")
    status, out, err = emrchain(
        "record", "put", str(plaintext), "--patient", cast.patient_id.hex(),
        "--type", "lab_result", *keys("clinician"),
        cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    assert out.startswith("record ") and "anchored at height" in out
    record_id = out.split()[1]

    out_file = tmp_path / "read.txt"
    status, out, err = emrchain(
        "record", "get", record_id, "--out", str(out_file), *keys("clinician"), cwd=tmp_path
    )
    assert status == 0, err
    assert out_file.read_bytes() == plaintext.read_bytes()
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    # Checked before any request (in process: no node involved).
    status, _, err = run(
        capsys, "record", "get", record_id, "--out", str(out_file), *keys("clinician")
    )
    assert status == 1 and "refusing to overwrite" in err
    assert_one_line(err, "record get")
    # The plaintext reached no file of the node; what the node wrote for the record is there.
    assert real_node.files_containing(marker) == []
    assert real_node.files_containing(bytes.fromhex(record_id)) != []

    status, out, err = emrchain("audit", "--record", record_id, *keys("patient"), cwd=tmp_path)
    assert status == 0, err
    trail = json.loads(out)
    assert [(event["actor"], event["basis"]) for event in trail["events"]] == [
        (cast.clinician.member_key.hex(), "author")
    ]

    status, out, err = emrchain(
        "erase", record_id, "--reason", "patient_request", *keys("patient"), cwd=tmp_path
    )
    assert status == 0 and f"record {record_id} erased at height" in out, err
    status, _, err = emrchain(
        "record", "get", record_id, "--out", str(tmp_path / "gone.txt"), *keys("patient"),
        cwd=tmp_path,
    )  # fmt: skip
    assert status == 1 and "HTTP 410 erased" in err
    assert_one_line(err, "record get")
    assert not (tmp_path / "gone.txt").exists()


def test_a_refusal_by_the_node_is_one_line_with_status_and_code(
    real_node: RealNode, tmp_path: Path
) -> None:
    keys = Keys(real_node, real_node.cast(), tmp_path)
    out_file = tmp_path / "x"
    status, _, err = emrchain(
        "record", "get", ID, "--out", str(out_file), *keys("clinician"), cwd=tmp_path
    )
    assert status == 1
    assert_one_line(err, "record get")
    assert "HTTP 404 not_found" in err
    assert not out_file.exists()


def test_grant_and_revoke_through_the_commands(real_node: RealNode, tmp_path: Path) -> None:
    cast = real_node.cast()
    keys = Keys(real_node, cast, tmp_path)
    record_id = store(real_node, cast, b"discharged in good health")
    status, out, err = emrchain(
        "grant", "--record", record_id.hex(), "--to-member", cast.outsider.member_key.hex(),
        *keys("patient"), cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    grant_id = out.split()[1]
    with SyncEmrClient(real_node.url, cast.auditor) as auditor:
        listed = auditor.grants(record_id=record_id)["grants"]
        assert [grant["grant_id"] for grant in listed] == [grant_id]
        with SyncEmrClient(real_node.url, cast.outsider) as outsider:
            assert outsider.get_record(record_id).plaintext == b"discharged in good health"

        status, out, err = emrchain("revoke", grant_id, *keys("patient"), cwd=tmp_path)
        assert status == 0 and f"grant {grant_id} revoked" in out, err
        assert auditor.grants(record_id=record_id)["grants"] == []
    out_file = tmp_path / "after.txt"
    status, _, err = emrchain(
        "record", "get", record_id.hex(), "--out", str(out_file), *keys("outsider"),
        cwd=tmp_path,
    )  # fmt: skip
    assert status == 1 and "HTTP 404 not_found" in err
    assert_one_line(err, "record get")
    assert not out_file.exists()

    stranger = MemberIdentity.generate().member_key.hex()
    status, _, err = emrchain(
        "grant", "--record", record_id.hex(), "--to-member", stranger, *keys("patient"),
        cwd=tmp_path,
    )  # fmt: skip
    assert status == 1 and f"grantee {stranger} is not a member" in err
    assert_one_line(err, "grant")


def test_break_glass_through_the_commands(real_node: RealNode, tmp_path: Path) -> None:
    cast = real_node.cast()
    keys = Keys(real_node, cast, tmp_path)
    record_id = store(real_node, cast, b"allergic to penicillin")
    reason = "unconscious patient in the emergency room"
    status, out, err = emrchain(
        "break-glass", "--patient", cast.patient_id.hex(), "--reason", reason,
        "--duration-ms", "600000", *keys("outsider"), cwd=tmp_path,
    )  # fmt: skip
    assert status == 0 and "open for 600000 ms, flagged" in out, err
    with SyncEmrClient(real_node.url, cast.outsider) as outsider:
        assert outsider.get_record(record_id).plaintext == b"allergic to penicillin"
    with SyncEmrClient(real_node.url, cast.auditor) as auditor:
        events = auditor.access_events(patient_id=cast.patient_id)["events"]
    assert [(event["kind"], event["basis"]) for event in events] == [
        ("access", "break_glass"),
        ("break_glass", "break_glass"),
    ]
    assert events[1]["reason"] == reason
    assert all(event["flagged_for_review"] for event in events)


def test_records_consents_and_paged_audit_through_the_commands(
    real_node: RealNode, tmp_path: Path
) -> None:
    cast = real_node.cast()
    keys = Keys(real_node, cast, tmp_path)
    record_ids = [store(real_node, cast, b"visit %d" % number).hex() for number in range(2)]
    patient = ["--patient", cast.patient_id.hex()]

    status, out, err = emrchain("records", *patient, "--limit", "1", *keys("patient"), cwd=tmp_path)
    assert status == 0, err
    first = json.loads(out)
    assert [record["record_id"] for record in first["records"]] == record_ids[:1]
    status, out, err = emrchain(
        "records", *patient, "--after", first["next"], *keys("patient"), cwd=tmp_path
    )
    assert status == 0, err
    second = json.loads(out)
    assert [record["record_id"] for record in second["records"]] == record_ids[1:]
    assert second["next"] is None
    status, out, err = emrchain("records", *patient, "--all", *keys("auditor"), cwd=tmp_path)
    assert status == 0, err
    assert [record["record_id"] for record in json.loads(out)["records"]] == record_ids
    # Another organisation's clinician, without the patient's consent, lists nothing.
    status, _, err = emrchain("records", *patient, *keys("outsider"), cwd=tmp_path)
    assert status == 1 and "HTTP 404 not_found" in err
    assert_one_line(err, "records")
    # A cursor edited by hand.
    status, _, err = emrchain(
        "records", *patient, "--after", "5" + first["next"], *keys("patient"), cwd=tmp_path
    )
    assert status == 1 and "HTTP 400 bad_cursor" in err

    status, out, err = emrchain(
        "grant", *patient, "--to-member", cast.outsider.member_key.hex(), *keys("patient"),
        cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    grant_id = out.split()[1]
    status, out, err = emrchain("records", *patient, *keys("outsider"), cwd=tmp_path)
    assert status == 0 and len(json.loads(out)["records"]) == 2, err
    status, out, err = emrchain("revoke", grant_id, *keys("patient"), cwd=tmp_path)
    assert status == 0, err
    status, out, err = emrchain("consents", *patient, "--all", *keys("patient"), cwd=tmp_path)
    assert status == 0, err
    [consent] = json.loads(out)["consents"]
    assert (consent["grant_id"], consent["status"]) == (grant_id, "revoked")
    assert consent["revoked_height"] > consent["granted_height"]

    with SyncEmrClient(real_node.url, cast.patient) as owner:
        for record_id in record_ids:
            owner.get_record(bytes.fromhex(record_id))
    status, out, err = emrchain("audit", *patient, "--limit", "1", *keys("patient"), cwd=tmp_path)
    assert status == 0, err
    newest = json.loads(out)
    assert len(newest["events"]) == 1 and newest["next"] is not None
    status, out, err = emrchain("audit", *patient, "--all", *keys("patient"), cwd=tmp_path)
    assert status == 0, err
    every = json.loads(out)["events"]
    assert every[0] == newest["events"][0]
    assert [event["record_id"] for event in every] == list(reversed(record_ids))


def test_amend_history_and_review_closing_through_the_commands(
    real_node: RealNode, tmp_path: Path
) -> None:
    cast = real_node.cast()
    keys = Keys(real_node, cast, tmp_path)
    record_id = store(real_node, cast, b"haemoglobin 139 g/dL")
    corrected = tmp_path / "corrected.txt"
    corrected.write_bytes(b"haemoglobin 13.9 g/dL")
    status, out, err = emrchain(
        "record", "amend", str(corrected), "--supersedes", record_id.hex(),
        "--reason", "correction", "--note", "unit", "--patient", cast.patient_id.hex(),
        "--type", "lab_result", *keys("clinician"), cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    assert out.startswith(f"correction of {record_id.hex()}\nrecord "), out
    new_id = out.splitlines()[1].split()[1]
    status, out, err = emrchain(
        "record", "history", record_id.hex(), *keys("patient"), cwd=tmp_path
    )
    assert status == 0, err
    history = json.loads(out)
    assert history["status"] == "superseded"
    assert [(item["record_id"], item["note"]) for item in history["superseded_by"]] == [
        (new_id, "unit")
    ]
    # The patient cannot list the review queue; the auditor lists, closes, sees it closed.
    status, out, err = emrchain(
        "break-glass", "--patient", cast.patient_id.hex(), "--reason", "found unconscious",
        "--duration-ms", "60000", *keys("outsider"), cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    review_id = out.split()[1]
    status, _, err = emrchain("reviews", "list", *keys("patient"), cwd=tmp_path)
    assert status == 1 and "role_not_permitted" in err
    status, out, err = emrchain(
        "reviews", "list", "--status", "open", *keys("auditor"), cwd=tmp_path
    )
    assert status == 0 and review_id in [r["review_id"] for r in json.loads(out)["reviews"]], err
    status, out, err = emrchain(
        "reviews", "close", review_id, "--outcome", "needs-follow-up", "--note", "ask the ward",
        *keys("auditor"), cwd=tmp_path,
    )  # fmt: skip
    assert status == 0 and "closed (needs-follow-up)" in out, err
    status, out, err = emrchain("reviews", "show", review_id, *keys("auditor"), cwd=tmp_path)
    assert status == 0, err
    shown = json.loads(out)
    assert (shown["status"], shown["outcome"], shown["note"]) == (
        "closed",
        "needs_follow_up",
        "ask the ward",
    )


def test_a_study_through_the_commands(real_node: RealNode, tmp_path: Path) -> None:
    """A one-hospital study (its contribution is not masked: nothing to hide it among), from
    the patient's opt-in to the refused overspending query."""
    cast = real_node.cast()
    keys = Keys(real_node, cast, tmp_path)
    write_member_identity(tmp_path / "admin.json", real_node.hospital.admin, PASS, **FAST)
    admin = ["--rpc", real_node.url, "--key", str(tmp_path / "admin.json")]
    organization = real_node.hospital.organization_id
    status, out, err = emrchain("research-consent", "--opt-in", *keys("patient"), cwd=tmp_path)
    assert status == 0 and "opted in" in out, err
    with SyncEmrClient(real_node.url, cast.clinician) as client:
        client.store_fhir_resource(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                "valueQuantity": {"value": 6.8, "unit": "%"},
            },
            cast.patient_id,
        )
    status, out, err = emrchain(
        "study", "propose", "--purpose", "HbA1c", "--participant", organization,
        "--query-types", "count", "mean", "--epsilon", "2", "--delta", "1e-6",
        *keys("clinician"), cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    study_id = out.split()[1]
    status, _, err = emrchain("study", "approve", study_id, *keys("clinician"), cwd=tmp_path)
    assert status == 1 and "ROLE_NOT_PERMITTED" in err, err
    status, out, err = emrchain("study", "approve", study_id, *admin, cwd=tmp_path)
    assert status == 0, err
    query = ["--node", f"{organization}={real_node.url}", "--delta", "1e-7"]
    status, out, err = emrchain(
        "study", "query", study_id, "--type", "mean", "--measure", "4548-4", "--upper", "15",
        "--epsilon", "1.5", *query, *keys("clinician"), cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, err
    released = json.loads(out)
    assert set(released["figures"]) == {"sum", "count", "mean"}
    status, _, err = emrchain(
        "study", "query", study_id, "--type", "count", "--measure", "4548-4",
        "--epsilon", "0.6", *query, *keys("clinician"), cwd=tmp_path,
    )  # fmt: skip
    assert status == 1 and "PRIVACY_BUDGET_EXCEEDED" in err, err
    assert_one_line(err, "study")
    status, out, err = emrchain("study", "status", study_id, *keys("auditor"), cwd=tmp_path)
    assert status == 0, err
    shown = json.loads(out)
    assert shown["epsilon_spent"] == 1_500_000 and shown["epsilon_left"] == 500_000
    assert [query["result_sha256"] for query in shown["queries"]] == [released["result_sha256"]]
    status, out, err = emrchain("study", "close", study_id, *admin, cwd=tmp_path)
    assert status == 0, err
