"""File KEKs: RFC 5649 wrap/unwrap, versions that do not mix, owner-only files, rotation."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from hypothesis import given
from hypothesis import strategies as st

from emrchain.storage.file_kek import (
    FileKeyEncryptionKey,
    FileKeyRing,
    KeyFileError,
    KeyUnwrapError,
)
from emrchain.storage.interfaces import CustodyWrap, KeyEncryptionKey, KeyUnavailableError

DATA_KEY = bytes(range(32))
RECORD_ID = b"\x07" * 32

# RFC 5649 §6, second example: a 20-octet key under this KEK. Pins that the library call is the
# padded variant of AES key wrap.
RFC5649_KEK = bytes.fromhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
RFC5649_KEY = bytes.fromhex("c37b7e6492584340bed12207808941155068f738")
RFC5649_WRAPPED = bytes.fromhex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")


def test_library_call_is_rfc5649() -> None:
    assert aes_key_wrap_with_padding(RFC5649_KEK, RFC5649_KEY) == RFC5649_WRAPPED


@given(st.binary(min_size=32, max_size=32))
def test_wrap_unwrap_round_trip(data_key: bytes) -> None:
    kek = FileKeyEncryptionKey(1, b"k" * 32)
    wrapped = kek.wrap(data_key)
    assert len(wrapped) == 40 and data_key not in wrapped
    assert kek.unwrap(wrapped) == data_key


def test_implements_the_protocol(tmp_path: Path) -> None:
    kek = FileKeyEncryptionKey.generate(tmp_path / "kek.json", 1)
    assert isinstance(kek, KeyEncryptionKey)
    visible = FileKeyEncryptionKey(1, b"k" * 32)
    assert repr(visible) == "FileKeyEncryptionKey(version=1)"  # never the key bytes


def test_another_version_cannot_unwrap(tmp_path: Path) -> None:
    ring = FileKeyRing(tmp_path / "keks")
    first = ring.generate()
    second = ring.generate()
    wrapped = first.wrap(DATA_KEY)
    with pytest.raises(KeyUnwrapError, match="does not unwrap with KEK version 2"):
        second.unwrap(wrapped)
    # A custody wrap that claims the wrong version fails the same way.
    with pytest.raises(KeyUnwrapError):
        ring.unwrap(CustodyWrap(RECORD_ID, 2, wrapped))
    assert ring.unwrap(CustodyWrap(RECORD_ID, 1, wrapped)) == DATA_KEY


@given(st.integers(min_value=0, max_value=39), st.integers(min_value=1, max_value=255))
def test_altered_wrap_is_refused(position: int, flip: int) -> None:
    kek = FileKeyEncryptionKey(1, b"k" * 32)
    wrapped = bytearray(kek.wrap(DATA_KEY))
    wrapped[position] ^= flip
    with pytest.raises(KeyUnwrapError):
        kek.unwrap(bytes(wrapped))


def test_wrap_of_a_non_32_byte_key_does_not_unwrap_as_a_data_key() -> None:
    kek_bytes = b"k" * 32
    kek = FileKeyEncryptionKey(1, kek_bytes)
    with pytest.raises(KeyUnwrapError, match="40 bytes"):
        kek.unwrap(aes_key_wrap_with_padding(kek_bytes, bytes(16)))  # 24 bytes
    with pytest.raises(KeyUnwrapError, match="32-byte data key"):
        kek.unwrap(aes_key_wrap_with_padding(kek_bytes, bytes(31)))  # 40 bytes, 31 inside


@pytest.mark.parametrize("data_key", [b"", bytes(31), bytes(33)])
def test_only_32_byte_data_keys_are_wrapped(data_key: bytes) -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        FileKeyEncryptionKey(1, b"k" * 32).wrap(data_key)


def test_key_file_is_0600_and_loads_back(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        path = tmp_path / "kek.json"
        kek = FileKeyEncryptionKey.generate(path, 5)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["type"] == "aes256-kek" and document["version"] == 5
    loaded = FileKeyEncryptionKey.load(path)
    assert loaded.version == 5
    assert loaded.unwrap(kek.wrap(DATA_KEY)) == DATA_KEY
    assert [entry.name for entry in tmp_path.iterdir()] == ["kek.json"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602, 0o620])
def test_files_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kek.json"
    FileKeyEncryptionKey.generate(path, 1)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}"):
        FileKeyEncryptionKey.load(path)


def test_existing_key_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    first = FileKeyEncryptionKey.generate(path, 1)
    with pytest.raises(KeyFileError, match="refusing to replace a key"):
        FileKeyEncryptionKey.generate(path, 1)
    assert FileKeyEncryptionKey.load(path).unwrap(first.wrap(DATA_KEY)) == DATA_KEY


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a valid key file"),
        ("[]", "exactly the keys"),
        ('{"type": "aes256-kek", "version": 1}', "exactly the keys"),
        ('{"type": "ed25519", "version": 1, "key": "' + "a" * 64 + '"}', "type"),
        ('{"type": "aes256-kek", "version": 0, "key": "' + "a" * 64 + '"}', "version"),
        ('{"type": "aes256-kek", "version": true, "key": "' + "a" * 64 + '"}', "version"),
        ('{"type": "aes256-kek", "version": "1", "key": "' + "a" * 64 + '"}', "version"),
        ('{"type": "aes256-kek", "version": 1, "key": "' + "A" * 64 + '"}', "key"),
        ('{"type": "aes256-kek", "version": 1, "key": "' + "a" * 62 + '"}', "key"),
        (" " * 5000, "larger than 4096"),
    ],
)
def test_malformed_key_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "kek.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=message):
        FileKeyEncryptionKey.load(path)


def test_missing_file_and_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        FileKeyEncryptionKey.load(tmp_path / "absent.json")
    with pytest.raises(KeyFileError, match="not a regular file"):
        FileKeyEncryptionKey.load(tmp_path)
    # The node maps every key-file problem to "key unavailable".
    assert issubclass(KeyFileError, KeyUnavailableError)


def test_ring_rotation_rewrap_and_destroy(tmp_path: Path) -> None:
    ring = FileKeyRing(tmp_path / "keks")
    with pytest.raises(KeyFileError, match="no key-encryption key yet"):
        ring.current()
    ring.generate()
    old_wrap = ring.wrap(RECORD_ID, DATA_KEY)
    assert old_wrap.kek_version == 1
    ring.generate()
    assert ring.versions() == [1, 2] and ring.current().version == 2
    new_wrap = ring.rewrap(old_wrap)
    assert new_wrap.kek_version == 2 and new_wrap.record_id == RECORD_ID
    assert ring.rewrap(new_wrap) is new_wrap
    with pytest.raises(ValueError, match="is the current one"):
        ring.destroy(2)
    ring.destroy(1)
    assert ring.versions() == [2]
    assert ring.unwrap(new_wrap) == DATA_KEY
    with pytest.raises(KeyFileError, match="version 1 was destroyed"):
        ring.unwrap(old_wrap)
    with pytest.raises(KeyFileError, match="no KEK version 1 to destroy"):
        ring.destroy(1)
    # A destroyed number is never reused.
    assert ring.generate().version == 3
    assert sorted(path.name for path in (tmp_path / "keks").iterdir()) == [
        "kek-v1.destroyed",
        "kek-v2.json",
        "kek-v3.json",
    ]


def test_ring_reopens_from_its_directory(tmp_path: Path) -> None:
    first = FileKeyRing(tmp_path / "keks")
    first.generate()
    wrap = first.wrap(RECORD_ID, DATA_KEY)
    second = FileKeyRing(tmp_path / "keks")
    assert second.versions() == [1]
    assert second.unwrap(wrap) == DATA_KEY
    assert stat.S_IMODE((tmp_path / "keks").stat().st_mode) == 0o700


def test_ring_checks_the_version_inside_the_file(tmp_path: Path) -> None:
    directory = tmp_path / "keks"
    FileKeyRing(directory)
    FileKeyEncryptionKey.generate(directory / "kek-v4.json", 7)
    with pytest.raises(KeyFileError, match="holds version 7, its name says 4"):
        FileKeyRing(directory).get(4)


def test_ring_refuses_unknown_versions(tmp_path: Path) -> None:
    ring = FileKeyRing(tmp_path / "keks")
    ring.generate()
    with pytest.raises(KeyFileError, match="not found"):
        ring.get(9)


@pytest.mark.parametrize(("version", "key"), [(0, b"k" * 32), (1 << 32, b"k" * 32), (1, b"k")])
def test_constructor_bounds(version: int, key: bytes) -> None:
    with pytest.raises(ValueError):
        FileKeyEncryptionKey(version, key)
