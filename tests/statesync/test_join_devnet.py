"""State sync with real processes (issue #20 part 3): a 4-validator devnet with history makes
snapshots and vouches for them; a registered full node joins from one, its state equals the
validators' at the same height (the digests of the snapshots both make there), and it follows
the chain. Then adversaries in the place of validator 3: a peer serving corrupted chunks and a
manifest only it vouched for, and a peer sending a manifest with forged vouches.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
from collections.abc import Iterator

import pytest

from emrchain.config.homes import ADMIN_IDENTITY_FILE
from emrchain.config.node import load_node_config
from emrchain.devnet.byzantine import ByzantinePeer
from emrchain.devnet.harness import Devnet
from emrchain.devnet.story import Hospital
from emrchain.devnet.workload import iter_anchor_transactions
from emrchain.statesync.join import REPORT_FILE
from emrchain.statesync.manifest import Manifest, Vouch, sign_vouch
from emrchain.statesync.messages import ChunkRequest, ChunkResponse, Offer, OffersRequest
from emrchain.statesync.snapshots import SNAPSHOTS_DIRECTORY
from emrchain.store.database import database_path
from tests.membership.test_live_membership import emrchain, join, node_key_of, validator_key_of

pytestmark = pytest.mark.slow

TIMEOUT_S = 180.0
INTERVAL_BLOCKS = 10
SNAPSHOT_SETTINGS = {
    "snapshot_interval_blocks": INTERVAL_BLOCKS,
    "snapshot_keep": 6,
    "chunk_size_bytes": 2_048,
}
JOINER_SETTINGS = {
    "enable": True,
    "discovery_time_ms": 1_500,
    "max_chunk_requests_in_flight": 8,
    "max_chunk_requests_per_peer": 2,
    "chunk_request_timeout_ms": 5_000,
    "join_timeout_ms": 120_000,
    **SNAPSHOT_SETTINGS,
}
HISTORY_ANCHORS = 400


def snapshot_heights(network: Devnet, index: int) -> list[int]:
    root = database_path(network.homes[index]).parent / SNAPSHOTS_DIRECTORY
    return (
        sorted(int(path.name) for path in root.iterdir() if path.name.isdigit())
        if root.exists()
        else []
    )


def manifest_at(network: Devnet, index: int, height: int) -> Manifest | None:
    path = database_path(network.homes[index]).parent / SNAPSHOTS_DIRECTORY / f"{height:020d}"
    try:
        return Manifest.decode((path / "manifest").read_bytes())
    except FileNotFoundError:
        return None


def vouched_everywhere(network: Devnet, indexes: list[int]) -> bool:
    """Every node in `indexes` holds a complete snapshot with its own vouch."""
    for index in indexes:
        heights = snapshot_heights(network, index)
        directory = database_path(network.homes[index]).parent / SNAPSHOTS_DIRECTORY
        if not heights or not (directory / f"{heights[-1]:020d}" / "vouches").exists():
            return False
    return True


def join_report(network: Devnet, index: int) -> dict | None:
    path = database_path(network.homes[index]).parent / REPORT_FILE
    return json.loads(path.read_text()) if path.exists() else None


def add_joiner(network: Devnet, name: str) -> int:
    """A new home (`emrchain join`), registered by hospital-0's admin, set to state-sync."""
    hospital = Hospital.from_home(network.rpc_urls[0], network.homes[0])
    index, address = join(network, name, hospital.organization_id)
    network.configure(index, {"statesync": JOINER_SETTINGS})
    admin_file = load_node_config(network.homes[0]).resolve(ADMIN_IDENTITY_FILE)
    emrchain(
        "register-node",
        f"--key={admin_file}",
        f"--rpc={network.rpc_urls[0]}",
        f"--node-home={network.homes[index]}",
        f"--address={address}",
    )
    return index


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    devnet = Devnet(
        tmp_path_factory.mktemp("statesync") / "net", 4, settings={"statesync": SNAPSHOT_SETTINGS}
    )
    try:
        devnet.start_all()
        devnet.wait_for_height(1, [0, 1, 2, 3], timeout_s=TIMEOUT_S)
        # History: members and their anchors, so the state spans many chunks.
        devnet.register_workload_members(senders=20, seed=20)
        chain_id = devnet.rpc(0, "/status")["chain_id"].encode()
        txs = list(
            iter_anchor_transactions(HISTORY_ANCHORS, chain_id=chain_id, senders=20, seed=20)
        )
        accepted = devnet.submit(txs, nodes=[0])
        assert len(accepted) == len(txs)
        devnet.wait_committed(0, accepted[-1:], timeout_s=TIMEOUT_S)
        yield devnet
    finally:
        devnet.stop_all()


