"""Erasure that finishes (issue 24, `docs/spec/records.md` §8–9) on the real stores: a
4-hospital devnet whose nodes each keep ciphertext in their own Kubo daemon and cache it in
their own Redis.

A record kept by three custodians is put, read at each custodian (so each one's Redis holds
it) and granted to a member of another organisation (so a grantee wrap exists). One custodian's
node is down during the erasure; the two others erase and confirm at once, the third when it
returns. Then, on every node:
- Redis: no key names the record's CID, and no value (`SCAN`, then `GET` and `DUMP` of each
  key) holds the ciphertext, the data key or any wrap of it;
- Kubo: the CID is not pinned, and after `repo/gc` `block/stat` of it fails; no file under
  the Kubo repository holds the ciphertext, the data key or any wrap;
- the node's home holds none of the key forms (the scan of `tests/records/test_erasure.py`).
Every custodian's receipt is on chain (`erasure_complete`). The same scans run before the
erasure find the ciphertext in each custodian's Redis and Kubo and the custody copies in the
homes, so they can fail.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from redis import Redis

from emrchain.client.envelope import SealedRecord
from emrchain.client.rpc import EmrClient
from emrchain.devnet.harness import Devnet
from emrchain.schema import ErasureReason
from emrchain.storage.cid import compute_cid
from tests.records.test_erasure import (
    SETTINGS,
    ErasureNet,
    confirmed,
    custody_listing,
    grant_keeping_the_wrap,
    needles,
    put_keeping_the_wraps,
    run,
    scan,
    start_erasure_net,
)
from tests.services.fixtures import IpfsDaemon, RedisServer, require_service

pytestmark = pytest.mark.slow

HOSPITALS = 4
ORGANIZATIONS = [f"hospital-{index}" for index in range(HOSPITALS)]
TIMEOUT_S = 120.0
REDIS_KEY_PREFIX = b"emrchain:blob:"


@dataclass
class ServicesErasureNet:
    net: ErasureNet
    redis: list[RedisServer]
    ipfs: list[IpfsDaemon]


def start_services(redis: list[RedisServer], ipfs: list[IpfsDaemon]) -> None:
    """All at once: a Kubo daemon takes seconds to start on a loaded machine."""
    starts: list[Callable[[], None]] = [server.start for server in redis]
    starts += [daemon.start for daemon in ipfs]
    with ThreadPoolExecutor(len(starts)) as pool:
        for started in [pool.submit(start) for start in starts]:
            started.result()


@pytest.fixture(scope="module")
def services_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServicesErasureNet]:
    for service in ("redis", "ipfs"):
        require_service(service)
    root = tmp_path_factory.mktemp("erasure-services")
    ipfs = [IpfsDaemon(root / f"ipfs-{index}" / "repo") for index in range(HOSPITALS)]
    # Short directories: unix socket paths are limited to ~107 bytes.
    redis = [RedisServer(tmp_path_factory.mktemp(f"redis{index}")) for index in range(HOSPITALS)]
    devnet = Devnet(root / "net", HOSPITALS, settings=SETTINGS)
    try:
        start_services(redis, ipfs)
        for index in range(HOSPITALS):
            devnet.configure(
                index,
                {
                    "records": {
                        "blob_backend": "ipfs",
                        "ipfs_api_url": ipfs[index].api_url,
                        "ipfs_timeout_ms": 3_000,
                        "cache_backend": "redis",
                        "redis_url": f"unix://{redis[index].unix_socket}",
                        # Peers' APIs: a grantee's organisation copies the blob from them (offline
                        # daemons have no swarm), so a non-custodian's Kubo may hold it too.
                        "replication_peers": tuple(
                            (ORGANIZATIONS[other], ipfs[other].api_url)
                            for other in range(HOSPITALS)
                            if other != index
                        ),
                    }
                },
            )
        yield ServicesErasureNet(start_erasure_net(devnet), redis, ipfs)
    finally:
        devnet.stop_all()
        for daemon in ipfs:
            daemon.stop()
        for server in redis:
            server.stop()


def redis_hits(server: RedisServer, cid: str, wanted: dict[str, bytes]) -> list[str]:
    """A key naming `cid`, and (needle, key) pairs found in any value: every key by `SCAN`,
    each value by `GET` (strings) and `DUMP` (any type, as Redis serialises it)."""
    client = Redis(unix_socket_path=server.unix_socket, socket_timeout=10)
    hits = []
    try:
        for key in client.scan_iter(count=1_000):
            if cid.encode() in key:
                hits.append(f"a key names the CID: {key!r}")
            values: list[object] = [client.dump(key)]
            if client.type(key) == b"string":
                values.append(client.get(key))
            for value in values:
                assert isinstance(value, bytes), (key, value)  # present: no TTL ran out meanwhile
                hits += [
                    f"{name} in the value of {key!r}"
                    for name, needle in wanted.items()
                    if needle in value
                ]
    finally:
        client.close()
    return hits


def kubo(daemon: IpfsDaemon, command: str, **arguments: str) -> bytes:
    """One Kubo RPC call; raises urllib.error.HTTPError when Kubo answers with an error."""
    query = "&".join(f"{name}={value}" for name, value in arguments.items())
    request = urllib.request.Request(
        f"{daemon.api_url}/api/v0/{command}?{query}", method="POST", data=b""
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body: bytes = response.read()
    return body


def pinned(daemon: IpfsDaemon, cid: str) -> bool:
    body = kubo(daemon, "pin/ls", type="recursive", stream="true")
    return any(json.loads(line)["Cid"] == cid for line in body.decode().splitlines() if line)


def kubo_holds_block(daemon: IpfsDaemon, cid: str) -> bool:
    try:
        kubo(daemon, "block/stat", arg=cid, offline="true")
    except urllib.error.HTTPError:
        return False
    return True


def read_at_every_custodian(net: ErasureNet, sealed: SealedRecord, custodians: list[str]) -> None:
    """The author's clinician, the patient and the grantee each read at one custodian."""
    readers = [net.clinician, net.patient, net.grantee]
    organizations = [hospital.organization_id for hospital in net.hospitals]

    async def read_all() -> None:
        for reader, custodian in zip(readers, custodians, strict=True):
            url = net.hospitals[organizations.index(custodian)].rpc_url
            async with EmrClient(url, reader) as client:
                record = await client.get_record(sealed.record_id)
                assert record.plaintext.startswith(b"HIV viral load ")

    run(read_all())


