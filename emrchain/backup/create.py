"""Making a backup: snapshots of the chain store and the vault, the home's files, retention.

Consistency: a committed block and its state are one LevelDB batch, so a snapshot of the chain
store is always at a block boundary; its head (`Mhead`) names the height and app hash the
manifest records. The vault snapshot is taken first, then the chain's, with nothing in between:
the vault's erasure cursor is then never above the chain's height, and the node re-queues the
erasures of the blocks it re-syncs after a restore (`ErasureWorker.catch_up`).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import emrchain
from emrchain.backup.archive import ARCHIVE_SUFFIX, BackupError, Manifest, PartSource, write_archive
from emrchain.backup.parts import (
    CHAIN_PART,
    VAULT_PART,
    blob_source,
    file_source,
    home_files,
    snapshot_source,
)
from emrchain.config.node import NodeConfig
from emrchain.records.rotation import ROTATION_STATE_FILE
from emrchain.storage.interfaces import StorageUnavailableError
from emrchain.storage.vault import LevelDbKeyVault
from emrchain.store import layout
from emrchain.store.database import DATA_DIRECTORY, DATABASE_DIRECTORY, ChainDatabase
from emrchain.store.errors import StoreLockedError

ARCHIVE_PREFIX = "emrchain-backup-"
_ARCHIVE_NAME = re.compile(
    r"emrchain-backup-(?P<chain>[A-Za-z0-9._-]+)-h(?P<height>[0-9]{20})-(?P<time>[0-9]{17})\.tar"
)


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    manifest: Manifest
    removed: tuple[Path, ...]
    """Older archives retention deleted."""

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "height": self.manifest.height,
            "app_hash": self.manifest.app_hash,
            "chain_id": self.manifest.chain_id,
            "parts": len(self.manifest.parts),
            "bytes": self.path.stat().st_size,
            "removed": [str(path) for path in self.removed],
        }


def hsm_resident_keys(config: NodeConfig) -> list[str]:
    """The keys of this home that live in the HSM and so are not in the backup."""
    records = config.records
    resident = []
    if config.keys.backend == "hsm":
        resident.append(
            f"validator key: label {config.keys.hsm_validator_key_label!r} in token "
            f"{records.hsm_token_label!r}"
        )
    if records.kek_backend == "hsm":
        resident.append(
            f"KEK versions: labels {records.hsm_kek_label_prefix}-v<version> in token "
            f"{records.hsm_token_label!r}"
        )
    return resident


def chain_head(snapshot: Any) -> tuple[str, int, bytes, bytes]:
    """(chain id, height, block id, app hash) recorded in a chain store snapshot."""
    chain = snapshot.get(layout.META_CHAIN)
    head = snapshot.get(layout.META_HEAD)
    if chain is None or head is None:
        raise BackupError("the chain store is not initialised (start the node once first)")
    height, block_id, app_hash = layout.HEAD.unpack(head)
    # format u8 | chain id length u8 | chain id (`BlockStore.initialize`)
    return chain[2 : 2 + chain[1]].decode(), height, block_id, app_hash


def archive_name(chain_id: str, height: int, now_ms: int) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now_ms // 1000)) + f"{now_ms % 1000:03d}"
    return f"{ARCHIVE_PREFIX}{chain_id}-h{height:020d}-{stamp}{ARCHIVE_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Capture:
    """One moment of a home: the stores' snapshots and its files (in memory)."""

    chain_snapshot: Any
    vault_snapshot: Any
    files: list[PartSource]


def capture(config: NodeConfig, take_snapshots: Callable[[], tuple[Any, Any]]) -> Capture:
    """The home files, then (vault, chain) snapshots from `take_snapshots`, with no KEK
    rotation in progress at either end: during one, the vault's wraps and the KEK versions on
    disk move apart (a version destroyed after the files were read, or created after the
    vault was read), and a restored vault could hold wraps no restored KEK opens."""
    _refuse_during_rotation(config)
    files = [file_source(relative, path) for relative, path in home_files(config)]
    vault_snapshot, chain_snapshot = take_snapshots()
    _refuse_during_rotation(config)
    return Capture(chain_snapshot, vault_snapshot, files)


def _refuse_during_rotation(config: NodeConfig) -> None:
    state = config.data_path / ROTATION_STATE_FILE
    if state.exists():
        raise BackupError(
            f"a KEK rotation is in progress ({state}); back up once it has finished "
            "(`emrchain kek status`)"
        )


def write_backup(
    config: NodeConfig, captured: Capture, directory: Path, recipient: str, keep: int
) -> BackupResult:
    """Write one archive of `captured` into `directory`, then apply `keep`."""
    chain_snapshot, vault_snapshot = captured.chain_snapshot, captured.vault_snapshot
    chain_id, height, block_id, app_hash = chain_head(chain_snapshot)
    now_ms = time.time_ns() // 1_000_000
    sources: list[PartSource] = [
        snapshot_source(CHAIN_PART, f"{DATA_DIRECTORY}/{DATABASE_DIRECTORY}", chain_snapshot)
    ]
    if vault_snapshot is not None:
        sources.append(snapshot_source(VAULT_PART, config.records.vault_dir, vault_snapshot))
    if config.records.blob_backend == "local":
        sources.append(
            blob_source(config.resolve(config.records.blob_dir), config.records.blob_dir)
        )
    sources += captured.files
    fields = {
        "format": "emrchain-backup-manifest",
        "chain_id": chain_id,
        "height": height,
        "block_id": block_id.hex(),
        "app_hash": app_hash.hex(),
        "created_ms": now_ms,
        "moniker": config.node.moniker,
        "organization_id": config.node.organization_id,
        "data_dir": config.node.data_dir,
        "hsm_resident_keys": hsm_resident_keys(config),
        "emrchain_version": emrchain.__version__,
    }
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / archive_name(chain_id, height, now_ms)
    manifest = write_archive(target, fields, sources, recipient)
    return BackupResult(target, manifest, apply_retention(directory, chain_id, keep))


def apply_retention(directory: Path, chain_id: str, keep: int) -> tuple[Path, ...]:
    """Delete this chain's archives in `directory` beyond the newest `keep`."""
    ours = sorted(
        path
        for path in directory.iterdir()
        if (match := _ARCHIVE_NAME.fullmatch(path.name)) and match["chain"] == chain_id
    )
    removed = tuple(ours[: max(0, len(ours) - keep)])
    for path in removed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return removed


def backup_stopped_home(
    config: NodeConfig, directory: Path, recipient: str, keep: int
) -> BackupResult:
    """`emrchain backup create` on a home whose node is not running: open the stores here."""
    try:
        database = ChainDatabase.open(config.home)
    except StoreLockedError:
        raise BackupError(
            f"{config.home}: the node is running (its database is locked) but its admin socket "
            "did not answer; retry, or stop the node"
        ) from None
    try:
        vault = _open_vault(config)
        try:
            captured = capture(
                config,
                lambda: (None if vault is None else vault.snapshot(), database.db.snapshot()),
            )
            return write_backup(config, captured, directory, recipient, keep)
        finally:
            if vault is not None:
                vault.close()
    finally:
        database.close()


def _open_vault(config: NodeConfig) -> LevelDbKeyVault | None:
    path = config.resolve(config.records.vault_dir)
    if not path.exists():
        return None
    try:
        return LevelDbKeyVault(path)
    except StorageUnavailableError as error:
        raise BackupError(str(error)) from None
