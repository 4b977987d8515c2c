"""Record put/get latency through the real stack: Kubo + Redis + SoftHSM2 + one node.

Started here, privately, in a temporary directory: a Redis on a unix socket, an offline Kubo
node on a free loopback port, a SoftHSM2 token (custody KEK and validator key inside it), and a
one-validator node (its own process) configured for all three. Then, through the client library
and the node's RPC, at each level of `--concurrency` (default 1, 4 and 16 clients at once, each
a clinician of its own, so their nonces do not collide), `--records` records of
`--record-bytes` are stored and read, each phase timed as a whole (operations per second) and
per call (latency percentiles):

- put: `put_record` (seal in the client, upload, anchor, wait for the commit);
- get cold: `get_record` of every record once after `FLUSHALL` (Redis miss, IPFS `cat`, hash
  check, cache fill);
- get cached: `get_record` of every record again (Redis hit).

A read does everything a real read does (signed request, consent check, HSM unwrap and re-seal,
ciphertext fetch, access-event admission, the wait for that event's commit — a node serves a
read only once it is on the ledger — and client-side decrypt), so its latency includes a block
of consensus at the node's timeouts; `measure_read_path` gives the storage half alone. Progress
on stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from emrchain.client.rpc import EmrClient
from emrchain.config.node import NodeConfig, load_node_config, render_node_config
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital, _register
from emrchain.hsm import HsmConfig, HsmKeyRing, HsmSigner, HsmWorker, PinSource
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import RecordType, Role

REPOSITORY = Path(__file__).resolve().parents[2]
IPFS_DAEMON_SCRIPT = REPOSITORY / "scripts" / "ipfs" / "daemon.py"
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN_VARIABLE = "EMRCHAIN_BENCH_HSM_PIN"
TOKEN_LABEL = "emrchain-bench"
NO_PATIENT = bytes(32)
SERVICE_TIMEOUT_S = 60.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile_ms(samples_s: list[float], fraction: float) -> float:
    ordered = sorted(samples_s)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return round(ordered[index] * 1000, 2)


def summary(samples_s: list[float]) -> dict[str, float]:
    return {
        "mean_ms": round(statistics.fmean(samples_s) * 1000, 2),
        "p50_ms": percentile_ms(samples_s, 0.50),
        "p95_ms": percentile_ms(samples_s, 0.95),
        "max_ms": round(max(samples_s) * 1000, 2),
    }


class Services:
    """Private Redis, Kubo and SoftHSM2 token under `root`; `close` stops them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.redis_socket = str(root / "redis" / "redis.sock")
        self.ipfs_repo = root / "ipfs" / "repo"
        self._redis: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.root / "redis").mkdir()
        self._redis = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.redis_socket,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
             "--dir", str(self.root / "redis")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + SERVICE_TIMEOUT_S
        while self.redis("PING") != b"PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING")
            time.sleep(0.05)
        started = subprocess.run(
            [sys.executable, str(IPFS_DAEMON_SCRIPT), "start", "--repo", str(self.ipfs_repo),
             "--timeout-s", str(SERVICE_TIMEOUT_S)],
            capture_output=True, text=True, timeout=SERVICE_TIMEOUT_S + 30, check=True,
        )
        self.ipfs_api_url = json.loads(started.stdout)["api_url"]
        token_directory = self.root / "softhsm" / "tokens"
        token_directory.mkdir(parents=True)
        configuration = self.root / "softhsm" / "softhsm2.conf"
        configuration.write_text(
            f"directories.tokendir = {token_directory}\nobjectstore.backend = file\n"
            "log.level = ERROR\n"
        )
        # Set before PKCS#11 loads here, and inherited by the node process.
        os.environ["SOFTHSM2_CONF"] = str(configuration)
        os.environ[PIN_VARIABLE] = secrets.token_hex(8)
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
             "--so-pin", secrets.token_hex(8), "--pin", os.environ[PIN_VARIABLE]],
            check=True, capture_output=True, timeout=SERVICE_TIMEOUT_S,
        )

    def redis(self, *arguments: str) -> bytes:
        completed = subprocess.run(
            ["redis-cli", "--raw", "-s", self.redis_socket, *arguments],
            capture_output=True, timeout=10, check=False,
        )
        return completed.stdout.strip()

    def close(self) -> None:
        subprocess.run(
            [sys.executable, str(IPFS_DAEMON_SCRIPT), "stop", "--repo", str(self.ipfs_repo)],
            capture_output=True, timeout=30, check=False,
        )
        if self._redis is not None:
            self._redis.terminate()
            self._redis.wait(timeout=10)


