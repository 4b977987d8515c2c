"""`emrchain start`, `emrchain status` and `emrchain devnet`."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from emrchain.cli.arguments import add_home_argument, bounded_integer, home_path
from emrchain.cli.registry import CommandError, command


def _start_arguments(parser: argparse.ArgumentParser) -> None:
    add_home_argument(parser)


@command("start", "run a validator node from its home directory", arguments=_start_arguments)
def start(args: argparse.Namespace) -> int:
    from emrchain.cli.log_format import configure_logging
    from emrchain.config.node import load_node_config
    from emrchain.node.node import NodeStartError, run_node

    log = load_node_config(args.home).log
    configure_logging(log.level, log.format)
    try:
        node = asyncio.run(run_node(args.home))
    except NodeStartError as error:
        raise CommandError(str(error)) from None
    if node.halt_reason:
        print(f"emrchain start: halted: {node.halt_reason}")
        return 3
    return 0


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc", default="http://127.0.0.1:26657", help="node RPC base URL")


@command("status", "print a running node's status as JSON", arguments=_status_arguments)
def status(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    if not args.rpc.startswith(("http://", "https://")):
        raise CommandError(f"--rpc must be an http(s) URL, got {args.rpc!r}")
    try:
        with urllib.request.urlopen(args.rpc.rstrip("/") + "/status", timeout=5) as response:
            print(json.dumps(json.loads(response.read()), indent=2))
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read status from {args.rpc}: {error}") from None
    return 0


def _devnet_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--validators", type=bounded_integer(1, 16), default=4, help="validators (1..16)"
    )
    parser.add_argument(
        "--output", type=home_path, default=None, help="homes directory (default: a temp dir)"
    )
    parser.add_argument(
        "--story",
        action="store_true",
        help="play the demo story (two hospitals, consent, revocation, audit), then stop",
    )
    parser.add_argument(
        "--study",
        action="store_true",
        help="run a differentially private study across two hospitals (docs/spec/analytics.md), "
        "print its figures, then stop",
    )
    parser.add_argument(
        "--demo-txs",
        type=bounded_integer(0, 1_000_000),
        default=0,
        help="submit this many anchor transactions, report, then stop",
    )


@command(
    "devnet",
    "run N local validator processes; Ctrl-C stops them all",
    arguments=_devnet_arguments,
)
def devnet(args: argparse.Namespace) -> int:
    from emrchain.devnet.harness import Devnet, DevnetError

    temporary = args.output is None
    root = Path(tempfile.mkdtemp(prefix="emrchain-devnet-")) / "net" if temporary else args.output
    network = Devnet(root, args.validators)
    try:
        network.start_all()
        network.wait_for_height(1, list(range(args.validators)), timeout_s=60)
        for index, url in enumerate(network.rpc_urls):
            print(f"node{index}: rpc {url}  home {network.homes[index]}")
        if args.story:
            from emrchain.devnet.story import run_story

            print("\n== the story: consent-controlled sharing of one record between hospitals")
            run_story(network)
        if args.study:
            from emrchain.devnet.study_demo import main as run_study

            print("\n== a study: noisy statistics over opted-in patients of two hospitals")
            run_study(list(zip(network.rpc_urls, network.homes, strict=True)))
        if args.demo_txs:
            print(f"\n== throughput: {args.demo_txs} anchor transactions")
            return _demo_workload(network, args.demo_txs)
        if args.story or args.study:
            return 0
        print("devnet running; Ctrl-C to stop")
        while True:
            time.sleep(1)
    except DevnetError as error:
        raise CommandError(f"{error} (logs: {root}/node*/node.log)") from None
    except KeyboardInterrupt:
        print("stopping devnet")
        return 0
    finally:
        network.stop_all()
        if temporary:
            shutil.rmtree(root.parent, ignore_errors=True)


def _demo_workload(network, count: int) -> int:
    from emrchain.devnet.workload import anchor_transactions

    chain_id = network.rpc(0, "/status")["chain_id"].encode()
    senders = max(1, count // 50)
    network.register_workload_members(senders=senders)
    print(f"registered {senders} clinicians and their patients with hospital-0's admin")
    start_height = network.height(0)
    print(f"signing {count} anchor transactions from {senders} senders (client side, not timed)")
    txs = anchor_transactions(count, chain_id=chain_id, senders=senders)
    started_ms = time.time_ns() // 1_000_000
    accepted_ids = network.submit(txs)
    submitted_s = time.time_ns() / 1e9 - started_ms / 1000
    print(f"submitted {count} in {submitted_s:.2f} s, accepted {len(accepted_ids)}")
    committed, height, last_block_ms = 0, start_height, started_ms
    deadline = time.monotonic() + 120
    while committed < len(accepted_ids):
        if time.monotonic() > deadline:
            raise CommandError(f"only {committed} of {len(accepted_ids)} committed after 120 s")
        latest = network.height(0)
        while height < latest:
            height += 1
            block = network.rpc(0, f"/blocks/{height}")
            committed += len(block["tx_ids"])
            last_block_ms = block["header"]["time_ms"] if block["tx_ids"] else last_block_ms
        time.sleep(0.05)
    elapsed = max(last_block_ms - started_ms, 1) / 1000
    heights = [network.height(index) for index in range(len(network.homes))]
    print(
        f"committed {committed} txs in {elapsed:.2f} s from first submission to the block time "
        f"of the last one ({committed / elapsed:.0f} TPS), heights {start_height + 1}..{height}; "
        f"node heights now {heights}"
    )
    proof = network.rpc(1, f"/txs/{accepted_ids[-1]}")
    print(
        f"last tx: height {proof['height']} index {proof['index']}, "
        f"proof of {len(proof['proof']['audit_path'])} hashes"
    )
    return 0 if committed >= len(accepted_ids) == count else 1
