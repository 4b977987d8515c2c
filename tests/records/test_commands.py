"""`emrchain kek status` and `emrchain kek rotate` on a stopped node's home (file KEK ring)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from nacl.public import PrivateKey, SealedBox

from emrchain.config.node import load_node_config
from emrchain.records import open_record_service
from emrchain.records.rotation import ROTATION_STATE_FILE
from tests.records.homes import single_node_home
from tests.records.test_hsm_wiring import sealed_data_key
from tests.services.fixtures import run


def emrchain(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emrchain.cli", *arguments],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_kek_rotate_moves_every_wrap_and_status_shows_the_new_version(tmp_path: Path) -> None:
    home = single_node_home(tmp_path / "net")
    config = load_node_config(home)
    service = open_record_service(config)
    data_keys = {secrets.token_bytes(32): secrets.token_bytes(32) for _ in range(100)}

    async def fill() -> None:
        for record_id, data_key in data_keys.items():
            await service.store(record_id, b"ciphertext", sealed_data_key(home, data_key))
        await service.close()

    run(fill())
    before = emrchain("kek", "status", "--home", str(home))
    assert before.returncode == 0, before.stderr
    assert "KEK versions [1], current 1" in before.stdout
    assert "no rotation in progress" in before.stdout

    rotated = emrchain("kek", "rotate", "--home", str(home))
    assert rotated.returncode == 0, rotated.stderr
    assert "KEK rotation to version 2 finished: 100 custody wraps moved" in rotated.stdout
    assert not (config.data_path / ROTATION_STATE_FILE).exists()

    after = emrchain("kek", "status", "--home", str(home))
    assert "KEK versions [2], current 2" in after.stdout
    kek_dir = config.resolve(config.records.kek_dir)
    assert not (kek_dir / "kek-v1.json").exists() and (kek_dir / "kek-v1.destroyed").exists()
    service = open_record_service(config)
    reader = PrivateKey.generate()
    try:
        for record_id, data_key in data_keys.items():
            sealed = service.seal_data_key_for(record_id, bytes(reader.public_key))
            assert SealedBox(reader).decrypt(sealed) == data_key
    finally:
        run(service.close())
