"""File keystore: mode 0600 on creation, refusal of readable or tampered files, no overwrite."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from emrchain.crypto.keys import Ed25519Signer
from emrchain.keystore import (
    KeystoreError,
    generate_key_file,
    load_key_file,
    node_id,
    write_key_file,
)


def key_json(key_type: str, seed: str, public_key: str) -> str:
    return json.dumps({"type": key_type, "seed": seed, "public_key": public_key})


def test_generated_key_is_owner_only_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "validator_key.json"
    signer = generate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_key_file(path)
    assert loaded.seed == signer.seed and loaded.public_key == signer.public_key
    document = json.loads(path.read_text())
    assert document == {
        "type": "ed25519",
        "seed": signer.seed.hex(),
        "public_key": signer.public_key.hex(),
    }
    assert [entry.name for entry in tmp_path.iterdir()] == ["validator_key.json"]


def test_mode_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        path = tmp_path / "key.json"
        generate_key_file(path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    first = generate_key_file(path)
    with pytest.raises(KeystoreError, match="already exists; refusing to replace a key"):
        write_key_file(path, Ed25519Signer.generate())
    assert load_key_file(path).public_key == first.public_key
    assert [entry.name for entry in tmp_path.iterdir()] == ["key.json"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660])
def test_key_accessible_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key.json"
    generate_key_file(path)
    path.chmod(mode)
    with pytest.raises(KeystoreError) as caught:
        load_key_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: key file is accessible by group or others")
    assert f"mode {mode:04o}" in message and f"chmod 600 {path}" in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_load(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key.json"
    generate_key_file(path)
    path.chmod(mode)
    load_key_file(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "not a valid key file"),
        ("[]", 'exactly the keys "type", "seed" and "public_key"'),
        ('{"type": "ed25519", "seed": "00"}', 'exactly the keys "type"'),
        (
            key_json("rsa", "11" * 32, "22" * 32),
            'type: must be "ed25519"',
        ),
        (
            key_json("ed25519", "1" * 63, "22" * 32),
            "seed: must be 64 lowercase hex",
        ),
        (
            key_json("ed25519", "11" * 32, "22" * 32),
            "public_key: does not match the seed",
        ),
    ],
)
def test_malformed_key_file_is_refused_naming_it(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "key.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeystoreError, match=str(path)) as caught:
        load_key_file(path)
    assert expected in str(caught.value)


def test_missing_and_non_regular_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="key file not found"):
        load_key_file(tmp_path / "absent.json")
    directory = tmp_path / "dir.json"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeystoreError, match="not a regular file"):
        load_key_file(directory)


def test_node_id_is_the_public_key_hex() -> None:
    signer = Ed25519Signer(bytes(range(32)))
    assert node_id(signer.public_key) == signer.public_key.hex()
    assert len(node_id(signer.public_key)) == 64
