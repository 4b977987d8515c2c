"""Helpers of the backup tests: the CLI as a process, and archives rewritten the way an attacker
with the recovery public key (not the identity) could: parts changed and re-encrypted, with a
manifest and index that agree with them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyrage import x25519

from emrchain.backup.archive import OpenArchive, PartSource, write_archive
from emrchain.backup.parts import KvWriter, kv_chunks

CLI_TIMEOUT_S = 300


def emrchain(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emrchain.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def emrchain_json(*arguments: str | Path) -> dict[str, Any]:
    result = emrchain(*arguments)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def decrypted_parts(
    path: Path, identity: x25519.Identity
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest fields, part name -> plaintext), in this test's memory."""
    with OpenArchive(path) as archive:
        manifest = archive.manifest(identity)
        plaintexts = {}
        for part in manifest.parts:
            chunks: list[bytes] = []
            archive.decrypt_part(part, identity, chunks.append)
            plaintexts[part.name] = b"".join(chunks)
        kinds = {part.name: (part.kind, part.path, part.mode) for part in manifest.parts}
    fields = {key: value for key, value in manifest.fields.items() if key != "recipient"}
    fields["_kinds"] = kinds
    return fields, plaintexts


def kv_records(plaintext: bytes) -> list[tuple[bytes, bytes]]:
    records: list[tuple[bytes, bytes]] = []
    writer = KvWriter(records.extend)
    writer.feed(plaintext)
    writer.finish()
    return records


def kv_plaintext(records: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(kv_chunks(iter(records)))


def rewrite(
    source: Path,
    target: Path,
    identity: x25519.Identity,
    change: Callable[[dict[str, bytes]], None],
) -> None:
    """`source` decrypted, `change`d, and written to `target` encrypted to the same recipient
    with a manifest and index consistent with the changed parts."""
    fields, plaintexts = decrypted_parts(source, identity)
    kinds = fields.pop("_kinds")
    change(plaintexts)
    sources = [
        PartSource(name, kinds[name][0], kinds[name][1], kinds[name][2], _opener(data))
        for name, data in plaintexts.items()
    ]
    write_archive(target, fields, sources, str(identity.to_public()))


def _opener(data: bytes) -> Callable[[], io.BytesIO]:
    return lambda: io.BytesIO(data)


def member_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """Member name -> (offset of its data in the file, size)."""
    with tarfile.open(path, "r:") as archive:
        return {member.name: (member.offset_data, member.size) for member in archive.getmembers()}


def without_member(source: Path, target: Path, left_out: str) -> None:
    with (
        tarfile.open(source, "r:") as old,
        tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as new,
    ):
        for member in old.getmembers():
            if member.name != left_out:
                new.addfile(member, old.extractfile(member))
