"""`emrchain kek status|rotate|begin` on a stopped node's home (file KEK ring), and a node that
finishes a begun rotation in the background while it serves."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from pathlib import Path

from nacl.public import PrivateKey, SealedBox

from emrchain.config.node import NodeConfig, load_node_config
from emrchain.node.node import Node
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


def store_records(home: Path, config: NodeConfig, count: int) -> dict[bytes, bytes]:
    """Store `count` records through the home's record service (then closed): their data keys
    by record id."""
    service = open_record_service(config)
    data_keys = {secrets.token_bytes(32): secrets.token_bytes(32) for _ in range(count)}

    async def fill() -> None:
        for record_id, data_key in data_keys.items():
            await service.store(record_id, b"ciphertext", sealed_data_key(home, data_key))
        await service.close()

    run(fill())
    return data_keys


def assert_every_data_key_served(config: NodeConfig, data_keys: dict[bytes, bytes]) -> None:
    """A fresh record service seals each record's data key to a reader, correctly."""
    service = open_record_service(config)
    reader = PrivateKey.generate()
    try:
        for record_id, data_key in data_keys.items():
            sealed = service.seal_data_key_for(record_id, bytes(reader.public_key))
            assert SealedBox(reader).decrypt(sealed) == data_key
    finally:
        run(service.close())


def test_kek_rotate_moves_every_wrap_and_status_shows_the_new_version(tmp_path: Path) -> None:
    home = single_node_home(tmp_path / "net")
    config = load_node_config(home)
    data_keys = store_records(home, config, 100)
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
    assert_every_data_key_served(config, data_keys)


def test_kek_begin_leaves_the_walk_to_the_node_which_finishes_it_while_serving(
    tmp_path: Path,
) -> None:
    home = single_node_home(tmp_path / "net")
    config = load_node_config(home)
    data_keys = store_records(home, config, 300)
    begun = emrchain("kek", "begin", "--home", str(home))
    assert begun.returncode == 0, begun.stderr
    assert "KEK rotation to version 2 in progress: 0 custody wraps moved" in begun.stdout
    assert "re-wraps in the background" in begun.stdout
    assert (config.data_path / ROTATION_STATE_FILE).exists()
    status = emrchain("kek", "status", "--home", str(home))
    assert "KEK versions [1, 2], current 2" in status.stdout, status.stdout
    again = emrchain("kek", "begin", "--home", str(home))  # recorded once, not twice
    assert again.returncode == 0 and "KEK versions [1, 2]" in emrchain(
        "kek", "status", "--home", str(home)
    ).stdout

    reader = PrivateKey.generate()

    async def serve_until_rotated() -> Node:
        node = Node.open(home)
        running = asyncio.create_task(node.run())
        try:
            async with asyncio.timeout(60):
                while node.rotation_finished is None:
                    # The node serves custody reads throughout the background walk.
                    record_id, data_key = secrets.choice(list(data_keys.items()))
                    sealed = node.records.seal_data_key_for(record_id, bytes(reader.public_key))
                    assert SealedBox(reader).decrypt(sealed) == data_key
                    await asyncio.sleep(0)
            return node
        finally:
            node.request_stop()
            await running

    node = run(serve_until_rotated())
    assert node.rotation_finished is not None
    assert node.rotation_finished.rewrapped_records == len(data_keys)
    assert node.halt_reason is None
    assert not (config.data_path / ROTATION_STATE_FILE).exists()
    kek_dir = config.resolve(config.records.kek_dir)
    assert not (kek_dir / "kek-v1.json").exists() and (kek_dir / "kek-v1.destroyed").exists()
    assert "KEK versions [2], current 2" in emrchain("kek", "status", "--home", str(home)).stdout
    assert_every_data_key_served(config, data_keys)