def test_erasure_on_redis_and_kubo_leaves_no_entry_no_block_and_no_key(
    services_net: ServicesErasureNet,
) -> None:
    net, redis, ipfs = services_net.net, services_net.redis, services_net.ipfs
    devnet = net.devnet
    sealed, custodians = run(put_keeping_the_wraps(net))
    cid = compute_cid(sealed.ciphertext).to_text()
    grantee_wrap = run(grant_keeping_the_wrap(net, sealed))
    read_at_every_custodian(net, sealed, custodians)
    keys = needles(net, sealed, custodians, grantee_wrap)
    wanted = {"ciphertext": sealed.ciphertext, **keys}
    every = list(range(HOSPITALS))
    holders = [ORGANIZATIONS.index(custodian) for custodian in custodians]

    # The scans can fail: before the erasure they find the cached ciphertext in each
    # custodian's Redis, its block in each custodian's Kubo, the custody copies in the homes.
    for index in holders:
        assert any(
            "ciphertext in the value" in hit for hit in redis_hits(redis[index], cid, wanted)
        )
        assert pinned(ipfs[index], cid) and kubo_holds_block(ipfs[index], cid), index
        assert any("ciphertext in" in hit for hit in scan([ipfs[index].repo], wanted)), index
    assert any("custody copy at" in hit for hit in scan(devnet.homes, keys))

    down = holders[2]
    devnet.stop(down)

    async def erase() -> None:
        async with EmrClient(net.hospitals[1].rpc_url, net.patient) as patient:
            await patient.erase(sealed.record_id, ErasureReason.PATIENT_REQUEST)

    run(erase())
    devnet.wait_for(
        lambda: confirmed(net, sealed.record_id) == custodians[:2],
        timeout_s=TIMEOUT_S,
        what="the two live custodians' erasure receipts",
    )
    assert not run(custody_listing(net, sealed.record_id))["erasure_complete"]
    # The down custodian's stores still hold the record: its node has not run the erasure.
    assert redis_hits(redis[down], cid, wanted) and pinned(ipfs[down], cid)

    devnet.start(down)
    devnet.wait_for(
        lambda: confirmed(net, sealed.record_id) == custodians,
        timeout_s=TIMEOUT_S,
        what="the returning custodian's erasure receipt",
    )
    assert run(custody_listing(net, sealed.record_id))["erasure_complete"]
    # Non-custodians erase without a receipt: wait until none of them pins the blob either.
    devnet.wait_for(
        lambda: not any(pinned(ipfs[index], cid) for index in every),
        timeout_s=TIMEOUT_S,
        what="the CID unpinned on every Kubo daemon",
    )
    for index in every:
        assert redis_hits(redis[index], cid, wanted) == [], index
        kubo(ipfs[index], "repo/gc")
        assert not kubo_holds_block(ipfs[index], cid), index
    assert scan([daemon.repo for daemon in ipfs], wanted) == []
    assert scan(devnet.homes, keys) == []
