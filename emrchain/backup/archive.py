"""The backup archive: a tar file of age-encrypted parts, an encrypted manifest and a clear index.

Layout (`docs/spec/backup.md`):

    parts/<name>.age   one part each (chain store, vault, blobs, each home file), age-encrypted
                       to the operator's recovery X25519 recipient
    manifest.age       the manifest (JSON), encrypted the same way: chain id, height, app hash,
                       and per part its name, kind, home path, mode, size and SHA-256 of both
                       the plaintext and the encrypted bytes
    index.json         in the clear: the recipient and the SHA-256 of every encrypted member,
                       with a digest of itself, so damage is named before any key is needed

A part's plaintext only ever exists in memory: it is streamed from its source through the age
encryptor into a ciphertext file, so neither key material nor chain data lands on disk in the
clear. Verification goes the same way backwards, into a hashing sink.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyrage
from pyrage import x25519

FORMAT = "emrchain-backup"
FORMAT_VERSION = 1
INDEX_MEMBER = "index.json"
MANIFEST_MEMBER = "manifest.age"
PART_DIRECTORY = "parts/"
PART_SUFFIX = ".age"
ARCHIVE_SUFFIX = ".tar"
MAX_INDEX_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 16 << 20
COPY_CHUNK_BYTES = 1 << 20
PART_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,8}")
RECIPIENT_PATTERN = r"age1[02-9ac-hj-np-z]{58}"


class BackupError(Exception):
    """A backup cannot be made, read, verified or restored; the message is one line."""


@dataclass(frozen=True, slots=True)
class PartSource:
    """One part to write: `open()` returns its plaintext as a readable binary stream."""

    name: str
    kind: str
    """"kv" (a LevelDB keyspace as records), "blobs" (the local blob store), "file"."""
    path: str
    """The home-relative path a "file" part is restored to, or the store it fills."""
    mode: int
    open: Callable[[], IO[bytes]]


@dataclass(frozen=True, slots=True)
class PartEntry:
    name: str
    kind: str
    path: str
    mode: int
    plaintext_bytes: int
    plaintext_sha256: str
    encrypted_bytes: int
    encrypted_sha256: str

    @property
    def member(self) -> str:
        return PART_DIRECTORY + self.name + PART_SUFFIX


@dataclass(frozen=True, slots=True)
class Manifest:
    fields: dict[str, Any]
    parts: tuple[PartEntry, ...]

    @property
    def chain_id(self) -> str:
        return str(self.fields["chain_id"])

    @property
    def height(self) -> int:
        return int(self.fields["height"])

    @property
    def app_hash(self) -> str:
        return str(self.fields["app_hash"])

    def part(self, name: str) -> PartEntry | None:
        return next((part for part in self.parts if part.name == name), None)

    def to_json(self) -> bytes:
        document = dict(self.fields)
        document["parts"] = [
            {
                "name": part.name,
                "kind": part.kind,
                "path": part.path,
                "mode": part.mode,
                "plaintext_bytes": part.plaintext_bytes,
                "plaintext_sha256": part.plaintext_sha256,
                "encrypted_bytes": part.encrypted_bytes,
                "encrypted_sha256": part.encrypted_sha256,
            }
            for part in self.parts
        ]
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# ----------------------------------------------------------------- keys


def parse_recipient(text: str) -> x25519.Recipient:
    text = text.strip()
    if not re.fullmatch(RECIPIENT_PATTERN, text):
        raise BackupError(
            f"the recovery public key must be an age X25519 recipient (age1...), got {text[:20]!r}"
        )
    try:
        return x25519.Recipient.from_str(text)
    except pyrage.RecipientError as error:
        raise BackupError(f"the recovery public key {text[:20]}... is not valid: {error}") from None


def load_identity(path: Path) -> x25519.Identity:
    """The recovery identity of an age identity file (comment lines start with #)."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BackupError(f"cannot read the recovery identity {path}: {error}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if len(keys) != 1 or not keys[0].startswith("AGE-SECRET-KEY-1"):
        raise BackupError(f"{path} is not an age identity file (one AGE-SECRET-KEY-1... line)")
    try:
        return x25519.Identity.from_str(keys[0])
    except pyrage.IdentityError as error:
        raise BackupError(f"{path}: invalid age identity: {error}") from None


def write_identity(path: Path) -> str:
    """Create a new recovery identity file (mode 0600, never overwritten); its public key."""
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    text = (
        "# emrchain backup recovery identity: keep it off the node\n"
        f"# public key: {public}\n{identity}\n"
    )
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{path} exists already; choose another file") from None
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return public


# ----------------------------------------------------------------- streams


class HashingReader(io.RawIOBase):
    """Reads `source`, hashing and counting what passes."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.digest = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        if not data:
            return 0
        buffer[: len(data)] = data
        self.digest.update(data)
        self.count += len(data)
        return len(data)


class HashingWriter(io.RawIOBase):
    """Hashes and counts what is written, then hands it to `forward` (if any)."""

    def __init__(self, forward: Callable[[bytes], None] | None = None) -> None:
        self._forward = forward
        self.digest = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.digest.update(chunk)
        self.count += len(chunk)
        if self._forward is not None:
            self._forward(chunk)
        return len(chunk)


class ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (the plaintext of a kv part)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


# ----------------------------------------------------------------- writing


def write_archive(
    target: Path, fields: dict[str, Any], sources: Sequence[PartSource], recipient: str
) -> Manifest:
    """Write `target` (must not exist): every part, the manifest, the index. Written under a
    temporary name and renamed once complete and synced, so a crash leaves no partial archive
    under a backup's name."""
    age_recipient = parse_recipient(recipient)
    if target.exists():
        raise BackupError(f"{target} exists already")
    temporary = target.with_name(f".{target.name}.partial")
    scratch = target.with_name(f".{target.name}.part")
    entries: list[PartEntry] = []
    digests: dict[str, str] = {}
    try:
        with tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as archive:
            for source in sources:
                entry = _encrypt_part(source, age_recipient, scratch)
                _add_member(archive, entry.member, scratch)
                entries.append(entry)
                digests[entry.member] = entry.encrypted_sha256
            manifest = Manifest(dict(fields, recipient=recipient), tuple(entries))
            encrypted_manifest = pyrage.encrypt(manifest.to_json(), [age_recipient])
            _add_bytes(archive, MANIFEST_MEMBER, encrypted_manifest)
            digests[MANIFEST_MEMBER] = hashlib.sha256(encrypted_manifest).hexdigest()
            _add_bytes(archive, INDEX_MEMBER, _index_bytes(recipient, digests))
        _sync(temporary)
        temporary.rename(target)
        _sync(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return manifest


def _encrypt_part(source: PartSource, recipient: x25519.Recipient, scratch: Path) -> PartEntry:
    if not PART_NAME.fullmatch(source.name):
        raise BackupError(f"part name {source.name!r} is not allowed")
    with source.open() as plaintext, open(scratch, "wb") as ciphertext:
        reader = HashingReader(plaintext)
        writer = HashingWriter(lambda chunk: _write(ciphertext, chunk))
        pyrage.encrypt_io(reader, writer, [recipient])
        ciphertext.flush()
        os.fsync(ciphertext.fileno())
    return PartEntry(
        source.name,
        source.kind,
        source.path,
        source.mode,
        reader.count,
        reader.digest.hexdigest(),
        writer.count,
        writer.digest.hexdigest(),
    )


def _write(handle: IO[bytes], chunk: bytes) -> None:
    handle.write(chunk)


def _member_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    return info


def _add_member(archive: tarfile.TarFile, name: str, path: Path) -> None:
    with open(path, "rb") as handle:
        archive.addfile(_member_info(name, os.fstat(handle.fileno()).st_size), handle)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    archive.addfile(_member_info(name, len(data)), io.BytesIO(data))


def _index_document(recipient: str, digests: dict[str, str]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "recipient": recipient,
        "members": dict(sorted(digests.items())),
    }


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _index_bytes(recipient: str, digests: dict[str, str]) -> bytes:
    document = _index_document(recipient, digests)
    document["index_sha256"] = hashlib.sha256(_canonical(document)).hexdigest()
    return _canonical(document) + b"\n"


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ----------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Index:
    recipient: str
    members: dict[str, str]


class OpenArchive:
    """An archive opened for reading: the index checked, members reachable by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 - closed by close()
            self._members = {member.name: member for member in self._tar.getmembers()}
        except FileNotFoundError:
            raise BackupError(f"{path}: no such backup archive") from None
        except (tarfile.TarError, OSError) as error:
            raise BackupError(
                f"{path}: not a readable backup archive (damaged container: {error})"
            ) from None
        self.index = self._read_index()

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> OpenArchive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_index(self) -> Index:
        member = self._members.get(INDEX_MEMBER)
        if member is None:
            raise BackupError(
                f"{self.path}: the index ({INDEX_MEMBER}) is missing; not an emrchain backup"
            )
        if member.size > MAX_INDEX_BYTES:
            raise BackupError(f"{self.path}: the index is too large ({member.size} bytes)")
        raw = self._read_member(member)
        try:
            document = json.loads(raw)
            claimed = document.pop("index_sha256")
            intact = hashlib.sha256(_canonical(document)).hexdigest() == claimed
            recipient, members = document["recipient"], document["members"]
        except (ValueError, KeyError, TypeError, AttributeError):
            intact = False
        if not intact:
            raise BackupError(
                f"{self.path}: the index ({INDEX_MEMBER}) is corrupted (its digest does not match)"
            )
        if document.get("format") != FORMAT or document.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"{self.path}: format {document.get('format')!r} version "
                f"{document.get('format_version')!r}; this node reads {FORMAT} {FORMAT_VERSION}"
            )
        return Index(str(recipient), {str(name): str(digest) for name, digest in members.items()})

    def _read_member(self, member: tarfile.TarInfo) -> bytes:
        handle = self._tar.extractfile(member)
        if handle is None:
            raise BackupError(f"{self.path}: member {member.name} is not a file")
        with handle:
            return handle.read()

    def check_members(self) -> None:
        """Every member the index lists is present with its SHA-256; nothing else is there."""
        for name, digest in self.index.members.items():
            member = self._members.get(name)
            if member is None:
                raise BackupError(f"part {_part_name(name)} is missing from the archive")
            actual = hashlib.sha256()
            for chunk in self._chunks(member):
                actual.update(chunk)
            if actual.hexdigest() != digest:
                raise BackupError(
                    f"part {_part_name(name)} is corrupted: the SHA-256 of its encrypted bytes "
                    "differs from the index"
                )
        extra = sorted(set(self._members) - set(self.index.members) - {INDEX_MEMBER})
        if extra:
            raise BackupError(
                f"the archive holds members the index does not list: {', '.join(extra)}"
            )

    def _chunks(self, member: tarfile.TarInfo) -> Iterator[bytes]:
        handle = self._tar.extractfile(member)
        if handle is None:
            raise BackupError(f"{self.path}: member {member.name} is not a file")
        with handle:
            while chunk := handle.read(COPY_CHUNK_BYTES):
                yield chunk

    def check_identity(self, identity: x25519.Identity) -> None:
        public = str(identity.to_public())
        if public != self.index.recipient:
            raise BackupError(
                f"wrong recovery key: the archive is encrypted to {self.index.recipient}, this "
                f"identity's public key is {public}"
            )

    def manifest(self, identity: x25519.Identity) -> Manifest:
        member = self._members.get(MANIFEST_MEMBER)
        if member is None:
            raise BackupError("part manifest is missing from the archive")
        if member.size > MAX_MANIFEST_BYTES:
            raise BackupError(f"the manifest is too large ({member.size} bytes)")
        try:
            plaintext = pyrage.decrypt(self._read_member(member), [identity])
        except (pyrage.DecryptError, OSError) as error:
            raise BackupError(f"the manifest cannot be decrypted ({error})") from None
        manifest = _parse_manifest(plaintext)
        listed = {part.member: part.encrypted_sha256 for part in manifest.parts}
        listed[MANIFEST_MEMBER] = self.index.members.get(MANIFEST_MEMBER, "")
        if listed != self.index.members:
            raise BackupError("the manifest and the index list different parts or digests")
        if manifest.fields.get("recipient") != self.index.recipient:
            raise BackupError("the manifest and the index name different recipients")
        return manifest

    def decrypt_part(
        self, part: PartEntry, identity: x25519.Identity, consume: Callable[[bytes], None] | None
    ) -> None:
        """Decrypt `part` through `consume` (plaintext chunks, in memory), checking its size and
        SHA-256 against the manifest."""
        member = self._members.get(part.member)
        if member is None:
            raise BackupError(f"part {part.name} is missing from the archive")
        handle = self._tar.extractfile(member)
        if handle is None:
            raise BackupError(f"part {part.name} is not a file in the archive")
        writer = HashingWriter(consume)
        with handle:
            try:
                pyrage.decrypt_io(handle, writer, [identity])
            except (pyrage.DecryptError, OSError) as error:
                raise BackupError(f"part {part.name} cannot be decrypted ({error})") from None
        if (
            writer.count != part.plaintext_bytes
            or writer.digest.hexdigest() != part.plaintext_sha256
        ):
            raise BackupError(
                f"part {part.name}: its decrypted content differs from the manifest's SHA-256"
            )


def _part_name(member: str) -> str:
    if member == MANIFEST_MEMBER:
        return "manifest"
    return member.removeprefix(PART_DIRECTORY).removesuffix(PART_SUFFIX)


def _parse_manifest(plaintext: bytes) -> Manifest:
    try:
        document = json.loads(plaintext)
        parts = tuple(
            PartEntry(
                str(item["name"]),
                str(item["kind"]),
                str(item["path"]),
                int(item["mode"]),
                int(item["plaintext_bytes"]),
                str(item["plaintext_sha256"]),
                int(item["encrypted_bytes"]),
                str(item["encrypted_sha256"]),
            )
            for item in document.pop("parts")
        )
        for key in ("chain_id", "height", "app_hash"):
            document[key]
    except (ValueError, KeyError, TypeError) as error:
        raise BackupError(f"the manifest is malformed ({error})") from None
    for part in parts:
        if not PART_NAME.fullmatch(part.name):
            raise BackupError(f"the manifest names a part {part.name!r} that is not allowed")
    return Manifest(document, parts)


def verify_archive(path: Path, identity: x25519.Identity) -> Manifest:
    """Integrity without restoring: the container, the index, every member's SHA-256, the
    recovery key, the manifest, and every part's decrypted SHA-256."""
    with OpenArchive(path) as archive:
        archive.check_members()
        archive.check_identity(identity)
        manifest = archive.manifest(identity)
        for part in manifest.parts:
            archive.decrypt_part(part, identity, None)
    return manifest
