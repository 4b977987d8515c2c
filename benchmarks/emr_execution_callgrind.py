"""Instruction count of EMR execution per anchor, for before/after comparisons on a busy machine.

Wall-clock figures on a shared machine move with the load; instruction counts do not. Run the
block of `test_bench_emr_execution.py` (2,000 anchors, committed state in memory) ROUNDS times
under callgrind, twice, and divide the difference: setup and imports cancel out.

    for rounds in 1 3; do
      valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/emr_execution_callgrind.py $rounds 2>&1 | grep Collected
    done
    # instructions per anchor = (collected(3) - collected(1)) / 2 / 2000

A second argument `node` passes the stateless verdicts too, as a node does for a block it
built or validated (execution then skips the batch check).

Under valgrind OpenSSL takes its portable SHA-256 code (no SHA-NI), so the batch check's
transaction hashing counts ~10k instructions per transaction that real hardware does in ~0.2 µs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_bench_emr_execution import EXPECTED_APP_HASH, build_chain

from emrchain.state.emr import EmrApplication
from tests.state.chain import CHAIN_ID


def main(rounds: int, as_node: bool) -> None:
    builder, block = build_chain()
    application = EmrApplication(CHAIN_ID, builder.state)
    verdicts = b"\x01" * len(block.txs)
    stateless = bytes(len(block.txs)) if as_node else None
    for _ in range(rounds):
        result = application.execute_block(
            block, builder.state, signature_verdicts=verdicts, stateless_verdicts=stateless
        )
    assert result.app_hash.hex() == EXPECTED_APP_HASH
    print(f"{rounds} rounds of {len(block.txs)} anchors, app hash {result.app_hash.hex()[:16]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1, sys.argv[2:3] == ["node"])
