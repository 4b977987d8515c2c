"""The progress record (`keys.PROGRESS`): the last executed height and that block's time.

Written by the block pipeline at genesis and at every block; read by the node (the next
block's time must not go back), the store's startup check (`store/reconcile.py`) and the RPC
(consent is judged no earlier than the last block's time).
"""

from __future__ import annotations

import struct

from emrchain.state import keys
from emrchain.state.validators import StateCorruptionError
from emrchain.state.view import StateView

_PROGRESS = struct.Struct(">QQ")


def encode_progress(height: int, time_ms: int) -> bytes:
    """last executed height u64 | that block's time_ms u64."""
    return _PROGRESS.pack(height, time_ms)


def read_progress(view: StateView) -> tuple[int, int]:
    """(last executed height, its block time in ms) recorded in application state."""
    raw = view.get(keys.PROGRESS)
    if raw is None or len(raw) != _PROGRESS.size:
        raise StateCorruptionError("the progress record is missing or malformed (no genesis?)")
    height, time_ms = _PROGRESS.unpack(raw)
    return height, time_ms
