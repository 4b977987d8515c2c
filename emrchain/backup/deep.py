"""`backup verify --deep`: re-execute the backed-up chain and compare app hashes and state.

Only the chain part and the genesis are decrypted, into a temporary directory that is deleted
afterwards (chain data, no key material). From the genesis a fresh store is built and every
block of the backup is executed on it, as block sync would; after each block its app hash must
equal the one the backup's store records for that height, and at the end the head must equal
the manifest's app hash and the re-executed state must equal the backup's state entry by entry.
A part altered and re-encrypted with a consistent manifest passes the plain checks (digests are
not signatures) and fails here.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pyrage import x25519

from emrchain.backup.archive import BackupError, Manifest, OpenArchive
from emrchain.backup.parts import CHAIN_PART, FILES_PREFIX, KvWriter, leveldb_batch_writer
from emrchain.config.errors import ConfigError
from emrchain.config.genesis import Genesis, parse_genesis_text
from emrchain.config.node import NODE_CONFIG_FILE, parse_node_config_text
from emrchain.state.emr import EmrApplication, GenesisAdmin, GenesisOrganization
from emrchain.store import layout
from emrchain.store.block_store import BlockStore
from emrchain.store.database import ChainDatabase
from emrchain.types.execution import ExecutionResult


def deep_verify(path: Path, identity: x25519.Identity) -> Manifest:
    """Plain verification, then the re-execution; BackupError naming the first mismatch."""
    scratch = Path(tempfile.mkdtemp(prefix="emrchain-deep-verify-"))
    try:
        with OpenArchive(path) as archive:
            archive.check_members()
            archive.check_identity(identity)
            manifest = archive.manifest(identity)
            for part in manifest.parts:
                archive.decrypt_part(part, identity, None)
            genesis = _genesis(
                archive, manifest, identity, _genesis_file(archive, manifest, identity)
            )
            backed_up = ChainDatabase.open(scratch / "backup")
            try:
                chain = manifest.part(CHAIN_PART)
                if chain is None:
                    raise BackupError("part chain is missing from the manifest")
                writer = KvWriter(leveldb_batch_writer(backed_up.db))
                archive.decrypt_part(chain, identity, writer.feed)
                writer.finish()
                _replay(genesis, manifest, backed_up, scratch / "replay")
            finally:
                backed_up.close()
        return manifest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _genesis_file(archive: OpenArchive, manifest: Manifest, identity: x25519.Identity) -> str:
    """`[node] genesis_file` of the backed-up node.toml (decrypted in memory)."""
    part = manifest.part(FILES_PREFIX + NODE_CONFIG_FILE)
    if part is None:
        raise BackupError(f"part {FILES_PREFIX + NODE_CONFIG_FILE} is missing from the manifest")
    chunks: list[bytes] = []
    archive.decrypt_part(part, identity, chunks.append)
    try:
        text = b"".join(chunks).decode("utf-8")
        config = parse_node_config_text(text, home=Path("/"), source=part.name)
    except (ConfigError, UnicodeDecodeError) as error:
        raise BackupError(f"the backed-up node.toml does not load: {error}") from None
    return config.node.genesis_file


def _genesis(
    archive: OpenArchive, manifest: Manifest, identity: x25519.Identity, genesis_file: str
) -> Genesis:
    part = manifest.part(FILES_PREFIX + genesis_file)
    if part is None:
        raise BackupError(
            f"part {FILES_PREFIX + genesis_file} (the genesis) is missing from the manifest"
        )
    chunks: list[bytes] = []
    archive.decrypt_part(part, identity, chunks.append)
    try:
        return parse_genesis_text(b"".join(chunks).decode("utf-8"), part.name)
    except (ConfigError, ValueError, UnicodeDecodeError) as error:
        raise BackupError(f"the backup's genesis does not parse: {error}") from None


def _initial(application: EmrApplication, genesis: Genesis) -> ExecutionResult:
    organizations = [
        GenesisOrganization(
            organization.organization_id,
            organization.name,
            organization.encryption_key,
            admins=tuple(
                GenesisAdmin(admin.member_key, admin.encryption_key)
                for admin in organization.admins
            ),
        )
        for organization in genesis.organizations
    ]
    return application.init_chain(
        genesis.validator_set(),
        genesis.genesis_time_ms,
        organizations=organizations,
        custody_set_size=genesis.custody_set_size,
    )


def _replay(
    genesis: Genesis, manifest: Manifest, backed_up: ChainDatabase, directory: Path
) -> None:
    limits = genesis.consensus_params
    source = BlockStore(backed_up, limits)
    if source.chain_id != genesis.chain_id_bytes:
        raise BackupError("the backup's chain store is of another chain than its genesis")
    database = ChainDatabase.open(directory)
    try:
        fresh = BlockStore(database, limits)
        application = EmrApplication(genesis.chain_id_bytes, fresh.state_view(), limits=limits)
        fresh.initialize(
            genesis.chain_id_bytes, genesis.validator_set(), _initial(application, genesis)
        )
        _compare_app_hash(0, source.app_hash(0), fresh.last_app_hash())
        for height in range(1, source.last_height() + 1):
            block, commit = source.block(height), source.commit(height)
            if block is None or commit is None:
                raise BackupError(f"the backup's chain store lacks block {height} or its commit")
            result = application.execute_block(block, fresh.state_view())
            _compare_app_hash(height, source.app_hash(height), result.app_hash)
            fresh.commit_block(block, commit, result)
        if (
            fresh.last_app_hash().hex() != manifest.app_hash
            or source.last_height() != manifest.height
        ):
            raise BackupError(
                f"app hash mismatch: the manifest says height {manifest.height} app hash "
                f"{manifest.app_hash[:16]}, re-execution gives height {fresh.last_height()} "
                f"app hash {fresh.last_app_hash().hex()[:16]}"
            )
        _compare_state(backed_up, database)
    finally:
        database.close()


def _compare_app_hash(height: int, recorded: bytes | None, computed: bytes) -> None:
    if recorded != computed:
        shown = "nothing" if recorded is None else recorded.hex()[:16]
        raise BackupError(
            f"app hash mismatch at height {height}: the backup's chain store records {shown}, "
            f"re-executing its blocks gives {computed.hex()[:16]}"
        )


def _compare_state(backed_up: ChainDatabase, replayed: ChainDatabase) -> None:
    """The application state the backup holds must be the one its blocks produce: the app hash
    commits to it only through the writes, so a state entry altered in place keeps every
    recorded app hash; this comparison is what finds it."""
    ours = backed_up.db.iterator(prefix=layout.STATE)
    theirs = replayed.db.iterator(prefix=layout.STATE)
    for left, right in zip(ours, theirs, strict=False):
        if left != right:
            key = min(left[0], right[0])
            raise BackupError(
                f"app hash mismatch: the backup's state differs from the state its blocks "
                f"produce at key {key[1:].hex()[:48]} (the chain part was altered)"
            )
    if next(ours, None) is not None or next(theirs, None) is not None:
        raise BackupError(
            "app hash mismatch: the backup's state and the state its blocks produce hold "
            "different numbers of entries (the chain part was altered)"
        )
