"""Restoring a node home from a backup archive, with a signing hold against double-signing.

Everything is written into a staging directory next to the home and moved into place only once
complete, so a failure leaves the target as it was. A non-empty target is refused unless
`force`, and even then only an emrchain home of the same genesis is replaced.

Signing hold (`docs/spec/backup.md` §5): the node that was lost may have signed votes after the
backup was taken, up to one height above the chain's head at the moment it was lost. The
restored home's double-sign guard is therefore set as if this validator had already signed the
last step of round 0 at height `network_height + 2`, `network_height` being the highest head
known when restoring (asked of peers, or given by the operator), which is at least the head at
the loss. The guard then refuses every signature at or below `network_height + 1` and round 0
of the height after; the node block-syncs up to the network and votes again from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import plyvel
from pyrage import x25519

from emrchain.backup.archive import BackupError, Manifest, OpenArchive, PartEntry
from emrchain.backup.parts import (
    BLOBS_PART,
    CHAIN_PART,
    FILES_PREFIX,
    VAULT_PART,
    KvWriter,
    blob_batch_writer,
    leveldb_batch_writer,
)
from emrchain.config.errors import ConfigError
from emrchain.config.genesis import load_genesis
from emrchain.config.node import (
    CONFIG_DIR,
    NODE_CONFIG_FILE,
    NodeConfig,
    load_node_config,
    parse_node_config_text,
)
from emrchain.consensus.signing_guard import SignedStep, SigningState
from emrchain.store import layout
from emrchain.store.database import database_path
from emrchain.types.vote import NIL_BLOCK_ID

PRIVATE_DIRECTORY_MODE = 0o700
PEER_TIMEOUT_S = 5.0
HOLD_MARGIN_HEIGHTS = 2
"""The guard is set at network head + 2: the lost node signed at most at head + 1."""


@dataclass(frozen=True, slots=True)
class RestoreResult:
    home: Path
    manifest: Manifest
    signing_hold_height: int
    elapsed_s: float


def peer_status(urls: Sequence[str]) -> dict[str, tuple[int, str] | str]:
    """Each RPC URL's (`latest_height`, `chain_id`), or why it could not be read."""
    answers: dict[str, tuple[int, str] | str] = {}
    for url in urls:
        try:
            with urllib.request.urlopen(
                url.rstrip("/") + "/status", timeout=PEER_TIMEOUT_S
            ) as response:
                status = json.loads(response.read())
                answers[url] = (int(status["latest_height"]), str(status["chain_id"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            answers[url] = str(error) or type(error).__name__
    return answers


def learn_network_head(
    archive_path: Path, identity: x25519.Identity, peer_urls: Sequence[str], home: Path
) -> int:
    """The highest head the peers report (`peer_urls`, else the other organisations' nodes the
    backed-up config names); every answering peer must be on the backup's chain."""
    with OpenArchive(archive_path) as archive:
        archive.check_identity(identity)
        manifest = archive.manifest(identity)
        urls = list(peer_urls) or _configured_peers(archive, manifest, identity, home)
    if not urls:
        raise BackupError(
            "no peer to learn the chain's head from: pass --peer-rpc URL of a running node, or "
            "--signing-hold-height H if every node is down"
        )
    answers = peer_status(urls)
    heights = []
    for url, answer in answers.items():
        if isinstance(answer, tuple):
            height, chain_id = answer
            if chain_id != manifest.chain_id:
                raise BackupError(
                    f"peer {url} is on chain {chain_id!r}, the backup is of chain "
                    f"{manifest.chain_id!r}"
                )
            heights.append(height)
    if not heights:
        reasons = "; ".join(f"{url}: {why}" for url, why in answers.items())
        raise BackupError(
            f"no peer answered /status ({reasons}); pass --peer-rpc URL of a running node, or "
            "--signing-hold-height H if every node is down"
        )
    return max(heights)


def _configured_peers(
    archive: OpenArchive, manifest: Manifest, identity: x25519.Identity, home: Path
) -> list[str]:
    """The peers the backed-up node.toml names (decrypted in memory)."""
    part = manifest.part(FILES_PREFIX + NODE_CONFIG_FILE)
    if part is None:
        return []
    chunks: list[bytes] = []
    archive.decrypt_part(part, identity, chunks.append)
    try:
        config = parse_node_config_text(
            b"".join(chunks).decode("utf-8"), home=home, source=part.name
        )
    except (ConfigError, UnicodeDecodeError) as error:
        raise BackupError(f"the backed-up node.toml does not load: {error}") from None
    return peer_rpc_urls(config)


def peer_rpc_urls(config: NodeConfig) -> list[str]:
    """The other organisations' node RPC URLs the config knows ([records] custodian_rpc_urls)."""
    own = config.node.organization_id
    urls = []
    for entry in config.records.custodian_rpc_urls:
        organization, _, url = entry.partition("=")
        if organization != own:
            urls.append(url)
    return urls


def restore_home(
    archive_path: Path,
    identity: x25519.Identity,
    home: Path,
    *,
    network_height: int,
    force: bool = False,
) -> RestoreResult:
    """Rebuild `home` from the archive; the guard is held up to `network_height` + 2."""
    started = time.monotonic()
    home = home.absolute()
    _check_target(home, force)
    staging = Path(tempfile.mkdtemp(prefix=f".{home.name}-restore-", dir=_parent(home)))
    try:
        os.chmod(staging, PRIVATE_DIRECTORY_MODE)
        with OpenArchive(archive_path) as archive:
            archive.check_members()
            archive.check_identity(identity)
            manifest = archive.manifest(identity)
            _restore_files(archive, manifest, identity, staging)
            config = _restored_config(staging, manifest)
            _check_same_genesis(home, force, config, manifest)
            _restore_stores(archive, manifest, identity, config)
        hold = max(network_height, manifest.height) + HOLD_MARGIN_HEIGHTS
        _hold_signing(staging, hold)
        _move_into_place(staging, home)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RestoreResult(home, manifest, hold, time.monotonic() - started)


def _parent(home: Path) -> Path:
    home.parent.mkdir(parents=True, exist_ok=True)
    return home.parent


def _check_target(home: Path, force: bool) -> None:
    if home.exists() and not home.is_dir():
        raise BackupError(f"{home} exists and is not a directory")
    if not home.exists() or not any(home.iterdir()):
        return
    if not force:
        raise BackupError(f"{home} is not empty; restore never overwrites a home unless --force")
    if not (home / NODE_CONFIG_FILE).is_file():
        raise BackupError(
            f"{home} is not empty and has no {NODE_CONFIG_FILE}: not an emrchain home, so "
            "--force does not replace it"
        )
    if database_path(home).exists():
        # A running node holds the database lock: never replace its home under it.
        try:
            plyvel.DB(str(database_path(home)), create_if_missing=False).close()
        except plyvel.IOError as error:
            if "lock" in str(error).lower():
                raise BackupError(
                    f"{home}: a node is running with this home; stop it first"
                ) from None
        except plyvel.Error:
            pass  # a damaged database is what --force replaces


def _restore_files(
    archive: OpenArchive, manifest: Manifest, identity: x25519.Identity, staging: Path
) -> None:
    for part in manifest.parts:
        if part.kind != "file":
            continue
        target = _inside(staging, part.path)
        target.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
        # Written owner-only, then given the mode it had in the home (key files: 0600).
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            archive.decrypt_part(part, identity, lambda chunk: _write(handle, chunk))
            handle.flush()
            os.fchmod(handle.fileno(), part.mode & 0o777)
            os.fsync(handle.fileno())


def _write(handle: IO[bytes], chunk: bytes) -> None:
    handle.write(chunk)


def _inside(root: Path, relative: str) -> Path:
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BackupError(f"the archive names a path outside the home: {relative!r}")
    return root / path


def _restored_config(staging: Path, manifest: Manifest) -> NodeConfig:
    try:
        config = load_node_config(staging)
        genesis = load_genesis(config.genesis_path)
    except (ConfigError, OSError) as error:
        raise BackupError(f"the restored config or genesis does not load: {error}") from None
    if genesis.chain_id != manifest.chain_id:
        raise BackupError(
            f"the backup's genesis is for chain {genesis.chain_id!r}, its manifest says "
            f"{manifest.chain_id!r}"
        )
    return config


def _check_same_genesis(home: Path, force: bool, config: NodeConfig, manifest: Manifest) -> None:
    """With --force over an existing home: the home must be of the same genesis."""
    if not force or not (home / NODE_CONFIG_FILE).is_file():
        return
    try:
        existing = load_node_config(home).genesis_path.read_bytes()
    except (ConfigError, OSError):
        return  # a home too broken to read its genesis is what --force is for
    ours = config.genesis_path.read_bytes()
    if hashlib.sha256(existing).digest() != hashlib.sha256(ours).digest():
        raise BackupError(
            f"{home} holds a different genesis than the backup (chain {manifest.chain_id!r}); "
            "restore it into an empty directory instead"
        )


def _restore_stores(
    archive: OpenArchive, manifest: Manifest, identity: x25519.Identity, config: NodeConfig
) -> None:
    chain = manifest.part(CHAIN_PART)
    if chain is None:
        raise BackupError("part chain is missing from the manifest")
    _restore_kv(archive, chain, identity, database_path(config.home))
    vault = manifest.part(VAULT_PART)
    if vault is not None:
        _restore_kv(archive, vault, identity, config.resolve(config.records.vault_dir))
    blobs = manifest.part(BLOBS_PART)
    if blobs is not None:
        directory = config.resolve(config.records.blob_dir)
        directory.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
        writer = KvWriter(blob_batch_writer(directory))
        archive.decrypt_part(blobs, identity, writer.feed)
        writer.finish()


def _restore_kv(
    archive: OpenArchive, part: PartEntry, identity: x25519.Identity, path: Path
) -> None:
    path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    database = plyvel.DB(str(path), create_if_missing=True, error_if_exists=True)
    try:
        writer = KvWriter(leveldb_batch_writer(database))
        archive.decrypt_part(part, identity, writer.feed)
        writer.finish()
    finally:
        database.close()


def _hold_signing(staging: Path, hold_height: int) -> None:
    """Set the guard as if round 0 of `hold_height` was signed to its last step (synced)."""
    database = plyvel.DB(str(database_path(staging)), create_if_missing=False)
    try:
        existing = database.get(layout.SIGNING_STATE)
        held = SigningState(hold_height, 0, SignedStep.PRECOMMIT, NIL_BLOCK_ID, bytes(32))
        if existing is not None and SigningState.decode(existing).position >= held.position:
            return
        database.put(layout.SIGNING_STATE, held.encode(), sync=True)
    finally:
        database.close()


def _move_into_place(staging: Path, home: Path) -> None:
    if home.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{home.name}-replaced-", dir=home.parent))
        replaced = aside / "home"
        home.rename(replaced)
        try:
            staging.rename(home)
        except BaseException:
            replaced.rename(home)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        staging.rename(home)
    _sync_directory(home.parent)


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = ["CONFIG_DIR", "RestoreResult", "learn_network_head", "peer_status", "restore_home"]
