"""Core demo: sign a batch of anchor transactions, check and verify them with the compiled core,
build the block's merkle root and prove one inclusion, then show that tampering is caught."""

from __future__ import annotations

import time

from emrchain import _core
from emrchain.devnet.workload import DEFAULT_CHAIN_ID, anchor_transactions


def _timed(label: str, count: int, function):
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    print(f"  {label:<44} {seconds * 1e3:8.1f} ms  ({count / seconds:>10,.0f} /s)")
    return result


def main() -> int:
    count = 5_000
    print(f"emrchain core demo — implementation: {_core.IMPLEMENTATION}")
    txs = _timed(
        f"sign {count} anchor transactions (client)",
        count,
        lambda: anchor_transactions(count, senders=50),
    )
    verdicts, ids = _timed(
        "decode + stateless validation (batch)",
        count,
        lambda: _core.check_transactions(txs, DEFAULT_CHAIN_ID, 4096),
    )
    valid = _timed(
        "Ed25519 verification (batch, all cores)", count, lambda: _core.verify_transactions(txs)
    )
    root = _timed("merkle root of the tx ids", count, lambda: _core.merkle_root(ids))
    proof = _core.merkle_proof(ids, 1234)
    included = _core.verify_merkle_proof(root, ids[1234], 1234, len(ids), proof)
    print(
        f"  all valid: {set(verdicts) == {0} and set(valid) == {1}};  root {root.hex()[:16]}…;"
        f"  proof of tx 1234 ({len(proof)} hashes) verifies: {included}"
    )
    tampered = bytearray(txs[7])
    tampered[-70] ^= 1  # flip a payload bit: structure still valid, signature no longer
    verdict = _core.check_transactions([bytes(tampered)], DEFAULT_CHAIN_ID, 4096)[0][0]
    signature_ok = _core.verify_transactions([bytes(tampered)])[0]
    print(
        f"  tampered tx: stateless verdict {_core.Verdict(verdict).name}, "
        f"signature valid: {bool(signature_ok)}"
    )
    wrong_proof = _core.verify_merkle_proof(root, ids[1235], 1234, len(ids), proof)
    print(f"  proof of tx 1234 accepted for tx 1235: {wrong_proof}")
    return 0 if included and not signature_ok and not wrong_proof else 1


if __name__ == "__main__":
    raise SystemExit(main())
