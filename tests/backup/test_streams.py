"""The archive's streams without a node: kv parts of several age chunks (64 KiB each) round
trip exactly, a record split anywhere between two chunks is reassembled, a truncated kv part is
refused, and the `[backup]` settings are checked together."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest
from pyrage import x25519

from emrchain.backup.archive import (
    BackupError,
    OpenArchive,
    PartSource,
    verify_archive,
    write_archive,
)
from emrchain.backup.create import apply_retention, archive_name
from emrchain.backup.parts import KvWriter, kv_chunks
from emrchain.config.errors import ConfigError
from emrchain.config.node import parse_node_config_text


def records(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    generator = random.Random(seed)
    return sorted(
        (
            generator.randbytes(generator.randint(1, 40)),
            generator.randbytes(generator.randint(0, 3000)),
        )
        for _ in range(count)
    )


def plaintext(items: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(kv_chunks(iter(items)))


def test_a_record_split_anywhere_is_reassembled() -> None:
    items = records(200, 1)
    data = plaintext(items)
    generator = random.Random(2)
    received: list[tuple[bytes, bytes]] = []
    writer = KvWriter(received.extend)
    offset = 0
    while offset < len(data):
        step = generator.randint(1, 700)
        writer.feed(data[offset : offset + step])
        offset += step
    writer.finish()
    assert received == items


def test_a_truncated_kv_part_is_refused() -> None:
    data = plaintext(records(5, 3))
    writer = KvWriter(lambda batch: None)
    writer.feed(data[:-1])
    with pytest.raises(BackupError, match="a kv part ends inside a record"):
        writer.finish()


def test_parts_of_many_age_chunks_round_trip(tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    items = records(3_000, 4)  # about 4.5 MB: some 70 age chunks
    data = plaintext(items)
    blob = os.urandom(200_000)
    sources = [
        PartSource("chain", "kv", "data/chain.db", 0o700, lambda: io.BytesIO(data)),
        PartSource("home/config/x.bin", "file", "config/x.bin", 0o600, lambda: io.BytesIO(blob)),
    ]
    target = tmp_path / "a.tar"
    fields = {"chain_id": "c", "height": 7, "app_hash": "00" * 32}
    write_archive(target, fields, sources, str(identity.to_public()))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.tar"]  # no scratch left
    assert data not in target.read_bytes() and blob[:64] not in target.read_bytes()
    manifest = verify_archive(target, identity)
    with OpenArchive(target) as archive:
        chain = manifest.part("chain")
        assert chain is not None and chain.plaintext_bytes == len(data)
        received: list[tuple[bytes, bytes]] = []
        writer = KvWriter(received.extend)
        archive.decrypt_part(chain, identity, writer.feed)
        writer.finish()
    assert received == items
    with pytest.raises(BackupError, match="exists already"):
        write_archive(target, fields, sources, str(identity.to_public()))


def test_retention_keeps_the_newest_of_this_chain_only(tmp_path: Path) -> None:
    names = [archive_name("alpha", height, 1_796_400_000_000 + height) for height in (5, 9, 7)]
    names.append(archive_name("beta", 1, 1_796_400_000_000))
    for name in [*names, "unrelated.tar"]:
        (tmp_path / name).write_bytes(b"")
    removed = apply_retention(tmp_path, "alpha", 2)
    assert [path.name for path in removed] == [names[0]]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [names[1], names[2], names[3], "unrelated.tar"]
    )


def test_scheduled_backups_need_a_directory_and_a_recipient() -> None:
    with pytest.raises(ConfigError, match=r"\[backup\] interval_ms: scheduled backups need"):
        parse_node_config_text(
            '[backup]\ninterval_ms = 60000\ndirectory = "/var/backups"\n',
            home=Path("/h"),
            source="node.toml",
        )
    with pytest.raises(ConfigError, match=r"\[backup\] recipient"):
        parse_node_config_text('[backup]\nrecipient = "age1xyz"\n', home=Path("/h"), source="n")
