"""Backups of a real single-validator node (a process): made over its admin socket while it
runs, on its `[backup]` schedule, and by the CLI on the stopped home; `backup verify` naming
each kind of damage with its own message; `--deep` finding a re-encrypted forgery; restore's
refusals and its signing hold (docs/spec/backup.md)."""

from __future__ import annotations

import json
import shutil
import socket as socket_module
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import plyvel
import pytest
from pyrage import x25519

from emrchain.backup.archive import load_identity, verify_archive
from emrchain.backup.create import ARCHIVE_PREFIX
from emrchain.backup.service import admin_socket_path
from emrchain.config.node import load_node_config
from emrchain.consensus.signing_guard import SignedStep, SigningState
from emrchain.devnet.harness import Devnet
from emrchain.store import layout
from emrchain.store.database import database_path
from tests.backup.support import (
    emrchain,
    emrchain_json,
    error_line,
    kv_plaintext,
    kv_records,
    member_offsets,
    rewrite,
    without_member,
)

pytestmark = pytest.mark.slow

SCHEDULE_MS = 1_500
SCHEDULE_KEEP = 2


@dataclass
class Backed:
    devnet: Devnet
    root: Path
    identity_file: Path
    identity: x25519.Identity
    recipient: str
    running_backup: dict
    stopped_backup: dict
    schedule_directory: Path
    refusals: list[dict]


@pytest.fixture(scope="module")
def backed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backed]:
    root = tmp_path_factory.mktemp("backup")
    identity_file = root / "recovery.txt"
    keygen = emrchain("backup", "keygen", "--out", identity_file)
    assert keygen.returncode == 0, keygen.stderr
    identity = load_identity(identity_file)
    recipient = str(identity.to_public())
    assert recipient in keygen.stdout
    schedule = root / "scheduled"
    devnet = Devnet(root / "net", 1)
    devnet.configure(
        0,
        {
            "backup": {
                "interval_ms": SCHEDULE_MS,
                "directory": str(schedule),
                "recipient": recipient,
                "keep": SCHEDULE_KEEP,
            }
        },
    )
    try:
        devnet.start_all()
        devnet.wait_for_height(3, [0], timeout_s=90)
        running = emrchain_json(
            "backup",
            "create",
            "--home",
            devnet.homes[0],
            "--recipient",
            recipient,
            "--output",
            root / "manual",
        )
        devnet.wait_for(
            lambda: scheduled_writes(devnet, schedule) > SCHEDULE_KEEP,
            timeout_s=90,
            what="more scheduled backups than are kept",
        )
        socket = admin_socket_path(load_node_config(devnet.homes[0]))
        assert stat.S_IMODE(socket.stat().st_mode) == 0o600
        relative = {"command": "backup", "directory": "relative/dir", "recipient": recipient}
        bad_key = {"command": "backup", "directory": str(root / "x"), "recipient": "age1nope"}
        refusals = [
            raw_admin_request(socket, b"not json\n"),
            raw_admin_request(socket, b'{"command": "restore"}\n'),
            raw_admin_request(socket, json.dumps({**relative, "keep": 2}).encode() + b"\n"),
            raw_admin_request(socket, json.dumps({**bad_key, "keep": 2}).encode() + b"\n"),
        ]
        assert devnet.is_running(0) and devnet.height(0) >= 3
        assert devnet.stop(0) == 0
        stopped = emrchain_json(
            "backup",
            "create",
            "--home",
            devnet.homes[0],
            "--recipient",
            recipient,
            "--output",
            root / "manual",
        )
        yield Backed(
            devnet, root, identity_file, identity, recipient, running, stopped, schedule, refusals
        )
    finally:
        devnet.stop_all()


def test_a_running_node_writes_the_backup_and_a_stopped_home_is_backed_up_by_the_cli(
    backed: Backed,
) -> None:
    assert backed.running_backup["made_by"] == "the running node"
    assert backed.stopped_backup["made_by"] == "this command (node stopped)"
    assert backed.stopped_backup["height"] >= backed.running_backup["height"] >= 3
    for made in (backed.running_backup, backed.stopped_backup):
        manifest = verify_archive(Path(made["path"]), backed.identity)
        assert manifest.height == made["height"] and manifest.app_hash == made["app_hash"]
        names = {part.name for part in manifest.parts}
        assert {
            "chain",
            "vault",
            "blobs",
            "home/config/node.toml",
            "home/config/genesis.json",
            "home/config/validator_key.json",
            "home/config/kek/kek-v1.json",
            "home/config/organization_key.json",
        } <= names
        assert manifest.chain_id == "emrchain-devnet"


