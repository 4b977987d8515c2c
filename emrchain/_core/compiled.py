"""The compiled twin as one module: the names of the six extension modules that
`emrchain._core` exports, next to `reference` (the pure-Python twin, same names).

Importing it raises ImportError when an extension is missing (not built, or
``EMRCHAIN_NO_EXTENSIONS=1``); the ImportError names the missing module. Re-exports without
`__all__`: pyproject.toml lets these two modules re-export.
"""

from __future__ import annotations

from typing import Final

from emrchain._core import _anchors
from emrchain._core._absence import AbsenceFilter
from emrchain._core._anchors import AnchorPath
from emrchain._core._ed25519 import verify_batch, verify_transactions
from emrchain._core._merkle import merkle_proof, merkle_root, verify_merkle_proof
from emrchain._core._txcheck import check_transactions, decode_accepted, tx_ids
from emrchain._core._writes import writes_digest
from emrchain.schema.anchor import check_layout

# A module built before the record layout changed is refused here, so the package falls back to
# the reference twin and says why in IMPORT_ERROR.
check_layout("emrchain._core._anchors", _anchors.LAYOUT)

IMPLEMENTATION: Final[str] = "cython"