def configure_home(home: Path, services: Services, kek_prefix: str) -> None:
    """`[records]` of `home` on the services, through the strict loader."""
    import dataclasses

    config = load_node_config(home)
    config = dataclasses.replace(
        config,
        records=dataclasses.replace(
            config.records,
            blob_backend="ipfs",
            ipfs_api_url=services.ipfs_api_url,
            cache_backend="redis",
            redis_url=f"unix://{services.redis_socket}",
            kek_backend="hsm",
            hsm_module_path=str(SOFTHSM_MODULE),
            hsm_token_label=TOKEN_LABEL,
            hsm_pin_environment_variable=PIN_VARIABLE,
            hsm_kek_label_prefix=kek_prefix,
        ),
    )
    config.config_path.write_text(render_node_config(config))
    seal_organization_key(load_node_config(home), kek_prefix)


def seal_organization_key(config: NodeConfig, kek_prefix: str) -> None:
    """The organisation key sealed under the token's KEK, as `kek_backend = "hsm"` requires."""
    from emrchain.records.key_rings import HsmCustodyKeyRing
    from emrchain.records.organization_key import seal_organization_key_file

    hsm = HsmConfig(SOFTHSM_MODULE, TOKEN_LABEL, PinSource(environment_variable=PIN_VARIABLE))
    with HsmWorker(hsm) as worker:
        ring = HsmCustodyKeyRing(HsmKeyRing(worker, kek_prefix))
        if not ring.versions():
            ring.generate()
        seal_organization_key_file(config.organization_key_path, ring)


def configure_node(devnet: Devnet, services: Services) -> None:
    """Point the one node at the services (through the strict loader) and move its validator
    key into the token (genesis names the token's key; the key file is deleted)."""
    import dataclasses

    home = devnet.homes[0]
    hsm = HsmConfig(SOFTHSM_MODULE, TOKEN_LABEL, PinSource(environment_variable=PIN_VARIABLE))
    with HsmWorker(hsm) as worker:
        signer = HsmSigner.generate(worker, "bench-validator")
        HsmKeyRing(worker, "bench-kek").generate_version()
    configure_home(home, services, "bench-kek")
    config = load_node_config(home)
    config = dataclasses.replace(
        config,
        keys=dataclasses.replace(
            config.keys, backend="hsm", hsm_validator_key_label="bench-validator"
        ),
    )
    config.config_path.write_text(render_node_config(config))
    config = load_node_config(home)
    genesis = json.loads(config.genesis_path.read_text())
    genesis["validators"][0]["public_key"] = signer.public_key.hex()
    config.genesis_path.write_text(json.dumps(genesis, indent=2))
    config.validator_key_path.unlink()


@dataclass
class _Writer:
    """One concurrent client: its own clinician (its own nonces) and the records it stored."""

    client: EmrClient
    records: list[tuple[bytes, bytes]]


async def _timed_rounds(
    writers: list[_Writer], operation: Callable[[_Writer, int], Awaitable[None]], per_writer: int
) -> tuple[list[float], float]:
    """Every writer runs `operation` `per_writer` times, all writers at once; the latency of
    each call and the wall time of the whole phase."""
    samples: list[float] = []

    async def one_writer(writer: _Writer) -> None:
        for index in range(per_writer):
            started = time.perf_counter()
            await operation(writer, index)
            samples.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one_writer(writer) for writer in writers))
    return samples, time.perf_counter() - started


def _phase(samples: list[float], wall_s: float) -> dict[str, float]:
    return {"per_s": round(len(samples) / wall_s, 1), **summary(samples)}