def raw_admin_request(path: Path, line: bytes) -> dict:
    with socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(str(path))
        connection.sendall(line)
        return json.loads(connection.makefile("rb").readline())


def test_the_admin_socket_refuses_bad_requests_and_the_node_goes_on(backed: Backed) -> None:
    assert [answer["ok"] for answer in backed.refusals] == [False] * 4
    errors = [answer["error"] for answer in backed.refusals]
    assert errors[0].startswith("malformed admin request")
    assert errors[1] == "unknown admin request (expected command backup)"
    assert "must be an absolute path" in errors[2]
    assert "must be an age X25519 recipient" in errors[3]


def scheduled_writes(devnet: Devnet, directory: Path) -> int:
    return devnet.log_path(0).read_text().count(f"backup written: {directory}/")


def test_the_schedule_keeps_the_newest_archives(backed: Backed) -> None:
    assert scheduled_writes(backed.devnet, backed.schedule_directory) > SCHEDULE_KEEP
    archives = sorted(backed.schedule_directory.glob(ARCHIVE_PREFIX + "*"))
    assert len(archives) == SCHEDULE_KEEP
    for archive in archives:
        verify_archive(archive, backed.identity)


def test_no_key_material_is_in_the_clear(backed: Backed) -> None:
    home = backed.devnet.homes[0]
    secrets = []
    for name in ("validator_key.json", "node_key.json", "organization_key.json", "kek/kek-v1.json"):
        document = json.loads((home / "config" / name).read_text())
        secrets += [
            value.encode()
            for key, value in document.items()
            if isinstance(value, str)
            and key not in ("type", "public_key", "organization_id")
            and len(value) >= 32
        ]
    assert secrets
    for archive in Path(backed.stopped_backup["path"]).parent.iterdir():
        content = archive.read_bytes()
        assert not [secret for secret in secrets if secret in content]


def test_verify_names_a_flipped_byte_in_each_part(backed: Backed, tmp_path: Path) -> None:
    source = Path(backed.stopped_backup["path"])
    for member, (offset, size) in member_offsets(source).items():
        damaged = tmp_path / "damaged.tar"
        shutil.copyfile(source, damaged)
        with open(damaged, "r+b") as handle:
            handle.seek(offset + size // 2)
            byte = handle.read(1)
            handle.seek(offset + size // 2)
            handle.write(bytes([byte[0] ^ 0x01]))
        line = error_line(emrchain("backup", "verify", damaged, "--identity", backed.identity_file))
        if member == "index.json":
            expected = "the index (index.json) is corrupted"
        else:
            name = "manifest" if member == "manifest.age" else member[len("parts/") : -len(".age")]
            expected = f"part {name} is corrupted: the SHA-256 of its encrypted bytes differs"
        assert expected in line, (member, line)


def test_verify_names_a_missing_part(backed: Backed, tmp_path: Path) -> None:
    source = Path(backed.stopped_backup["path"])
    for member, name in (
        ("parts/home/config/node_key.json.age", "home/config/node_key.json"),
        ("parts/chain.age", "chain"),
        ("manifest.age", "manifest"),
    ):
        damaged = tmp_path / f"without-{name.replace('/', '-')}.tar"
        without_member(source, damaged, member)
        line = error_line(emrchain("backup", "verify", damaged, "--identity", backed.identity_file))
        assert f"part {name} is missing from the archive" in line, line


def test_verify_names_a_wrong_recovery_key(backed: Backed, tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    assert emrchain("backup", "keygen", "--out", other).returncode == 0
    line = error_line(
        emrchain("backup", "verify", backed.stopped_backup["path"], "--identity", other)
    )
    assert f"wrong recovery key: the archive is encrypted to {backed.recipient}" in line
    # keygen never overwrites an identity
    assert "exists already" in error_line(emrchain("backup", "keygen", "--out", other))


def _tamper_state(plaintexts: dict[str, bytes]) -> None:
    records = kv_records(plaintexts["chain"])
    index = max(i for i, (key, _) in enumerate(records) if key.startswith(layout.STATE))
    key, value = records[index]
    records[index] = (key, value[:-1] + bytes([value[-1] ^ 0x01]))
    plaintexts["chain"] = kv_plaintext(records)


def _tamper_recorded_app_hash(plaintexts: dict[str, bytes]) -> None:
    records = kv_records(plaintexts["chain"])
    index = records.index(next(r for r in records if r[0] == layout.app_hash_key(2)))
    key, value = records[index]
    records[index] = (key, bytes([value[0] ^ 0x01]) + value[1:])
    plaintexts["chain"] = kv_plaintext(records)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_tamper_state, "app hash mismatch: the backup's state differs from the state its blocks"),
        (_tamper_recorded_app_hash, "app hash mismatch at height 2: the backup's chain store"),
    ],
)
def test_only_the_deep_check_finds_a_reencrypted_forgery(
    backed: Backed, tmp_path: Path, tamper, expected: str
) -> None:
    forged = tmp_path / "forged.tar"
    rewrite(Path(backed.stopped_backup["path"]), forged, backed.identity, tamper)
    plain = emrchain("backup", "verify", forged, "--identity", backed.identity_file)
    assert plain.returncode == 0, plain.stderr
    line = error_line(
        emrchain("backup", "verify", forged, "--identity", backed.identity_file, "--deep")
    )
    assert expected in line, line
    deep_of_original = emrchain(
        "backup",
        "verify",
        backed.stopped_backup["path"],
        "--identity",
        backed.identity_file,
        "--deep",
    )
    assert deep_of_original.returncode == 0, deep_of_original.stderr


