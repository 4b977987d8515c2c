"""The hot path: batch transaction checks and decoding, merkle trees, batched Ed25519
verification, the digest of a block's state writes (its app hash step), the absence filter
over committed record keys (`store/absence.py`), the accept path of ANCHOR_RECORD on raw bytes
(`state/emr/application.py`).

Two twins implement the same functions with the same names, signatures, results and exception
types: the compiled Cython modules (`_txcheck`, `_merkle`, `_ed25519`, `_writes`, `_absence`,
`_anchors`) and the reference twin in `reference/` (plain Python, readable, the one the tests
hold the compiled modules to). Importing this package picks the compiled twin unless
``EMRCHAIN_PUREPYTHON=1`` is set or the extension is missing; `IMPLEMENTATION` says which one
loaded and `IMPORT_ERROR` why the compiled one did not.

Callers outside `_core` use only the names re-exported here: never `_txcheck` & co., nor
`reference/` (`tests/test_layers.py` enforces it). The transaction codec the twins implement
is public, in `emrchain.schema.codec`.
"""

from __future__ import annotations

import importlib
import os
from types import SimpleNamespace

from emrchain.schema.verdicts import (
    CoreError,
    LimitError,
    MerkleError,
    TxDecodeError,
    Verdict,
)

PUBLIC_FUNCTIONS = (
    "check_transactions",
    "decode_accepted",
    "tx_ids",
    "verify_batch",
    "verify_transactions",
    "merkle_root",
    "merkle_proof",
    "verify_merkle_proof",
    "writes_digest",
)
PUBLIC_CLASSES = ("AbsenceFilter", "AnchorPath")

CYTHON = "cython"
PYTHON = "python"


def _load_compiled() -> SimpleNamespace:
    # import_module (not `from . import`) so a missing extension is reported by its module name
    # rather than as a "partially initialized module" error.
    _txcheck = importlib.import_module("emrchain._core._txcheck")
    _merkle = importlib.import_module("emrchain._core._merkle")
    _ed25519 = importlib.import_module("emrchain._core._ed25519")
    _writes = importlib.import_module("emrchain._core._writes")
    _absence = importlib.import_module("emrchain._core._absence")
    _anchors = importlib.import_module("emrchain._core._anchors")

    return SimpleNamespace(
        name=CYTHON,
        check_transactions=_txcheck.check_transactions,
        decode_accepted=_txcheck.decode_accepted,
        tx_ids=_txcheck.tx_ids,
        verify_batch=_ed25519.verify_batch,
        verify_transactions=_ed25519.verify_transactions,
        merkle_root=_merkle.merkle_root,
        merkle_proof=_merkle.merkle_proof,
        verify_merkle_proof=_merkle.verify_merkle_proof,
        writes_digest=_writes.writes_digest,
        AbsenceFilter=_absence.AbsenceFilter,
        AnchorPath=_anchors.AnchorPath,
    )


def _load_pure() -> SimpleNamespace:
    from emrchain._core.reference import absence, anchors, ed25519, merkle, txcheck, writes

    return SimpleNamespace(
        name=PYTHON,
        check_transactions=txcheck.check_transactions,
        decode_accepted=txcheck.decode_accepted,
        tx_ids=txcheck.tx_ids,
        verify_batch=ed25519.verify_batch,
        verify_transactions=ed25519.verify_transactions,
        merkle_root=merkle.merkle_root,
        merkle_proof=merkle.merkle_proof,
        verify_merkle_proof=merkle.verify_merkle_proof,
        writes_digest=writes.writes_digest,
        AbsenceFilter=absence.AbsenceFilter,
        AnchorPath=anchors.AnchorPath,
    )


def implementation(name: str) -> SimpleNamespace:
    """Return one twin explicitly (tests and benchmarks compare both in one process)."""
    if name == CYTHON:
        return _load_compiled()
    if name == PYTHON:
        return _load_pure()
    raise ValueError(f"unknown implementation {name!r}; expected 'cython' or 'python'")


IMPORT_ERROR: str | None = None
if os.environ.get("EMRCHAIN_PUREPYTHON") == "1":
    _active = _load_pure()
    IMPORT_ERROR = "EMRCHAIN_PUREPYTHON=1"
else:
    try:
        _active = _load_compiled()
    except ImportError as error:
        IMPORT_ERROR = f"{type(error).__name__}: {error}"
        _active = _load_pure()

IMPLEMENTATION: str = _active.name
check_transactions = _active.check_transactions
decode_accepted = _active.decode_accepted
tx_ids = _active.tx_ids
verify_batch = _active.verify_batch
verify_transactions = _active.verify_transactions
merkle_root = _active.merkle_root
merkle_proof = _active.merkle_proof
verify_merkle_proof = _active.verify_merkle_proof
writes_digest = _active.writes_digest
AbsenceFilter = _active.AbsenceFilter
AnchorPath = _active.AnchorPath

__all__ = [
    "CYTHON",
    "IMPLEMENTATION",
    "IMPORT_ERROR",
    "PYTHON",
    "CoreError",
    "LimitError",
    "MerkleError",
    "TxDecodeError",
    "Verdict",
    "implementation",
    *PUBLIC_FUNCTIONS,
    *PUBLIC_CLASSES,
]