async def measure_level(
    hospital: Hospital, services: Services, patient_id: bytes, concurrency: int, records: int,
    record_bytes: int,
) -> dict[str, dict[str, float]]:
    """Puts, cold gets and cached gets with `concurrency` clients at once, each a clinician of
    its own (registered here), `records` records in all."""
    clinicians = [MemberIdentity.generate() for _ in range(concurrency)]
    await _register(
        hospital, [(clinician, Role.CLINICIAN, NO_PATIENT) for clinician in clinicians]
    )
    per_writer = max(1, records // concurrency)
    writers = [_Writer(EmrClient(hospital.rpc_url, clinician), []) for clinician in clinicians]
    try:
        for writer in writers:
            await writer.client.__aenter__()

        async def put(writer: _Writer, _: int) -> None:
            plaintext = secrets.token_bytes(record_bytes)
            stored = await writer.client.put_record(
                plaintext, patient_id, RecordType.LAB_RESULT
            )
            writer.records.append((stored.record_id, plaintext))

        async def get(writer: _Writer, index: int) -> None:
            record_id, plaintext = writer.records[index]
            read = await writer.client.get_record(record_id)
            assert read.plaintext == plaintext

        puts, puts_wall_s = await _timed_rounds(writers, put, per_writer)
        services.redis("FLUSHALL")  # every record's first read below misses Redis
        cold, cold_wall_s = await _timed_rounds(writers, get, per_writer)
        cached, cached_wall_s = await _timed_rounds(writers, get, per_writer)
    finally:
        for writer in writers:
            await writer.client.__aexit__(None, None, None)
    return {
        "put": _phase(puts, puts_wall_s),
        "get_cold": _phase(cold, cold_wall_s),
        "get_cached": _phase(cached, cached_wall_s),
    }


async def measure(
    devnet: Devnet, services: Services, records: int, record_bytes: int, levels: list[int]
) -> dict:
    hospital = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
    patient = MemberIdentity.generate()
    patient_id = secrets.token_bytes(32)
    await _register(hospital, [(patient, Role.PATIENT, patient_id)])
    by_level: dict[str, dict[str, dict[str, float]]] = {}
    for concurrency in levels:
        log(f"concurrency {concurrency}: {records} puts, cold gets, cached gets")
        by_level[str(concurrency)] = await measure_level(
            hospital, services, patient_id, concurrency, records, record_bytes
        )
        log(f"concurrency {concurrency}: {json.dumps(by_level[str(concurrency)])}")
    first = by_level[str(levels[0])]
    return {
        "put": first["put"],
        "get_cached": first["get_cached"],
        "get_cold": first["get_cold"],
        "concurrency": by_level,
    }


async def measure_read_path(
    home: Path, services: Services, records: int, record_bytes: int
) -> dict:
    """The storage half of a read, in this process, on the same Redis, IPFS and token: cache or
    IPFS fetch with the hash check, plus the HSM unwrap and re-seal of the data key. A second
    home (its own vault and KEK prefix) keeps clear of the running node's LevelDB."""
    import hashlib

    from nacl.public import PrivateKey, SealedBox

    from emrchain.records import open_record_service

    config = load_node_config(home)
    service = open_record_service(config)
    organization = service.organization_key
    assert organization is not None, "the bench home has an organisation key"
    reader = bytes(PrivateKey.generate().public_key)
    stored = []
    try:
        for _ in range(records):
            record_id, ciphertext = secrets.token_bytes(32), secrets.token_bytes(record_bytes)
            wrap = SealedBox(PrivateKey(organization.private_key).public_key).encrypt(
                secrets.token_bytes(32)
            )
            result = await service.store(record_id, ciphertext, wrap)
            stored.append((record_id, result.cid, hashlib.sha256(ciphertext).digest()))
        cached: list[float] = []
        cold: list[float] = []
        for record_id, cid, digest in stored:
            started = time.perf_counter()
            await service.ciphertext(cid, digest)
            service.seal_data_key_for(record_id, reader)
            cached.append(time.perf_counter() - started)
        for record_id, cid, digest in stored:
            services.redis("DEL", f"emrchain:blob:{cid}")
            started = time.perf_counter()
            await service.ciphertext(cid, digest)
            service.seal_data_key_for(record_id, reader)
            cold.append(time.perf_counter() - started)
    finally:
        await service.close()
    return {"read_path_cached": summary(cached), "read_path_cold": summary(cold)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--record-bytes", type=int, default=4096)
    parser.add_argument(
        "--concurrency",
        default="1,4,16",
        help="comma-separated numbers of clients at once, each level measured in turn",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.concurrency.split(",")]
    if not levels or not all(1 <= level <= 64 for level in levels):
        raise SystemExit("--concurrency: numbers 1..64, comma-separated")
    for binary in ("redis-server", "redis-cli", "softhsm2-util", "node"):
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} not found: run scripts/setup --with-services")
    root = Path(tempfile.mkdtemp(prefix="emrchain-bench-records-"))
    services = Services(root)
    devnet: Devnet | None = None
    try:
        log(f"starting Redis, Kubo and a SoftHSM2 token under {root}")
        services.start()
        devnet = Devnet(root / "net", 1, chain_id="emrchain-bench-records")
        second_home = root / "read-path-home"
        shutil.copytree(devnet.homes[0], second_home)
        configure_node(devnet, services)
        configure_home(second_home, services, "bench-kek-read-path")
        devnet.start_all()
        devnet.wait_for_height(1, [0], timeout_s=60)
        log(f"node up; {args.records} records of {args.record_bytes} bytes")
        figures = asyncio.run(
            measure(devnet, services, args.records, args.record_bytes, levels)
        )
        log("storage read path in-process (same Redis, IPFS, token)")
        figures |= asyncio.run(
            measure_read_path(second_home, services, args.records, args.record_bytes)
        )
    finally:
        if devnet is not None:
            devnet.stop_all()
        services.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "records",
        "records": args.records,
        "record_bytes": args.record_bytes,
        "concurrency_levels": levels,
        "get_cached_p95_ms": figures["get_cached"]["p95_ms"],
        "get_cold_p95_ms": figures["get_cold"]["p95_ms"],
        "put_p95_ms": figures["put"]["p95_ms"],
        "read_path_cached_p95_ms": figures["read_path_cached"]["p95_ms"],
        "read_path_cold_p95_ms": figures["read_path_cold"]["p95_ms"],
        **figures,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
