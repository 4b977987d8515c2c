"""Types of the compiled `_writes` (`_writes.pyx`); its twin is `reference/writes.py`."""

from collections.abc import Mapping

def writes_digest(
    writes: Mapping[bytes, bytes | None], max_writes: int, max_key_bytes: int, max_value_bytes: int
) -> bytes: ...
