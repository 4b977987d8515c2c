"""KEK rotation: a new version, every custody wrap re-wrapped under it, then the old ones destroyed.

1. `KekRotation.begin` generates version n+1 in the ring (key files or the HSM) and writes the
   rotation state file (`<data_dir>/kek-rotation.json`): the target version, the versions to
   retire, and a cursor (the last record id moved). New uploads already use n+1.
2. `run` walks the vault in record-id order, in batches. For each batch the new wraps are made
   off the event loop (an HSM call per record), then each is stored only if the vault still
   holds the exact wrap that was read (an upload, erasure or earlier move since then wins).
   After each batch the cursor is written to the state file (atomically), so a process that
   dies resumes after the last finished batch.
3. When the walk is done, a last scan checks that no wrap is left under a retired version, and
   the sealed organisation key file, if the rotation was begun with its path (the CLI does),
   is re-sealed under the new version (`emrchain/records/organization_key.py`); only
   then are the retired versions destroyed (key file zeroed and unlinked, or the HSM object
   deleted), and the state file removed.

Reads work throughout: a wrap names its version, and each version survives until step 3. A
read racing the destruction re-reads its wrap (`RecordService.seal_data_key_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from emrchain.records.key_rings import CustodyKeyRing
from emrchain.records.organization_key import rewrap_sealed_organization_key
from emrchain.storage.interfaces import CustodyWrap, KeyVault

logger = logging.getLogger(__name__)

ROTATION_STATE_FILE = "kek-rotation.json"
DEFAULT_BATCH_RECORDS = 64


class RotationError(RuntimeError):
    """A rotation cannot start, resume or finish (the message says why)."""


@dataclass(frozen=True, slots=True)
class RotationProgress:
    target_version: int
    retired_versions: tuple[int, ...]
    cursor: bytes
    """The last record id whose wrap was moved (or found already moved); b"" at the start."""
    rewrapped_records: int
    finished: bool = False
    organization_key_path: str = ""
    """The sealed organisation key file to re-seal before retiring versions ("" for none)."""

    def describe(self) -> str:
        state = "finished" if self.finished else "in progress"
        retired = ", ".join(str(version) for version in self.retired_versions) or "none"
        return (
            f"KEK rotation to version {self.target_version} {state}: {self.rewrapped_records} "
            f"custody wraps moved, cursor {self.cursor.hex()[:16] or '(start)'}, "
            f"retiring versions {retired}"
        )


class KekRotation:
    """One rotation of a node's KEK ring over its custody vault (resumable)."""

    def __init__(
        self,
        key_ring: CustodyKeyRing,
        vault: KeyVault,
        state_path: Path,
        progress: RotationProgress,
        *,
        batch_records: int = DEFAULT_BATCH_RECORDS,
        on_progress: Callable[[RotationProgress], object] | None = None,
    ) -> None:
        if batch_records <= 0:
            raise ValueError("batch_records must be positive")
        self._key_ring = key_ring
        self._vault = vault
        self._state_path = state_path
        self._batch_records = batch_records
        self._on_progress = on_progress
        self.progress = progress

    @classmethod
    def begin(
        cls, key_ring: CustodyKeyRing, vault: KeyVault, state_path: Path, **options: object
    ) -> KekRotation:
        """Generate the new version and record the rotation; refuses if one is unfinished.
        The option `organization_key_path` names a sealed organisation key file to re-seal."""
        organization_key_path = options.pop("organization_key_path", None)
        if not isinstance(organization_key_path, str | Path | None):
            raise TypeError("organization_key_path is a path")
        if state_path.exists():
            raise RotationError(
                f"{state_path}: a rotation is already in progress; resume it first"
            )
        retired = tuple(key_ring.versions())
        target = key_ring.generate().version
        progress = RotationProgress(
            target, retired, b"", 0, organization_key_path=str(organization_key_path or "")
        )
        _write_state(state_path, progress)
        logger.info("KEK rotation started: version %d, retiring %s", target, retired)
        return cls(key_ring, vault, state_path, progress, **options)  # type: ignore[arg-type]

    @classmethod
    def resume(
        cls, key_ring: CustodyKeyRing, vault: KeyVault, state_path: Path, **options: object
    ) -> KekRotation | None:
        """The unfinished rotation recorded in `state_path`, or None if there is none."""
        progress = read_state(state_path)
        if progress is None:
            return None
        if progress.target_version not in key_ring.versions():
            raise RotationError(
                f"{state_path}: rotation target KEK version {progress.target_version} is not in "
                "the key ring"
            )
        return cls(key_ring, vault, state_path, progress, **options)  # type: ignore[arg-type]

    async def run(self) -> RotationProgress:
        """Move every wrap, then destroy the retired versions. Cancel-safe: resumable."""
        while True:
            batch = self._vault.iterate(after=self.progress.cursor, limit=self._batch_records)
            if not batch:
                break
            moved = await self._move(batch)
            self._advance(batch[-1].record_id, moved)
        leftovers = self._wraps_under_retired_versions()
        if leftovers:
            # Written under a retired version after the walk passed it: impossible unless
            # something outside this rotation wrote the vault. Start the walk over.
            self._advance(b"", 0, restart=True)
            raise RotationError(
                f"{leftovers} custody wraps still use a retired KEK version; run the rotation "
                "again"
            )
        if self.progress.organization_key_path and rewrap_sealed_organization_key(
            Path(self.progress.organization_key_path), self._key_ring
        ):
            logger.info("sealed organisation key re-sealed under KEK version %d",
                        self.progress.target_version)
        for version in self.progress.retired_versions:
            if version in self._key_ring.versions():
                self._key_ring.destroy(version)
                logger.info("KEK version %d destroyed", version)
        self.progress = RotationProgress(
            self.progress.target_version,
            self.progress.retired_versions,
            self.progress.cursor,
            self.progress.rewrapped_records,
            finished=True,
            organization_key_path=self.progress.organization_key_path,
        )
        self._state_path.unlink(missing_ok=True)
        self._report()
        return self.progress

    async def _move(self, batch: list[CustodyWrap]) -> int:
        target = self.progress.target_version
        stale = [wrap for wrap in batch if wrap.kek_version != target]
        if not stale:
            return 0
        # HSM (or AES) work off the event loop; reads and uploads carry on meanwhile.
        rewrapped = await asyncio.to_thread(
            lambda: [self._key_ring.rewrap(wrap) for wrap in stale]
        )
        moved = 0
        for old, new in zip(stale, rewrapped, strict=True):
            if new.kek_version != target:
                raise RotationError(
                    f"the key ring's current version is {new.kek_version}, not the rotation's "
                    f"target {target}"
                )
            # Compare-and-set on the event loop (no await in between): an upload, erasure or
            # another writer since our read wins over our stale copy.
            if self._vault.get(old.record_id) == old:
                self._vault.put(new)
                moved += 1
        return moved

    def _advance(self, cursor: bytes, moved: int, *, restart: bool = False) -> None:
        self.progress = RotationProgress(
            self.progress.target_version,
            self.progress.retired_versions,
            cursor,
            0 if restart else self.progress.rewrapped_records + moved,
            organization_key_path=self.progress.organization_key_path,
        )
        _write_state(self._state_path, self.progress)
        self._report()

    def _report(self) -> None:
        logger.info("%s", self.progress.describe())
        if self._on_progress is not None:
            self._on_progress(self.progress)

    def _wraps_under_retired_versions(self) -> int:
        retired = set(self.progress.retired_versions)
        count, after = 0, b""
        while batch := self._vault.iterate(after=after, limit=1000):
            count += sum(1 for wrap in batch if wrap.kek_version in retired)
            after = batch[-1].record_id
        return count


def read_state(state_path: Path) -> RotationProgress | None:
    """The recorded rotation, or None when no rotation is in progress."""
    try:
        document = json.loads(state_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise RotationError(f"{state_path}: unreadable rotation state: {error}") from None
    try:
        return RotationProgress(
            int(document["target_version"]),
            tuple(int(version) for version in document["retired_versions"]),
            bytes.fromhex(document["cursor"]),
            int(document["rewrapped_records"]),
            organization_key_path=str(document.get("organization_key_path", "")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RotationError(f"{state_path}: malformed rotation state: {error}") from None


def _write_state(state_path: Path, progress: RotationProgress) -> None:
    """Replace the state file atomically (temporary file, fsync, rename)."""
    document = asdict(progress)
    document["cursor"] = progress.cursor.hex()
    document.pop("finished")
    temporary = state_path.with_name(f".{state_path.name}.tmp")
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.replace(temporary, state_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
