"""Member identity files encrypted under a passphrase (scrypt + AES-256-GCM, format version 1)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from emrchain.keystore import KeystoreError
from emrchain.keystore.member import (
    ENCRYPTED_MEMBER_TYPE,
    PASSPHRASE_VARIABLE,
    REQUIRE_ENCRYPTED_VARIABLE,
    MemberIdentity,
    load_member_identity,
    write_member_identity,
)
from emrchain.keystore.sealed import MIN_LOG2_N, open_seed

PASSPHRASE = "correct horse battery staple"
# The lowest cost the format accepts keeps the tests fast (the default is 2^17).
FAST = {"scrypt_log2_n": MIN_LOG2_N}


@pytest.fixture(autouse=True)
def no_key_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_VARIABLE, raising=False)
    monkeypatch.delenv(REQUIRE_ENCRYPTED_VARIABLE, raising=False)


def encrypted_file(tmp_path: Path) -> tuple[Path, MemberIdentity]:
    identity = MemberIdentity.generate()
    path = tmp_path / "member.json"
    write_member_identity(path, identity, PASSPHRASE, **FAST)
    return path, identity


def rewrite(path: Path, **changes: object) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle)


def test_round_trip_and_the_seed_is_not_in_the_file(tmp_path: Path) -> None:
    path, identity = encrypted_file(tmp_path)
    content = path.read_bytes()
    assert identity.signer.seed.hex().encode() not in content
    assert identity.signer.seed not in content
    document = json.loads(content)
    assert document["type"] == ENCRYPTED_MEMBER_TYPE and document["format_version"] == 1
    assert document["kdf"] == "scrypt" and document["cipher"] == "aes-256-gcm"
    loaded = load_member_identity(path, PASSPHRASE)
    assert loaded.signer.seed == identity.signer.seed
    assert loaded.encryption_private_key == identity.encryption_private_key


def test_the_passphrase_can_come_from_the_environment_or_a_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, identity = encrypted_file(tmp_path)
    with pytest.raises(KeystoreError, match=PASSPHRASE_VARIABLE):
        load_member_identity(path)
    assert load_member_identity(path, lambda: PASSPHRASE).member_key == identity.member_key
    monkeypatch.setenv(PASSPHRASE_VARIABLE, PASSPHRASE)
    assert load_member_identity(path).member_key == identity.member_key


def test_a_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    path, _ = encrypted_file(tmp_path)
    with pytest.raises(KeystoreError, match="wrong passphrase, or the file was altered"):
        load_member_identity(path, "not the passphrase")


@pytest.mark.parametrize(
    "change",
    [
        {"member_key": MemberIdentity.generate().member_key.hex()},  # bound as associated data
        {"scrypt_log2_n": MIN_LOG2_N + 1},
        {"salt": "00" * 16},
        {"nonce": "00" * 12},
    ],
)
def test_any_altered_field_fails_like_a_wrong_passphrase(
    tmp_path: Path, change: dict[str, object]
) -> None:
    path, _ = encrypted_file(tmp_path)
    rewrite(path, **change)
    with pytest.raises(KeystoreError, match="wrong passphrase, or the file was altered"):
        load_member_identity(path, PASSPHRASE)


def test_a_flipped_ciphertext_bit_is_detected(tmp_path: Path) -> None:
    path, _ = encrypted_file(tmp_path)
    sealed = bytearray.fromhex(json.loads(path.read_text())["sealed_seed"])
    sealed[0] ^= 1
    rewrite(path, sealed_seed=sealed.hex())
    with pytest.raises(KeystoreError, match="altered"):
        load_member_identity(path, PASSPHRASE)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"scrypt_log2_n": 30}, "scrypt_log2_n: must be an integer 14..20"),  # no 2^30 work
        ({"scrypt_log2_n": 10}, "scrypt_log2_n"),
        ({"format_version": 2}, "format_version: must be 1"),
        ({"kdf": "pbkdf2"}, "kdf: must be 'scrypt'"),
        ({"nonce": "zz"}, "nonce: must be 24 lowercase hex characters"),
    ],
)
def test_unknown_versions_and_costs_are_refused_before_any_work(
    tmp_path: Path, change: dict[str, object], says: str
) -> None:
    path, _ = encrypted_file(tmp_path)
    rewrite(path, **change)
    with pytest.raises(KeystoreError, match=says):
        load_member_identity(path, PASSPHRASE)


def test_a_short_passphrase_is_refused_when_writing(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="at least 8 characters"):
        write_member_identity(tmp_path / "m.json", MemberIdentity.generate(), "short", **FAST)
    assert not (tmp_path / "m.json").exists()


def test_plain_files_load_with_a_warning_unless_refused_by_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    identity = MemberIdentity.generate()
    path = tmp_path / "plain.json"
    write_member_identity(path, identity)
    with caplog.at_level(logging.WARNING, logger="emrchain.keystore.member"):
        assert load_member_identity(path).member_key == identity.member_key
    assert "not encrypted" in caplog.text
    monkeypatch.setenv(REQUIRE_ENCRYPTED_VARIABLE, "1")
    with pytest.raises(KeystoreError, match="unencrypted member identity refused"):
        load_member_identity(path)
    with pytest.raises(KeystoreError, match="unencrypted member identity refused"):
        load_member_identity(path, require_encrypted=True)
    encrypted, _ = encrypted_file(tmp_path)
    assert load_member_identity(encrypted, PASSPHRASE).member_key != identity.member_key


def test_the_default_cost_is_the_documented_one(tmp_path: Path) -> None:
    identity = MemberIdentity.generate()
    path = tmp_path / "default.json"
    write_member_identity(path, identity, PASSPHRASE)
    document = json.loads(path.read_text())
    assert (document["scrypt_log2_n"], document["scrypt_r"], document["scrypt_p"]) == (17, 8, 1)
    assert open_seed(document, PASSPHRASE) == identity.signer.seed
