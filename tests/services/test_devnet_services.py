"""Issue 6 acceptance: a 4-validator devnet on the real services, and its fault behaviour.

Every node runs as its own process with its ciphertext in Kubo (two swarm-connected IPFS
nodes: nodes 0 and 2 use one, nodes 1 and 3 the other), its hot cache in one private Redis
(which asks for a password: the nodes AUTH, so a cached entry proves it worked), and its keys
in SoftHSM2: the custody KEK (`kek_backend = "hsm"`, the organisation key sealed under it) and
the validator's consensus key (`[keys] backend = "hsm"`; the homes' validator key files are
deleted, genesis names the token's keys). The homes are configured through the strict config loader.

Faults, each through the real client against hospital A's node (node 0):
- Redis killed: reads still succeed (from IPFS); Redis back: cached again;
- a poisoned Redis entry: detected by the hash check, evicted, never served;
- IPFS killed (cache flushed): the read fails within seconds with 503 storage_unavailable, and
  succeeds again once IPFS is back;
- a corrupted block in IPFS's repository: 503, the bytes are not served.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emrchain.client.replies import Unavailable
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import LAB_RESULT, Hospital, _register, run_story
from emrchain.hsm import HsmKeyRing, HsmSigner
from emrchain.keystore.member import MemberIdentity
from emrchain.schema import RecordType, Role
from emrchain.storage.cid import ContentId, compute_cid
from tests.records.homes import (
    configure_home,
    hsm_settings,
    replace_validator_keys,
    seal_organization_key,
)
from tests.records.ipfs_swarm import SwarmIpfsDaemon
from tests.services.fixtures import RedisServer, require_service, run

pytestmark = pytest.mark.slow

VALIDATORS = 4
NO_PATIENT = bytes(32)
REDIS_KEY_PREFIX = "emrchain:blob:"
FAST_FAILURE_S = 10.0
REDIS_PASSWORD = secrets.token_hex(16)
REDIS_PASSWORD_VARIABLE = "EMRCHAIN_TEST_DEVNET_REDIS_PASSWORD"


@dataclass
class ServicesDevnet:
    devnet: Devnet
    ipfs: tuple[SwarmIpfsDaemon, SwarmIpfsDaemon]
    redis: RedisServer
    hospital: Hospital
    clinician: MemberIdentity
    patient_id: bytes

    def redis_command(self, *arguments: str) -> bytes:
        """redis-cli's raw reply (values are binary ciphertext), without the final newline."""
        completed = subprocess.run(
            ["redis-cli", "--raw", "-s", self.redis.unix_socket, *arguments],
            capture_output=True, timeout=10, check=True,
            env=dict(os.environ, REDISCLI_AUTH=REDIS_PASSWORD),
        )
        return completed.stdout.removesuffix(b"\n")

    async def store(self, plaintext: bytes) -> tuple[bytes, str]:
        async with EmrClient(self.hospital.rpc_url, self.clinician) as client:
            stored = await client.put_record(
                plaintext, self.patient_id, RecordType.LAB_RESULT
            )
        return stored.record_id, stored.cid_text

    async def read(self, record_id: bytes) -> bytes:
        async with EmrClient(self.hospital.rpc_url, self.clinician) as client:
            return (await client.get_record(record_id)).plaintext


