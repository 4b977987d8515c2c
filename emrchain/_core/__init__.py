"""The hot path: batch transaction checks and decoding, merkle trees, batched Ed25519
verification, the digest of a block's state writes (its app hash step), the absence filter
over committed record keys (`store/absence.py`), the accept path of ANCHOR_RECORD on raw bytes
(`state/emr/application.py`).

Two twins implement the same functions with the same names, signatures, results and exception
types: the compiled Cython modules (`_txcheck`, `_merkle`, `_ed25519`, `_writes`, `_absence`,
`_anchors`, gathered in `compiled`) and the reference twin in `reference/` (plain Python,
readable, the one the tests hold the compiled modules to). The stubs `_*.pyi` give the compiled
modules their types; `tests/core/test_twin_interface.py` holds both twins to them. Importing
this package picks the compiled twin unless ``EMRCHAIN_PUREPYTHON=1`` is set or an extension is
missing; `IMPLEMENTATION` says which one loaded and `IMPORT_ERROR` why the compiled one did not.

Callers outside `_core` use only the names re-exported here: never `_txcheck` & co., nor
`reference/` (`tests/test_layering.py` enforces it). The transaction codec the twins implement
is public, in `emrchain.schema.codec`.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from emrchain.schema.verdicts import (
    CoreError,
    LimitError,
    MerkleError,
    TxDecodeError,
    Verdict,
)

CYTHON = "cython"
PYTHON = "python"
_TWIN_MODULES = {CYTHON: "emrchain._core.compiled", PYTHON: "emrchain._core.reference"}


def implementation(name: str) -> ModuleType:
    """Return one twin explicitly (tests and benchmarks compare both in one process): the
    module `emrchain._core.compiled` or `emrchain._core.reference`, with the same names."""
    if name not in _TWIN_MODULES:
        raise ValueError(f"unknown implementation {name!r}; expected 'cython' or 'python'")
    return importlib.import_module(_TWIN_MODULES[name])


def _compiled_unavailable() -> str | None:
    """Why the compiled twin is not used, or None if it is."""
    if os.environ.get("EMRCHAIN_PUREPYTHON") == "1":
        return "EMRCHAIN_PUREPYTHON=1"
    try:
        implementation(CYTHON)
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    return None


IMPORT_ERROR: str | None = _compiled_unavailable()
if IMPORT_ERROR is None:
    from emrchain._core import compiled as _twin
else:
    # One interface, two modules: mypy types the package's names by the compiled twin (its
    # stubs, `_*.pyi`); tests/core/test_twin_interface.py holds the reference twin to them.
    from emrchain._core import reference as _twin  # type: ignore[no-redef]

IMPLEMENTATION: str = _twin.IMPLEMENTATION
AbsenceFilter = _twin.AbsenceFilter
AnchorPath = _twin.AnchorPath
check_transactions = _twin.check_transactions
decode_accepted = _twin.decode_accepted
merkle_proof = _twin.merkle_proof
merkle_root = _twin.merkle_root
tx_ids = _twin.tx_ids
verify_batch = _twin.verify_batch
verify_merkle_proof = _twin.verify_merkle_proof
verify_transactions = _twin.verify_transactions
writes_digest = _twin.writes_digest

__all__ = [
    "CYTHON",
    "IMPLEMENTATION",
    "IMPORT_ERROR",
    "PYTHON",
    "AbsenceFilter",
    "AnchorPath",
    "CoreError",
    "LimitError",
    "MerkleError",
    "TxDecodeError",
    "Verdict",
    "check_transactions",
    "decode_accepted",
    "implementation",
    "merkle_proof",
    "merkle_root",
    "tx_ids",
    "verify_batch",
    "verify_merkle_proof",
    "verify_transactions",
    "writes_digest",
]
