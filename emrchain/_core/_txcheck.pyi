"""Types of the compiled `_txcheck` (`_txcheck.pyx`); its twin is `reference/txcheck.py`.

Every stub in `_core` states the twins' common interface: the names and signatures (with the
reference twin's annotations, text for text) that `tests/core/test_twin_interface.py` holds the
compiled module and the reference twin to.
"""

from collections.abc import Sequence

from emrchain.schema.codec import DecodedTransaction

def check_transactions(
    txs: Sequence[bytes], chain_id: bytes, max_tx_bytes: int
) -> tuple[bytes, list[bytes]]: ...
def tx_ids(txs: Sequence[bytes]) -> list[bytes]: ...
def decode_accepted(raw: bytes) -> DecodedTransaction: ...
