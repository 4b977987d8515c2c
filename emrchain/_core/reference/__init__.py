"""The reference twin of the compiled core: the same names, results and exceptions in plain
Python, the readable statement each compiled module is tested against (`tests/core`). Loaded by
`emrchain._core` when ``EMRCHAIN_PUREPYTHON=1`` or the extensions are missing.

This package exports the same names as `emrchain._core.compiled`, its compiled counterpart
(re-exports without `__all__`: pyproject.toml lets these two modules re-export)."""

from __future__ import annotations

from typing import Final

from emrchain._core.reference import anchors
from emrchain._core.reference.absence import AbsenceFilter
from emrchain._core.reference.anchors import AnchorPath
from emrchain._core.reference.ed25519 import verify_batch, verify_transactions
from emrchain._core.reference.merkle import merkle_proof, merkle_root, verify_merkle_proof
from emrchain._core.reference.txcheck import check_transactions, decode_accepted, tx_ids
from emrchain._core.reference.writes import writes_digest
from emrchain.schema.anchor import check_layout

check_layout("emrchain._core.reference.anchors", anchors.LAYOUT)

IMPLEMENTATION: Final[str] = "python"
