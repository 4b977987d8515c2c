"""File keystore: an Ed25519 key as a small JSON file readable only by its owner.

Format: `{"type": "ed25519", "seed": "<64 hex>", "public_key": "<64 hex>"}`. The public key is
redundant with the seed; it is stored so operators can read it without tools, and checked on
load so a hand-edited file cannot silently become a different key.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path

from emrchain.crypto.keys import Ed25519Signer

KEY_FILE_MODE = 0o600
MAX_KEY_FILE_BYTES = 4096
KEY_TYPE = "ed25519"
_HEX32 = re.compile(r"[0-9a-f]{64}")


class KeystoreError(Exception):
    """A key file is missing, unreadable, malformed or too widely readable; names the file."""


def node_id(public_key: bytes) -> str:
    """The node id peers use to address a node: hex of its node key's public key."""
    return public_key.hex()


def generate_key_file(path: Path) -> Ed25519Signer:
    """Create a new key and write it to `path` (which must not exist yet)."""
    signer = Ed25519Signer.generate()
    write_key_file(path, signer)
    return signer


def write_key_file(path: Path, signer: Ed25519Signer) -> None:
    """Write `signer`'s seed to `path` with mode 0600; never overwrite an existing file."""
    write_private_json(
        path, {"type": KEY_TYPE, "seed": signer.seed.hex(), "public_key": signer.public_key.hex()}
    )


def write_private_json(path: Path, document: dict[str, object]) -> None:
    """Write a secret JSON document to `path` with mode 0600; never overwrite an existing file.

    The content is written to a temporary file, synced, then hard-linked into place: linking
    fails if `path` exists, so a key is never replaced, and a crash leaves no half-written key.
    """
    content = json.dumps(document, indent=2) + "\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except OSError as error:
        raise KeystoreError(f"{path}: cannot create key file: {error.strerror}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), KEY_FILE_MODE)  # the umask cannot widen it, but be exact
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise KeystoreError(
                f"{path}: a key file already exists; refusing to replace a key"
            ) from None
        except OSError as error:
            raise KeystoreError(f"{path}: cannot write key file: {error.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_key_file(path: Path) -> Ed25519Signer:
    """Load a key file, refusing one that group or others may access."""
    return _parse_key_document(read_private_json(path), path)


def read_private_json(path: Path) -> object:
    """Parse a secret JSON file, refusing one that group or others may access."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise KeystoreError(f"{path}: key file not found") from None
    except OSError as error:
        raise KeystoreError(f"{path}: cannot read key file: {error.strerror}") from None
    if not stat.S_ISREG(status.st_mode):
        raise KeystoreError(f"{path}: key file is not a regular file")
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        raise KeystoreError(
            f"{path}: key file is accessible by group or others (mode {mode:04o}); "
            f"private keys must be mode 0600: chmod 600 {path}"
        )
    if status.st_size > MAX_KEY_FILE_BYTES:
        raise KeystoreError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise KeystoreError(f"{path}: not a valid key file: {reason}") from None


def _parse_key_document(document: object, path: Path) -> Ed25519Signer:
    if not isinstance(document, dict) or set(document) != {"type", "seed", "public_key"}:
        raise KeystoreError(
            f"{path}: a key file is a JSON object with exactly the keys "
            '"type", "seed" and "public_key"'
        )
    if document["type"] != KEY_TYPE:
        raise KeystoreError(f'{path}: type: must be "{KEY_TYPE}", got {document["type"]!r}')
    for key in ("seed", "public_key"):
        if not isinstance(document[key], str) or not _HEX32.fullmatch(document[key]):
            raise KeystoreError(f"{path}: {key}: must be 64 lowercase hex characters")
    signer = Ed25519Signer(bytes.fromhex(document["seed"]))
    if signer.public_key.hex() != document["public_key"]:
        raise KeystoreError(
            f"{path}: public_key: does not match the seed (file edited or corrupted)"
        )
    return signer
