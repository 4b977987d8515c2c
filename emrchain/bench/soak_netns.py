"""Network-fault soak: 4 validators on hosts of their own, a cable pulled or the switch split
2|2 again and again, under a steady load (run on purpose: `scripts/soak-netns`).

Each iteration picks a fault and how long it lasts (1 s .. --max-fault-s):
- link down: one host's switch port goes down; the other three must keep committing, and once
  the port is up again the host must reach their height within `CATCH_UP_BOUND_S`;
- 2|2 partition: no commits while it lasts (checked once a block in flight had time to land),
  and after healing every node commits a new block within `heal_bound_ms()`, whatever the
  partition's duration.
After every iteration the nodes hold the same header at every height (no fork). At the end every
accepted transaction is committed on every node and no node saw equivocation or halted.
Prints a JSON summary as its last line; exit 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from emrchain.devnet.background_load import BackgroundLoad, anchor_stream
from emrchain.devnet.harness import DevnetError
from emrchain.devnet.netns import (
    CATCH_UP_BOUND_S,
    NetnsDevnet,
    check_no_fork,
    heal_bound_ms,
    is_supported,
    sweep_stale,
)

NODES = [0, 1, 2, 3]
SPLITS = ([[0, 1], [2, 3]], [[0, 2], [1, 3]], [[0, 3], [1, 2]])
IN_FLIGHT_S = 3.0
"""A block whose votes were all sent before the fault may still commit within this."""
SENDERS = 20
SEED = 19


class ViolationError(Exception):
    pass


def _link_down(network: NetnsDevnet, chooser: random.Random, duration_s: float) -> float:
    victim = chooser.choice(NODES)
    others = [index for index in NODES if index != victim]
    network.network.link_down(victim)
    start = max(network.heights(others))
    time.sleep(duration_s)
    if duration_s >= 5 and max(network.heights(others)) <= start:
        raise ViolationError(f"host {victim} cut for {duration_s:.0f} s: the other three stalled")
    network.network.link_up(victim)
    target = max(network.heights(others))
    try:
        return network.wait_for_heights({victim: target}, CATCH_UP_BOUND_S, "catch-up")
    except DevnetError:
        raise ViolationError(
            f"host {victim} did not catch up within {CATCH_UP_BOUND_S} s"
        ) from None


def _partition(network: NetnsDevnet, chooser: random.Random, duration_s: float) -> float:
    split = chooser.choice(SPLITS)
    network.network.partition(split)
    started = time.monotonic()
    time.sleep(min(IN_FLIGHT_S, duration_s))
    halted = network.heights()
    remaining_s = duration_s - (time.monotonic() - started)
    if remaining_s > 0:
        time.sleep(remaining_s)
        if network.heights() != halted:
            raise ViolationError(f"partition {split}: commits without a quorum {halted} -> ...")
    network.network.heal()
    bound_s = heal_bound_ms() / 1000
    target = max(network.heights()) + 1
    try:
        return network.wait_for_heights(dict.fromkeys(NODES, target), bound_s, "heal")
    except DevnetError:
        raise ViolationError(f"no commit within {bound_s:.1f} s of healing {split}") from None


def _figures(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "median_s": round(statistics.median(ordered), 2),
        "p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "max_s": round(ordered[-1], 2),
    }


def soak(network: NetnsDevnet, iterations: int, max_fault_s: float, seed: int) -> dict[str, Any]:
    chooser = random.Random(seed)
    network.start_all()
    network.wait_for_height(1, NODES, timeout_s=90)
    network.register_workload_members(senders=SENDERS, seed=SEED)
    chain_id = network.rpc(0, "/status")["chain_id"].encode()
    times: dict[str, list[float]] = {"catch_up": [], "heal": []}
    longest: dict[str, float] = {"link_down": 0.0, "partition": 0.0}
    checked = 1
    with BackgroundLoad(network, anchor_stream(chain_id, senders=SENDERS, seed=SEED)) as load:
        for iteration in range(iterations):
            duration_s = chooser.uniform(1.0, max_fault_s)
            if chooser.random() < 0.5:
                kind, took_s = "link_down", _link_down(network, chooser, duration_s)
                times["catch_up"].append(took_s)
            else:
                kind, took_s = "partition", _partition(network, chooser, duration_s)
                times["heal"].append(took_s)
            longest[kind] = max(longest[kind], duration_s)
            checked = check_no_fork(network, from_height=max(1, checked - 1))
            print(
                f"iteration {iteration + 1}: {kind} {duration_s:.1f} s, "
                f"recovered in {took_s:.1f} s, height {checked}",
                flush=True,
            )
    load.wait_committed(NODES, timeout_s=120)
    for index in NODES:
        status = network.rpc(index, "/status")
        if status["evidence"] or status["halt"] is not None:
            raise ViolationError(
                f"node{index}: evidence {status['evidence']} halt {status['halt']}"
            )
    return {
        "iterations": iterations,
        "height": check_no_fork(network, from_height=max(1, checked - 1)),
        "accepted_txs": load.accepted,
        "failed_requests": load.failed_requests,
        "catch_up": _figures(times["catch_up"]),
        "heal": _figures(times["heal"]),
        "longest_fault_s": {kind: round(value, 1) for kind, value in longest.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak-netns", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--max-fault-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=int, default=0, help="one-way delay of every link")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.iterations <= 10_000 or not 1 <= arguments.max_fault_s <= 600:
        parser.error("--iterations must be 1..10000 and --max-fault-s 1..600")
    supported, reason = is_supported()
    if not supported:
        print(f"soak-netns: {reason}")
        return 2
    sweep_stale()
    root = Path(tempfile.mkdtemp(prefix="emrchain-soak-netns-"))
    started = time.monotonic()
    keep_logs = True
    network = NetnsDevnet(root / "net", 4, latency_ms=arguments.latency_ms)
    try:
        summary = soak(network, arguments.iterations, arguments.max_fault_s, arguments.seed)
        summary["seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(summary))
        keep_logs = False
        return 0
    except (ViolationError, DevnetError) as error:
        print(json.dumps({"violation": str(error), "logs": str(root)}))
        return 1
    finally:
        network.close()
        if keep_logs:
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
