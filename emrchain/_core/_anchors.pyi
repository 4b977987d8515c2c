"""Types of the compiled `_anchors` (`_anchors.pyx`); its twin is `reference/anchors.py`."""

from collections.abc import Callable, Sequence
from typing import Any

from emrchain._core.reference.anchors import Author

LAYOUT: dict[str, int | bytes]
"""The record-layout constants this module was built with (checked against
`emrchain.schema.anchor.ACCEPT_PATH_LAYOUT` at import)."""

class AnchorPath:
    def __init__(
        self,
        anchor_kind: int,
        nonce_prefix: bytes,
        record_prefix: bytes,
        patient_prefix: bytes,
        custody_prefix: bytes,
        index_prefix: bytes,
        max_records_per_patient: int,
        result_type: Callable[[int, str], Any],
    ) -> None: ...
    def deliver_block(
        self,
        txs: Sequence[bytes],
        eligible: bytes,
        pending: dict[bytes, bytes | None],
        max_pending_writes: int,
        read: Callable[[bytes], bytes | None],
        author_of: Callable[[bytes], Author | None],
        deliver: Callable[[int], object],
        results: list[Any],
        height: int,
        time_ms: int,
        sole_custodian: bool,
    ) -> int: ...