def test_restore_refuses_what_it_must_and_changes_nothing(backed: Backed, tmp_path: Path) -> None:
    archive = backed.stopped_backup["path"]

    def refused(home: Path, *options: str) -> str:
        """The one-line error of a restore of the backup into `home` that must be refused."""
        return error_line(
            emrchain(
                "restore", archive, "--identity", backed.identity_file, "--home", home, *options
            )
        )

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    line = refused(occupied, "--signing-hold-height", "5")
    assert "is not empty; restore never overwrites a home unless --force" in line
    line = refused(occupied, "--signing-hold-height", "5", "--force")
    assert "not an emrchain home" in line
    assert [path.name for path in occupied.iterdir()] == ["notes.txt"]
    # A home of another chain is not replaced, even with --force.
    other = Devnet(tmp_path / "other", 1, chain_id="emrchain-other")
    line = refused(other.homes[0], "--signing-hold-height", "5", "--force")
    assert "holds a different genesis than the backup" in line
    # A peer of another chain: this is not the network the backup belongs to.
    try:
        other.start_all()
        other.wait_for_height(1, [0], timeout_s=60)
        line = refused(tmp_path / "elsewhere", "--peer-rpc", other.rpc_urls[0])
    finally:
        other.stop_all()
    assert "is on chain 'emrchain-other', the backup is of chain 'emrchain-devnet'" in line
    assert not (tmp_path / "elsewhere").exists()
    # Without peers to ask and without a height: refused, nothing written.
    fresh = tmp_path / "fresh"
    line = refused(fresh, "--peer-rpc", "http://127.0.0.1:9")
    assert "no peer answered /status" in line
    assert not fresh.exists()


def test_restore_holds_the_signing_guard_above_the_network_head(
    backed: Backed, tmp_path: Path
) -> None:
    home = tmp_path / "restored"
    restored = emrchain_json(
        "restore",
        backed.stopped_backup["path"],
        "--identity",
        backed.identity_file,
        "--home",
        home,
        "--signing-hold-height",
        "500",
    )
    assert restored["signing_hold_height"] == 502
    assert restored["height"] == backed.stopped_backup["height"]
    database = plyvel.DB(str(database_path(home)))
    try:
        guard = SigningState.decode(database.get(layout.SIGNING_STATE))
    finally:
        database.close()
    assert (guard.height, guard.round, guard.step) == (502, 0, SignedStep.PRECOMMIT)
    original = backed.devnet.homes[0]
    for name in ("config/validator_key.json", "config/kek/kek-v1.json", "config/node.toml"):
        assert (home / name).read_bytes() == (original / name).read_bytes()
        assert stat.S_IMODE((home / name).stat().st_mode) == stat.S_IMODE(
            (original / name).stat().st_mode
        )


def test_no_backup_while_a_kek_rotation_moves_wraps(backed: Backed, tmp_path: Path) -> None:
    home = tmp_path / "rotating"
    shutil.copytree(backed.devnet.homes[0], home)
    begun = emrchain("kek", "begin", "--home", home)
    assert begun.returncode == 0, begun.stderr
    line = error_line(
        emrchain(
            "backup",
            "create",
            "--home",
            home,
            "--recipient",
            backed.recipient,
            "--output",
            tmp_path / "out",
        )
    )
    assert "a KEK rotation is in progress" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
