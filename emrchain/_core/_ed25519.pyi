"""Types of the compiled `_ed25519` (`_ed25519.pyx`); its twin is `reference/ed25519.py`."""

from collections.abc import Sequence

def verify_batch(
    public_keys: Sequence[bytes],
    messages: Sequence[bytes],
    signatures: Sequence[bytes],
    threads: int = 0,
) -> bytes: ...
def verify_transactions(txs: Sequence[bytes], threads: int = 0) -> bytes: ...