@pytest.fixture(scope="module")
def services_devnet(
    tmp_path_factory: pytest.TempPathFactory, softhsm_token, hsm_worker
) -> Iterator[ServicesDevnet]:
    for service in ("redis", "ipfs", "softhsm"):
        require_service(service)
    root = tmp_path_factory.mktemp("services-devnet")
    ipfs = (SwarmIpfsDaemon(root / "ipfs-a" / "repo"), SwarmIpfsDaemon(root / "ipfs-b" / "repo"))
    # Redis asks for a password: the nodes AUTH with the one in the environment variable
    # their config names (inherited by the node processes).
    redis = RedisServer(
        tmp_path_factory.mktemp("redis"), arguments=("--requirepass", REDIS_PASSWORD)
    )
    os.environ[REDIS_PASSWORD_VARIABLE] = REDIS_PASSWORD
    devnet = Devnet(root / "net", VALIDATORS)
    try:
        for daemon in ipfs:
            daemon.start()
        ipfs[0].connect(ipfs[1])
        redis.start()
        suffix = secrets.token_hex(4)
        signers = [
            HsmSigner.generate(hsm_worker, f"validator-{index}-{suffix}")
            for index in range(VALIDATORS)
        ]
        replace_validator_keys(devnet.homes, [signer.public_key for signer in signers])
        for index, home in enumerate(devnet.homes):
            kek_prefix = f"kek-{index}-{suffix}"
            # Made here, not by four node processes racing to create objects in one token.
            HsmKeyRing(hsm_worker, kek_prefix).generate_version()
            config = configure_home(
                home,
                records={
                    "blob_backend": "ipfs",
                    "ipfs_api_url": ipfs[index % 2].api_url,
                    # One copy by placement: which nodes pin is then the grant policy's alone
                    # (placement by factor: tests/records/test_replication_devnet.py).
                    "replication_factor": 1,
                    "cache_backend": "redis",
                    "redis_url": f"unix://{redis.unix_socket}",
                    "redis_password_environment_variable": REDIS_PASSWORD_VARIABLE,
                    "kek_backend": "hsm",
                    "hsm_kek_label_prefix": kek_prefix,
                    **hsm_settings(softhsm_token),
                },
                keys={"backend": "hsm", "hsm_validator_key_label": signers[index].key_label},
            )
            config.validator_key_path.unlink()
            # With kek_backend = "hsm" the node refuses a plain organisation key file.
            seal_organization_key(config, hsm_worker)
        # One after another: four processes opening one SoftHSM2 token at the same moment get
        # transient errors from its file store (the node retries them, docs/spec/hsm.md), and
        # hospitals run separate HSMs anyway. A node that cannot start fails the wait at once.
        for index in range(VALIDATORS):
            devnet.start(index)
            devnet.wait_for(
                lambda index=index: (
                    devnet.try_status(index) is not None or not devnet.is_running(index)
                ),
                timeout_s=60,
                what=f"node{index} to answer RPC",
            )
            assert devnet.is_running(index), devnet.log_path(index).read_text()[-2000:]
        devnet.wait_for_height(1, list(range(VALIDATORS)), timeout_s=60)
        hospital = Hospital.from_home(devnet.rpc_urls[0], devnet.homes[0])
        clinician, patient = MemberIdentity.generate(), MemberIdentity.generate()
        patient_id = secrets.token_bytes(32)
        run(_register(hospital, [(clinician, Role.CLINICIAN, NO_PATIENT),
                                 (patient, Role.PATIENT, patient_id)]))
        yield ServicesDevnet(devnet, ipfs, redis, hospital, clinician, patient_id)
    finally:
        devnet.stop_all()
        redis.stop()
        os.environ.pop(REDIS_PASSWORD_VARIABLE, None)
        for daemon in ipfs:
            daemon.stop()


def test_the_story_runs_on_ipfs_redis_and_softhsm(services_devnet: ServicesDevnet) -> None:
    devnet = services_devnet.devnet
    lines: list[str] = []
    outcome = run_story(devnet, lines.append)
    assert outcome.plaintext_read_by_grantee == LAB_RESULT
    assert outcome.refusal_after_revoke.status == 404
    cid = next(line for line in lines if "ciphertext at" in line).split("ciphertext at ")[1]
    cid_prefix = cid.split("...")[0]
    # The ciphertext is pinned on hospital A's IPFS node and cached in Redis.
    assert any(pinned.startswith(cid_prefix) for pinned in services_devnet.ipfs[0].pins())
    cached = services_devnet.redis_command("--scan", "--pattern", f"{REDIS_KEY_PREFIX}*")
    assert any(
        key.decode().removeprefix(REDIS_KEY_PREFIX).startswith(cid_prefix)
        for key in cached.split()
    )
    # Replication policy: hospital A's node (author) and hospital B's node (its clinician was
    # granted the record) want the CID pinned; nodes 2 and 3 (no reason) do not.
    wanting = [
        f"replication: pinning {cid_prefix}" in devnet.log_path(index).read_text()
        for index in range(VALIDATORS)
    ]
    assert wanting == [True, True, False, False]
    # Consensus ran on the HSM keys alone: no validator key file exists, blocks keep coming.
    assert not any((home / "config" / "validator_key.json").exists() for home in devnet.homes)
    height = devnet.height(0)
    devnet.wait_for_height(height + 2, list(range(VALIDATORS)), timeout_s=30)


