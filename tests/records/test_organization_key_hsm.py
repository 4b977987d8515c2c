"""The organisation key sealed under the HSM KEK (`kek_backend = "hsm"`), on real SoftHSM2.

The plain file is refused in one line naming the command that seals it; the command seals it
and wipes the plain bytes; the node unseals it at start (one `unwrap` in the HSM operation log)
and opens clients' custody wraps with it; a KEK rotation re-seals it before destroying the old
version; another token cannot open it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from nacl.public import PrivateKey, SealedBox

from emrchain.cli import main as cli_main
from emrchain.hsm import HsmKeyRing, HsmWorker
from emrchain.hsm.operation_log import OPERATIONS_LOGGER_NAME
from emrchain.keystore import KeystoreError
from emrchain.keystore.member import load_organization_key
from emrchain.records import open_record_service
from emrchain.records.key_rings import HsmCustodyKeyRing
from emrchain.records.organization_key import (
    SEALED_ORGANIZATION_TYPE,
    load_node_organization_key,
    seal_organization_key_file,
)
from tests.hsm.test_operation_log import records
from tests.records.homes import configure_home, hsm_settings, single_node_home
from tests.services.fixtures import run


def hsm_home(root: Path, token, prefix: str):  # type: ignore[no-untyped-def]
    home = single_node_home(root)
    config = configure_home(
        home, records={"kek_backend": "hsm", "hsm_kek_label_prefix": prefix, **hsm_settings(token)}
    )
    return home, config


def test_plain_file_refused_then_sealed_by_the_cli_unsealed_at_start_and_logged(
    tmp_path: Path, softhsm_token, hsm_worker, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    home, config = hsm_home(tmp_path / "net", softhsm_token, "kek-org-seal")
    path = config.organization_key_path
    plain = load_organization_key(path)

    with pytest.raises(KeystoreError) as refused:
        open_record_service(config)
    message = str(refused.value)
    assert "\n" not in message and "refused" in message
    assert f"emrchain seal-organization-key --home {home}" in message
    assert cli_main(["start", "--home", str(home)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "emrchain seal-organization-key --home" in error

    assert cli_main(["seal-organization-key", "--home", str(home)]) == 0
    document = json.loads(path.read_text())
    assert document["type"] == SEALED_ORGANIZATION_TYPE and document["kek_version"] == 1
    assert plain.private_key.hex() not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not path.with_name(f".{path.name}.sealed").exists()
    assert cli_main(["seal-organization-key", "--home", str(home)]) == 1  # already sealed
    assert "already sealed" in capsys.readouterr().err

    caplog.clear()
    with caplog.at_level("INFO", logger=OPERATIONS_LOGGER_NAME):
        service = open_record_service(config)
    assert service.organization_key == plain
    unseals = [r for r in records(caplog) if "unseal_organization_key" in r["caller"]]
    assert [(r["operation"], r["label"], r["result"]) for r in unseals] == [
        ("unwrap", "kek-org-seal-v1", "ok")
    ]
    assert plain.private_key.hex() not in caplog.text

    # The node opens a client's custody wrap (sealed to the organisation's public key) with it.
    data_key, record_id, ciphertext = (
        secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(2048)
    )
    reader = PrivateKey.generate()
    wrap = SealedBox(PrivateKey(plain.private_key).public_key).encrypt(data_key)

    async def put_and_get() -> bytes:
        try:
            await service.store(record_id, ciphertext, wrap)
            return service.seal_data_key_for(record_id, bytes(reader.public_key))
        finally:
            await service.close()

    assert SealedBox(reader).decrypt(run(put_and_get())) == data_key


def test_kek_rotation_reseals_the_organization_key_before_destroying_the_old_version(
    tmp_path: Path, softhsm_token, hsm_worker, capsys: pytest.CaptureFixture[str]
) -> None:
    home, config = hsm_home(tmp_path / "net", softhsm_token, "kek-org-rot")
    plain = load_organization_key(config.organization_key_path)
    assert cli_main(["seal-organization-key", "--home", str(home)]) == 0
    assert cli_main(["kek", "rotate", "--home", str(home)]) == 0
    capsys.readouterr()
    assert HsmKeyRing(hsm_worker, "kek-org-rot").versions() == [2]
    assert json.loads(config.organization_key_path.read_text())["kek_version"] == 2
    ring = HsmCustodyKeyRing(HsmKeyRing(hsm_worker, "kek-org-rot"))
    assert load_node_organization_key(config, ring) == plain


def test_a_damaged_sealed_file_is_refused_and_nothing_changes(
    tmp_path: Path, softhsm_token, hsm_worker
) -> None:
    _, config = hsm_home(tmp_path / "net", softhsm_token, "kek-org-bad")
    ring = HsmCustodyKeyRing(HsmKeyRing(hsm_worker, "kek-org-bad"))
    ring.generate()
    seal_organization_key_file(config.organization_key_path, ring)
    document = json.loads(config.organization_key_path.read_text())
    wrapped = document["wrapped_private_key"]
    document["wrapped_private_key"] = ("0" if wrapped[0] != "0" else "1") + wrapped[1:]
    config.organization_key_path.unlink()
    config.organization_key_path.write_text(json.dumps(document))
    config.organization_key_path.chmod(0o600)
    with pytest.raises(KeystoreError, match="cannot unseal the organisation key with KEK v"):
        load_node_organization_key(config, ring)


# Last in this module: it closes the module's worker to open another token.
def test_another_token_cannot_unseal_it(tmp_path: Path, softhsm_token, hsm_worker) -> None:
    _, config = hsm_home(tmp_path / "net", softhsm_token, "kek-org-foreign")
    ring = HsmCustodyKeyRing(HsmKeyRing(hsm_worker, "kek-org-foreign"))
    ring.generate()
    seal_organization_key_file(config.organization_key_path, ring)
    hsm_worker.close()

    # A second token in the same SoftHSM2 store, with a KEK of the same label of its own.
    other_label = f"emrchain-other-{secrets.token_hex(3)}"
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", other_label,
         "--so-pin", secrets.token_hex(8),
         "--pin", os.environ[softhsm_token.pin_environment_variable]],
        check=True, capture_output=True, timeout=60,
    )
    other_config = configure_home(
        config.home, records={**hsm_settings(softhsm_token), "hsm_token_label": other_label}
    )
    try:
        with pytest.raises(KeystoreError, match="sealed by another HSM token") as refused:
            open_record_service(other_config)
        # The other token's KEK v1 tried and failed RFC 5649's integrity check.
        assert "cannot unwrap with KEK version 1" in str(refused.value)
        running = HsmWorker._running
        assert running is not None and running.config.token_label == other_label
    finally:
        if HsmWorker._running is not None:
            HsmWorker._running.close()
