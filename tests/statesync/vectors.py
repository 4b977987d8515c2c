"""Build `tests/vectors/snapshot_manifest.json`: a snapshot manifest's canonical encoding, its
digest, the bytes a validator signs to vouch for it and that (deterministic) signature.

Run `python -m tests.statesync.vectors --write` only when the manifest encoding deliberately
changes (a new MANIFEST_VERSION); `test_manifest.py` requires byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from emrchain.crypto.keys import Ed25519Signer
from emrchain.statesync.chunks import chunk_hash, cut_chunks
from emrchain.statesync.manifest import Manifest, sign_vouch, vouch_message
from emrchain.types import BlockHeader, Validator, ValidatorSet

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "snapshot_manifest.json"
CHAIN_ID = b"emrchain-vectors"
ENTRIES = [(b"a/%03d" % index, b"value-%d" % index * (index % 7)) for index in range(40)]


def signers() -> list[Ed25519Signer]:
    return [Ed25519Signer(hashlib.sha256(b"vouch-%d" % index).digest()) for index in range(4)]


def validator_set() -> ValidatorSet:
    return ValidatorSet(Validator(signer.public_key, 10) for signer in signers())


def manifest() -> Manifest:
    validators = validator_set()
    header = BlockHeader(
        chain_id=CHAIN_ID,
        height=1_000,
        time_ms=1_700_000_000_000,
        previous_block_id=bytes(range(32)),
        last_commit_hash=bytes(range(1, 33)),
        tx_root=bytes(32),
        tx_count=0,
        app_hash=bytes([7]) * 32,
        validators_hash=validators.hash,
        next_validators_hash=validators.hash,
        evidence_hash=bytes(32),
        proposer=signers()[0].public_key,
    )
    chunks = list(cut_chunks(ENTRIES, 128))
    return Manifest(
        CHAIN_ID,
        1_000,
        header,
        bytes([9]) * 32,
        validators,
        validators,
        validators,
        len(ENTRIES),
        tuple(chunk_hash(chunk) for chunk, _ in chunks),
    )


def build() -> dict[str, Any]:
    built = manifest()
    chunks = [chunk.hex() for chunk, _ in cut_chunks(ENTRIES, 128)]
    return {
        "chunk_size_bytes": 128,
        "chunks": chunks,
        "manifest": built.encode().hex(),
        "digest": built.digest.hex(),
        "vouch_message": vouch_message(CHAIN_ID, built.height, built.digest).hex(),
        "vouch_signature": sign_vouch(signers()[0], built).signature.hex(),
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        VECTORS.write_text(json.dumps(build(), indent=1) + "\n")
    else:
        print(json.dumps(build(), indent=1))
