"""kill -9 soak: one validator killed and restarted many times while the devnet commits.

After every restart the victim must reach the others' height again, and at the end every node
holds the same headers at every height, every accepted transaction is committed everywhere, and
no node saw two conflicting votes from one validator (evidence comes from received votes).
Prints a JSON summary as its last line; exit 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from emrchain.devnet.harness import Devnet, DevnetError
from emrchain.devnet.workload import anchor_transactions


def same_chain(network: Devnet) -> int:
    nodes = range(len(network.homes))
    common = min(network.height(index) for index in nodes)
    for height in range(1, common + 1):
        headers = [network.rpc(index, f"/blocks/{height}")["header"] for index in nodes]
        if any(header != headers[0] for header in headers):
            raise DevnetError(f"divergence at height {height}")
    return common


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak-kill", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--victim", type=int, default=1, help="validator index to kill (0..3)")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.iterations <= 10_000 or not 0 <= arguments.victim <= 3:
        parser.error("--iterations must be 1..10000 and --victim 0..3")
    chooser = random.Random(arguments.seed)
    root = Path(tempfile.mkdtemp(prefix="emrchain-soak-"))
    network = Devnet(root / "net", 4)
    others = [index for index in range(4) if index != arguments.victim]
    accepted: list[str] = []
    started = time.monotonic()
    keep_logs = True
    try:
        network.start_all()
        network.wait_for_height(1, list(range(4)), timeout_s=60)
        chain_id = network.rpc(0, "/status")["chain_id"].encode()
        for iteration in range(arguments.iterations):
            # Admission refuses strangers: each iteration's senders are registered first.
            seed = 1000 + iteration
            network.register_workload_members(senders=10, seed=seed, node=others[0])
            txs = anchor_transactions(200, chain_id=chain_id, senders=10, seed=seed)
            accepted += network.submit(txs, nodes=others)
            time.sleep(chooser.uniform(0.0, 1.0))  # somewhere in the commit cycle
            network.kill(arguments.victim)
            network.start(arguments.victim)
            target = max(network.height(index) for index in others)
            network.wait_for_height(target, [arguments.victim], timeout_s=120)
            print(f"iteration {iteration + 1}: victim back at height >= {target}", flush=True)
        network.wait_committed(arguments.victim, accepted, timeout_s=300)
        common = same_chain(network)
        evidence = sum(len(network.rpc(index, "/status")["evidence"]) for index in range(4))
        refused = network.rpc(arguments.victim, "/status")["refused_signatures"]
        summary = {
            "iterations": arguments.iterations,
            "heights_checked": common,
            "txs_committed": len(accepted),
            "equivocation_evidence": evidence,
            "guard_refusals_since_last_restart": refused,
            "seconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(summary))
        keep_logs = evidence != 0
        return 0 if evidence == 0 else 1
    except DevnetError as error:
        print(json.dumps({"error": str(error), "logs": str(root)}))
        return 1
    finally:
        network.stop_all()
        if keep_logs:
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