def test_a_full_node_joins_by_state_sync_with_the_validators_state_and_follows(
    network: Devnet,
) -> None:
    full = add_joiner(network, "synced-node")
    network.wait_for(
        lambda: vouched_everywhere(network, [0, 1, 2, 3]), TIMEOUT_S, "vouched snapshots"
    )
    network.start(full)
    network.wait_for(lambda: join_report(network, full) is not None, TIMEOUT_S, "state sync")
    report = join_report(network, full)
    assert report is not None
    assert report["height"] % INTERVAL_BLOCKS == 0 and report["chunks"] > 4
    assert 3 * report["vouched_power"] > 2 * report["total_power"]
    assert report["strikes"] == {} and report["refused_offers"] == []
    assert report["commit_restored"]  # block h's certificate, verified: it can propose h + 1
    assert len(report["served"]) >= 2  # chunks came from several peers
    # No block below the snapshot: /blocks/{h} answers 410 with the base height.
    network.wait_for(lambda: network.try_status(full) is not None, TIMEOUT_S, "its RPC")
    gone = network.rpc(full, f"/blocks/{report['height']}")
    assert gone["http_status"] == 410 and gone["error"]["code"] == "height_pruned"
    assert gone["error"]["base_height"] == report["height"] + 1
    # It follows: the next snapshots it makes itself, from the blocks it applied, have the
    # digest the validators' have at that height — the same state at the same height.
    later = report["height"] + 2 * INTERVAL_BLOCKS
    network.wait_for(
        lambda: any(height >= later for height in snapshot_heights(network, full)),
        TIMEOUT_S,
        "the synced node's own snapshots",
    )
    compared = 0
    for height in snapshot_heights(network, full):
        ours = manifest_at(network, full, height)
        theirs = manifest_at(network, 0, height)
        if ours is not None and theirs is not None:
            assert ours.digest == theirs.digest, f"state differs at height {height}"
            compared += 1
    assert compared >= 1
    assert network.height(full) >= later


class Adversary:
    """Validator 3 replaced by a byzantine peer answering the joiners' state-sync requests: it
    relays validator 0's honest offer, adds a higher fake snapshot that it alone vouches for
    (or, with `forge`, with forged vouches of the others), and serves garbage for every chunk."""

    def __init__(self, peer: ByzantinePeer, joiners: list[int], forge: bool) -> None:
        self.peer = peer
        self.joiners = joiners
        self.forge = forge
        self.garbage_served = 0
        self.offers_sent = 0
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Adversary:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _honest_offer(self) -> Offer | None:
        offers = [item.message for item in self.peer.received() if isinstance(item.message, Offer)]
        return max(offers, key=lambda offer: offer.manifest.height) if offers else None

    def _fake(self, honest: Offer) -> Offer:
        manifest = honest.manifest
        height = manifest.height + 1_000
        fake = dataclasses.replace(
            manifest,
            height=height,
            header=dataclasses.replace(manifest.header, height=height),
            app_hash=secrets.token_bytes(32),
            chunk_hashes=tuple(secrets.token_bytes(32) for _ in manifest.chunk_hashes),
        )
        vouches = [sign_vouch(self.peer.consensus_key, fake)]  # a real vouch: 1 of 4 power
        if self.forge:
            vouches += [
                Vouch(validator.public_key, secrets.token_bytes(64))
                for validator in manifest.validators
                if validator.public_key != self.peer.consensus_key.public_key
            ]
        return Offer(fake, tuple(vouches))

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peer.send(0, OffersRequest())
            for item in self.peer.received():
                if id(item) in self._seen or item.sender not in self.joiners:
                    continue
                self._seen.add(id(item))
                message = item.message
                if isinstance(message, OffersRequest):
                    honest = self._honest_offer()
                    if honest is not None:
                        self.peer.send(item.sender, Offer(honest.manifest, ()), self._fake(honest))
                        self.offers_sent += 1
                elif isinstance(message, ChunkRequest):
                    garbage = os.urandom(512)
                    self.peer.send(
                        item.sender, ChunkResponse(message.height, message.index, garbage)
                    )
                    self.garbage_served += 1


