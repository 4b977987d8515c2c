"""`scripts/bench-pruning`: bytes on disk over time of a real node under anchor load, with and
without pruning (`[storage] retain_blocks`).

Two single-validator devnets run side by side on this machine (so both see the same
contention), one keeping every block, one with `retain_blocks`; each gets the same steady
anchor load over RPC. Every `--sample-s` the size of each node's `data/chain.db` and its height
are recorded. Prints a table, a JSON line last; `--plot FILE` also draws the two curves.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emrchain.devnet.background_load import BackgroundLoad, anchor_stream
from emrchain.devnet.harness import Devnet
from emrchain.store import layout
from emrchain.store.database import ChainDatabase, database_path

SENDERS = 50
KEYSPACES = {
    "blocks, commits, results (B C R)": (layout.BLOCK, layout.COMMIT, layout.TX_RESULTS),
    "tx and block id index (T H)": (layout.TX_LOCATION, layout.BLOCK_HEIGHT),
    "undo records, app hashes (U A)": (layout.UNDO, layout.APP_HASH),
    "application state (S)": (layout.STATE,),
}
"""The store's keyspaces (`docs/spec/state.md` §5) the end-of-run breakdown reports."""


@dataclass(frozen=True, slots=True)
class Sample:
    elapsed_s: float
    height: int
    base_height: int
    chain_db_bytes: int


def directory_bytes(path: Path) -> int:
    """Bytes of the files under `path` (files vanishing meanwhile, as LevelDB compacts, skip)."""
    total = 0
    for entry in path.rglob("*"):
        try:
            if entry.is_file():
                total += entry.stat().st_size
        except FileNotFoundError:
            continue
    return total


def base_height(network: Devnet) -> int:
    """The node's base: the lowest height `/blocks/{h}` answers (410 `height_pruned` names
    it below)."""
    reply = network.rpc(0, "/blocks/1")
    if reply.get("http_status") == 410:
        return int(reply["error"]["base_height"])
    return 1


def start_network(root: Path, retain_blocks: int, prune_interval_ms: int) -> Devnet:
    network = Devnet(
        root,
        validators=1,
        settings={
            "storage": {
                "retain_blocks": retain_blocks,
                "prune_interval_ms": prune_interval_ms,
            }
        },
    )
    network.start_all()
    network.wait_for_height(1, [0], timeout_s=120)
    network.register_workload_members(senders=SENDERS)
    return network


def run(
    root: Path,
    *,
    duration_s: float,
    sample_s: float,
    retain_blocks: int,
    rate_txs_per_s: int,
    prune_interval_ms: int,
) -> tuple[dict[str, list[Sample]], dict[str, dict[str, int]]]:
    """Both nodes under the same load for `duration_s`: their samples by label, and each
    store's bytes by keyspace at the end."""
    labels = {"no pruning": 0, f"retain_blocks={retain_blocks}": retain_blocks}
    networks: dict[str, Devnet] = {}
    loads: list[BackgroundLoad] = []
    samples: dict[str, list[Sample]] = {label: [] for label in labels}
    breakdown: dict[str, dict[str, int]] = {}
    interval_s = 0.2
    batch_txs = max(1, round(rate_txs_per_s * interval_s))
    try:
        for index, (label, retain) in enumerate(labels.items()):
            networks[label] = start_network(root / f"net{index}", retain, prune_interval_ms)
        for network in networks.values():
            chain_id = network.rpc(0, "/status")["chain_id"].encode()
            stream = anchor_stream(chain_id, senders=SENDERS, seed=0)
            loads.append(
                BackgroundLoad(network, stream, batch_txs=batch_txs, interval_s=interval_s).start()
            )
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) <= duration_s:
            for label, network in networks.items():
                samples[label].append(
                    Sample(
                        round(elapsed, 1),
                        network.height(0),
                        base_height(network),
                        directory_bytes(database_path(network.homes[0])),
                    )
                )
            time.sleep(max(0.0, sample_s - (time.monotonic() - started - elapsed)))
    finally:
        for load in loads:
            load.stop()
        for label, network in networks.items():
            network.stop_all()
            breakdown[label] = keyspace_bytes(network.homes[0])
    return samples, breakdown


def keyspace_bytes(home: Path) -> dict[str, int]:
    """LevelDB's estimate of the table bytes of each keyspace group of a stopped node (opening
    replays its log into a table first, so everything written is counted)."""
    with ChainDatabase.open(home) as database:
        database.db.compact_range()  # tombstones and overwritten values gone: live bytes
        return {
            name: sum(
                database.db.approximate_size(prefix, bytes([prefix[0] + 1])) for prefix in prefixes
            )
            for name, prefixes in KEYSPACES.items()
        }


def table(samples: dict[str, list[Sample]]) -> str:
    labels = list(samples)
    header = "elapsed_s " + " ".join(f"| {label}: height base MB".ljust(36) for label in labels)
    lines = [header]
    for row in zip(*(samples[label] for label in labels), strict=False):
        cells = " ".join(
            f"| {s.height:>7} {s.base_height:>6} {s.chain_db_bytes / 1e6:>8.2f}".ljust(36)
            for s in row
        )
        lines.append(f"{row[0].elapsed_s:>9.1f} {cells}")
    return "\n".join(lines)


def plot(samples: dict[str, list[Sample]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for label, series in samples.items():
        axis.plot(
            [sample.elapsed_s for sample in series],
            [sample.chain_db_bytes / 1e6 for sample in series],
            label=label,
        )
    axis.set_xlabel("elapsed (s)")
    axis.set_ylabel("data/chain.db (MB)")
    axis.set_title(title)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=300.0)
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--retain-blocks", type=int, default=100)
    parser.add_argument("--rate", type=int, default=300, help="anchors submitted per second")
    parser.add_argument("--prune-interval-ms", type=int, default=2_000)
    parser.add_argument("--root", type=Path, help="devnet homes (default: a temporary dir)")
    parser.add_argument("--plot", type=Path, help="write a PNG of bytes on disk over time")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emrchain-bench-pruning-") as temporary:
        samples, breakdown = run(
            arguments.root or Path(temporary),
            duration_s=arguments.duration_s,
            sample_s=arguments.sample_s,
            retain_blocks=arguments.retain_blocks,
            rate_txs_per_s=arguments.rate,
            prune_interval_ms=arguments.prune_interval_ms,
        )
    print(table(samples))
    print("\nat the end, live bytes by keyspace (MB, after a full compaction):")
    for label, sizes in breakdown.items():
        cells = ", ".join(f"{name} {size / 1e6:.2f}" for name, size in sizes.items())
        print(f"  {label}: {cells}")
    if arguments.plot:
        plot(
            samples,
            arguments.plot,
            f"one validator, {arguments.rate} anchors/s: bytes on disk over time",
        )
    print(
        json.dumps(
            {
                "samples": {
                    label: [
                        [s.elapsed_s, s.height, s.base_height, s.chain_db_bytes] for s in series
                    ]
                    for label, series in samples.items()
                },
                "keyspace_bytes": breakdown,
            }
        )
    )


if __name__ == "__main__":
    main()
