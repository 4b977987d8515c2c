"""Read latency on a local devnet: what a reader waits now that a node serves a read only once
its access event is committed (`docs/spec/access-control.md` §6).

A devnet of `--validators` processes on 127.0.0.1 with the node's default consensus timeouts
(`--timeouts node`, the figure the issue asks for) or the devnet's short ones (`--timeouts
devnet`). Hospital 0's clinician stores `--records` records; the patient grants hospital 1's
`--concurrency` clinicians access to all of them; each clinician then reads them in turn through
hospital 0's node (the custodian) until `--reads` reads are done. Each read is timed in the
client from request to decrypted plaintext: signed request, consent check, custody re-wrap,
ciphertext fetch, access-event admission, the wait for the block that commits it, the reply,
and decryption.

Progress on stderr; the last stdout line is one JSON object (`read_p50_ms`, `read_p95_ms`, the
heights made during the reads, the settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from emrchain.bench.stats import percentile
from emrchain.client.rpc import EmrClient
from emrchain.config.node import ConsensusSection
from emrchain.devnet.harness import DEVNET_CONSENSUS, Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import RecordType, Role

NO_PATIENT = bytes(32)
START_TIMEOUT_S = 120.0


def node_timeouts() -> dict[str, int | bool]:
    """The consensus timeouts a node runs with when its config does not set them."""
    defaults = ConsensusSection()
    return {name: getattr(defaults, name) for name in DEVNET_CONSENSUS}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def prepare(
    a: Hospital, b: Hospital, records: int, readers: int
) -> tuple[list[bytes], list[MemberIdentity]]:
    clinician, patient = MemberIdentity.generate(), MemberIdentity.generate()
    patient_id = secrets.token_bytes(32)
    grantees = [MemberIdentity.generate() for _ in range(readers)]
    await _register(
        a, [(clinician, Role.CLINICIAN, NO_PATIENT), (patient, Role.PATIENT, patient_id)]
    )
    await _register(b, [(grantee, Role.CLINICIAN, NO_PATIENT) for grantee in grantees])
    record_ids = []
    async with EmrClient(a.rpc_url, clinician) as author:
        for index in range(records):
            stored = await author.put_record(
                b"result %d: " % index + secrets.token_bytes(512),
                patient_id,
                RecordType.LAB_RESULT,
            )
            record_ids.append(stored.record_id)
    async with EmrClient(a.rpc_url, patient) as consent:
        for grantee in grantees:
            await consent.grant(patient_id=patient_id, grantee_member=grantee.member_key)
    return record_ids, grantees


async def read_all(
    url: str, record_ids: list[bytes], readers: list[MemberIdentity], reads: int
) -> list[float]:
    """`reads` reads shared among the readers, each reading records in turn; seconds each."""
    share, rest = divmod(reads, len(readers))
    per_reader = [share + (index < rest) for index in range(len(readers))]

    async def one_reader(identity: MemberIdentity, count: int) -> list[float]:
        latencies = []
        async with EmrClient(url, identity) as client:
            for index in range(count):
                started = time.perf_counter()
                await client.get_record(record_ids[index % len(record_ids)])
                latencies.append(time.perf_counter() - started)
        return latencies

    batches = await asyncio.gather(
        *(one_reader(identity, count) for identity, count in zip(readers, per_reader, strict=True))
    )
    return [latency for batch in batches for latency in batch]


def milliseconds(sorted_seconds: list[float], percent: float) -> float:
    return round(percentile(sorted_seconds, percent) * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--timeouts", choices=("node", "devnet"), default="node")
    parser.add_argument(
        "--create-empty-blocks", choices=("true", "false"), default="true",
        help="the consensus setting of every validator (node default: true)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout-commit-reads-ms", type=int, default=None,
        help="the commit pause while a read waits (default: the node's); equal to "
        "timeout_commit_ms shows the latency without the short pause",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the devnet's directory")
    args = parser.parse_args(argv)
    if args.validators < 2 or min(args.reads, args.records, args.concurrency) < 1:
        parser.error("need at least 2 validators and 1 read, record and reader")
    consensus = node_timeouts() if args.timeouts == "node" else dict(DEVNET_CONSENSUS)
    consensus["create_empty_blocks"] = args.create_empty_blocks == "true"
    if args.timeout_commit_reads_ms is not None:
        consensus["timeout_commit_reads_ms"] = args.timeout_commit_reads_ms
    root = Path(tempfile.mkdtemp(prefix="emrchain-bench-reads-"))
    devnet = Devnet(root / "net", args.validators, consensus=consensus)
    try:
        devnet.start_all()
        devnet.wait_for_height(1, list(range(args.validators)), timeout_s=START_TIMEOUT_S)
        a = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
        b = Hospital.from_home(devnet.rpc_urls[1], devnet.homes[1])
        log(f"devnet up ({args.timeouts} timeouts); storing {args.records} records")
        record_ids, readers = asyncio.run(prepare(a, b, args.records, args.concurrency))
        log(f"{args.reads} reads by {args.concurrency} reader(s) through node 0")
        first_height, started = devnet.height(0), time.monotonic()
        latencies = sorted(asyncio.run(read_all(a.rpc_url, record_ids, readers, args.reads)))
        elapsed_s, heights = time.monotonic() - started, devnet.height(0) - first_height
    finally:
        devnet.stop_all()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "reads",
                "read_p50_ms": milliseconds(latencies, 50),
                "read_p95_ms": milliseconds(latencies, 95),
                "read_p99_ms": milliseconds(latencies, 99),
                "read_max_ms": round(latencies[-1] * 1000, 1),
                "read_mean_ms": round(sum(latencies) / len(latencies) * 1000, 1),
                "reads": len(latencies),
                "reads_per_second": round(len(latencies) / elapsed_s, 1),
                "heights_during_reads": heights,
                "validators": args.validators,
                "concurrency": args.concurrency,
                "timeouts": args.timeouts,
                "consensus": consensus,
                "load_average_1m": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