def test_reads_succeed_with_redis_killed_and_cache_again_when_it_returns(
    services_devnet: ServicesDevnet,
) -> None:
    plaintext = b"potassium 4.1 mmol/L " + secrets.token_bytes(16)
    record_id, cid = run(services_devnet.store(plaintext))
    services_devnet.redis.kill()
    try:
        assert run(services_devnet.read(record_id)) == plaintext
    finally:
        services_devnet.redis.start()
    services_devnet.redis_command("FLUSHALL")
    assert run(services_devnet.read(record_id)) == plaintext
    # The node noticed Redis is back (after its retry interval) and caches through it again.
    deadline = time.monotonic() + 10
    while services_devnet.redis_command("EXISTS", REDIS_KEY_PREFIX + cid) != b"1":
        assert time.monotonic() < deadline, "the node never cached through the restarted Redis"
        time.sleep(1.2)
        run(services_devnet.read(record_id))


def test_a_poisoned_cache_entry_is_evicted_and_never_served(
    services_devnet: ServicesDevnet,
) -> None:
    plaintext = b"haemoglobin 13.9 g/dL " + secrets.token_bytes(16)
    record_id, cid = run(services_devnet.store(plaintext))
    key = REDIS_KEY_PREFIX + cid
    services_devnet.redis_command("SET", key, "poisoned ciphertext")
    assert run(services_devnet.read(record_id)) == plaintext  # decrypts: the real bytes
    # Evicted, then refilled by the read-through with the verified bytes of this CID.
    assert compute_cid(services_devnet.redis_command("GET", key)).to_text() == cid


def test_ipfs_killed_fails_fast_with_503_and_recovers_after_restart(
    services_devnet: ServicesDevnet,
) -> None:
    plaintext = b"creatinine 88 umol/L " + secrets.token_bytes(16)
    record_id, _ = run(services_devnet.store(plaintext))
    ipfs = services_devnet.ipfs[0]
    services_devnet.redis_command("FLUSHALL")
    ipfs.kill()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as refused:
            run(services_devnet.read(record_id))
        elapsed_s = time.monotonic() - started
        assert refused.value.status == 503 and refused.value.code == "storage_unavailable"
        assert elapsed_s < FAST_FAILURE_S
    finally:
        ipfs.start()  # same API port: the node's configured URL works again
        ipfs.connect(services_devnet.ipfs[1])
    assert run(services_devnet.read(record_id)) == plaintext


def test_corrupted_bytes_from_ipfs_are_detected_and_not_served(
    services_devnet: ServicesDevnet,
) -> None:
    plaintext = b"glucose 5.4 mmol/L " + secrets.token_bytes(16)
    record_id, cid = run(services_devnet.store(plaintext))
    block = block_file(services_devnet.ipfs[0].repo, cid)
    original = block.read_bytes()
    corrupted = bytearray(original)
    corrupted[len(corrupted) // 2] ^= 0x01
    block.write_bytes(bytes(corrupted))
    services_devnet.redis_command("FLUSHALL")
    try:
        with pytest.raises(Unavailable) as refused:
            run(services_devnet.read(record_id))
        assert refused.value.status == 503
        assert refused.value.code == "storage_corrupted"
    finally:
        block.write_bytes(original)
    assert run(services_devnet.read(record_id)) == plaintext


def block_file(repo: Path, cid: str) -> Path:
    """The blockstore file of the raw block `cid` (a record smaller than one chunk): Kubo's
    flatfs names it by the base32 of its multihash (sha2-256 code 0x12, length 0x20, digest)."""
    multihash = bytes((0x12, 0x20)) + ContentId.from_text(cid).digest
    name = base64.b32encode(multihash).decode().rstrip("=")
    matches = list((repo / "blocks").rglob(f"{name}.data"))
    assert len(matches) == 1, f"block {name} of {cid} not found under {repo / 'blocks'}"
    return matches[0]
