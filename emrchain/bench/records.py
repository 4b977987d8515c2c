"""Record put/get latency through the real stack: Kubo + Redis + SoftHSM2 + one node.

Started here, privately, in a temporary directory: a Redis on a unix socket, an offline Kubo
node on a free loopback port, a SoftHSM2 token (custody KEK and validator key inside it), and a
one-validator node (its own process) configured for all three. Then, through the client library
and the node's RPC, `--records` records of `--record-bytes` are stored and read:

- put: `put_record` (seal in the client, upload, anchor, wait for the commit);
- get cached: `get_record` of a record whose ciphertext is in Redis;
- get cold: the same after `FLUSHALL` (Redis miss, IPFS `cat`, hash check, cache fill).

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
from pathlib import Path

from emrchain.client.rpc import EmrClient
from emrchain.config.node import load_node_config, render_node_config
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
    load_node_config(home)


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


async def measure(devnet: Devnet, services: Services, records: int, record_bytes: int) -> dict:
    hospital = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
    clinician, patient = MemberIdentity.generate(), MemberIdentity.generate()
    patient_id = secrets.token_bytes(32)
    await _register(
        hospital, [(clinician, Role.CLINICIAN, NO_PATIENT), (patient, Role.PATIENT, patient_id)]
    )
    puts: list[float] = []
    cached: list[float] = []
    cold: list[float] = []
    async with EmrClient(hospital.rpc_url, clinician) as client:
        record_ids = []
        for index in range(records):
            plaintext = secrets.token_bytes(record_bytes)
            started = time.perf_counter()
            stored = await client.put_record(
                plaintext, patient_id, RecordType.LAB_RESULT
            )
            puts.append(time.perf_counter() - started)
            record_ids.append((stored.record_id, plaintext))
            if (index + 1) % 20 == 0:
                log(f"stored {index + 1}/{records}")
        for record_id, plaintext in record_ids:
            await client.get_record(record_id)  # warm: cached from here on
            started = time.perf_counter()
            read = await client.get_record(record_id)
            cached.append(time.perf_counter() - started)
            assert read.plaintext == plaintext
        for record_id, plaintext in record_ids:
            services.redis("FLUSHALL")
            started = time.perf_counter()
            read = await client.get_record(record_id)
            cold.append(time.perf_counter() - started)
            assert read.plaintext == plaintext
    return {"put": summary(puts), "get_cached": summary(cached), "get_cold": summary(cold)}


async def measure_read_path(
    home: Path, services: Services, records: int, record_bytes: int
) -> dict:
    """The storage half of a read, in this process, on the same Redis, IPFS and token: cache or
    IPFS fetch with the hash check, plus the HSM unwrap and re-seal of the data key. A second
    home (its own vault and KEK prefix) keeps clear of the running node's LevelDB."""
    import hashlib

    from nacl.public import PrivateKey, SealedBox

    from emrchain.keystore.member import load_organization_key
    from emrchain.records import open_record_service

    config = load_node_config(home)
    service = open_record_service(config)
    organization = load_organization_key(config.organization_key_path)
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
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
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
        figures = asyncio.run(measure(devnet, services, args.records, args.record_bytes))
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
