"""A home whose KEK versions live in an HSM (real SoftHSM2): the backup lists them as not
included, holds the organisation key only in its sealed form, and the restored home opens its
custody copies and unseals its organisation key with the same token; the restored node starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from emrchain.backup.archive import load_identity
from emrchain.config.node import load_node_config
from emrchain.devnet.harness import Devnet
from emrchain.keystore.member import SEALED_ORGANIZATION_TYPE
from emrchain.records import open_record_service
from tests.backup.support import emrchain, emrchain_json
from tests.records.homes import (
    configure_home,
    hsm_settings,
    seal_organization_key,
    single_node_home,
)
from tests.services.fixtures import SoftHsmToken

pytestmark = pytest.mark.slow

PREFIX = "kek-backup"


def test_hsm_resident_keys_are_listed_and_work_after_restore(
    tmp_path: Path, softhsm_token: SoftHsmToken, hsm_worker: object
) -> None:
    home = single_node_home(tmp_path / "net")
    config = configure_home(
        home,
        records={
            "kek_backend": "hsm",
            "hsm_kek_label_prefix": PREFIX,
            **hsm_settings(softhsm_token),
        },
    )
    seal_organization_key(config, hsm_worker)
    record_id, data_key = os.urandom(32), os.urandom(32)
    service = open_record_service(config)
    service.vault.put(service.key_ring.wrap(record_id, data_key))
    organization_key = service.organization_key
    assert organization_key is not None
    asyncio.run(service.close())

    identity_file = tmp_path / "recovery.txt"
    assert emrchain("backup", "keygen", "--out", identity_file).returncode == 0
    recipient = str(load_identity(identity_file).to_public())
    devnet = Devnet(tmp_path / "net")
    try:
        devnet.start(0)
        devnet.wait_for_height(2, [0], timeout_s=60)
        made = emrchain_json(
            "backup",
            "create",
            "--home",
            home,
            "--recipient",
            recipient,
            "--output",
            tmp_path / "backups",
        )
        assert made["made_by"] == "the running node"
    finally:
        devnet.stop_all()
    archive = Path(made["path"])
    content = archive.read_bytes()
    private_key = organization_key.private_key
    assert private_key not in content and private_key.hex().encode() not in content
    verified = emrchain_json("backup", "verify", archive, "--identity", identity_file)
    assert verified["hsm_resident_keys"] == [
        f"KEK versions: labels {PREFIX}-v<version> in token {softhsm_token.token_label!r}"
    ]

    shutil.rmtree(home)
    restored = emrchain_json(
        "restore",
        archive,
        "--identity",
        identity_file,
        "--home",
        home,
        "--signing-hold-height",
        "0",
    )
    assert restored["hsm_resident_keys"] == verified["hsm_resident_keys"]
    restored_config = load_node_config(home)
    sealed = json.loads(restored_config.organization_key_path.read_text())
    assert sealed["type"] == SEALED_ORGANIZATION_TYPE
    service = open_record_service(restored_config)
    try:
        assert service.organization_key == organization_key
        wrap = service.vault.get(record_id)
        assert wrap is not None and service.key_ring.unwrap(wrap) == data_key
    finally:
        asyncio.run(service.close())
    try:
        devnet.start(0)
        devnet.wait_for(
            lambda: devnet.try_status(0) is not None,
            timeout_s=60,
            what="the restored node to serve /status",
        )
        assert devnet.height(0) == restored["height"]
    finally:
        devnet.stop_all()