def test_corrupted_chunks_under_vouched_and_forged_vouches_are_refused(network: Devnet) -> None:
    corrupted_joiner = add_joiner(network, "joiner-corrupt")
    forged_joiner = add_joiner(network, "joiner-forged")
    network.stop(3)
    with ByzantinePeer(network, 3) as peer:
        peer.wait_connected([0, 1, 2])
        byzantine_id = peer.node_ids[3]
        # Honest snapshots go on with 3 of 4 validators vouching (3/4 > 2/3).
        start = max(snapshot_heights(network, 0))
        network.wait_for(
            lambda: max(snapshot_heights(network, 0)) > start + INTERVAL_BLOCKS,
            TIMEOUT_S,
            "snapshots vouched by validators 0-2",
        )
        with Adversary(peer, [corrupted_joiner], forge=False) as adversary:
            network.start(corrupted_joiner)
            network.wait_for(
                lambda: join_report(network, corrupted_joiner) is not None,
                TIMEOUT_S,
                "state sync despite corrupted chunks",
            )
        report = join_report(network, corrupted_joiner)
        assert report is not None
        assert adversary.offers_sent >= 1 and adversary.garbage_served >= 1
        assert report["strikes"].get(byzantine_id, 0) >= 1, report
        assert report["refetched_chunks"] >= 1
        assert byzantine_id not in report["served"]
        assert any("more than 2/3 needed" in line for line in report["refused_offers"]), report
        assert report["height"] < start + 1_000  # the honest snapshot, not the fake one
        network.wait_for(
            lambda: network.height(corrupted_joiner) >= network.height(0) - 2,
            TIMEOUT_S,
            "the joiner to follow the chain",
        )

        with Adversary(peer, [forged_joiner], forge=True) as adversary:
            network.start(forged_joiner)
            network.wait_for(
                lambda: join_report(network, forged_joiner) is not None,
                TIMEOUT_S,
                "state sync despite forged vouches",
            )
        report = join_report(network, forged_joiner)
        assert report is not None
        assert adversary.offers_sent >= 1
        assert sum("forged signature" in line for line in report["refused_vouches"]) >= 2, report
        assert report["height"] < start + 1_000
        network.wait_for(
            lambda: network.height(forged_joiner) >= network.height(0) - 2,
            TIMEOUT_S,
            "the second joiner to follow the chain",
        )


def test_a_joiner_trusts_a_changed_validator_set_through_its_proven_changes(
    network: Devnet,
) -> None:
    """Validator 0's power changes (10 -> 20, approved by 30 of 40): the snapshots after it
    are vouched for by a set that is not the genesis set. The joiner reaches it from genesis
    with the header and commit of the change and then trusts the new set's vouches."""
    if not network.is_running(3):
        network.start(3)
    network.wait_for_height(network.height(0), [3], timeout_s=TIMEOUT_S)
    validator_0 = validator_key_of(network.homes[0])
    address = str(load_node_config(network.homes[0]).p2p.listen_address)
    for index in range(3):
        emrchain(
            "approve-validator",
            f"--home={network.homes[index]}",
            f"--validator-key={validator_0}",
            f"--node-key={node_key_of(network.homes[0])}",
            f"--address={address}",
            "--power=20",
            "--epoch=1",
        )

    def changed_at() -> int | None:
        top = network.height(0)
        powers = network.rpc(0, f"/validators/{top + 2}")["validators"]
        if not any(item["public_key"] == validator_0 and item["power"] == 20 for item in powers):
            return None
        return top + 2

    network.wait_for(lambda: changed_at() is not None, TIMEOUT_S, "the validator-set change")
    change_height = network.height(0) + 2

    def vouched_after_change() -> bool:
        for index in range(4):
            heights = [
                height for height in snapshot_heights(network, index) if height > change_height
            ]
            directory = database_path(network.homes[index]).parent / SNAPSHOTS_DIRECTORY
            if not heights or not (directory / f"{heights[-1]:020d}" / "vouches").exists():
                return False
        return True

    network.wait_for(vouched_after_change, TIMEOUT_S, "snapshots vouched by the changed set")
    joiner = add_joiner(network, "joiner-after-change")
    network.start(joiner)
    network.wait_for(lambda: join_report(network, joiner) is not None, TIMEOUT_S, "state sync")
    report = join_report(network, joiner)
    assert report is not None
    assert report["height"] > change_height, report
    assert report["validator_set_changes"] >= 1, report
    assert report["total_power"] == 50  # the changed set vouched: 20 + 10 + 10 + 10
    assert 3 * report["vouched_power"] > 2 * report["total_power"]
    manifest = manifest_at(network, 0, report["height"])
    assert manifest is not None and manifest.digest.hex() == report["digest"]
    network.wait_for(
        lambda: network.height(joiner) >= network.height(0) - 2,
        TIMEOUT_S,
        "the joiner to follow the chain",
    )
