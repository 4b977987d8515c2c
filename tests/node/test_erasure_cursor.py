"""The erasure queue follows the chain through the vault's cursor (`docs/spec/records.md` §8):
an erasure committed while the node crashed before its queue entry is queued at the next start
from the block store, on a node that holds the blob but no custody copy (a replica holder,
which the custody-copy reconciliation cannot see). Real blocks, a real LevelDB vault and the
local blob store."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import plyvel

from emrchain.client.identity import MemberIdentity
from emrchain.client.transactions import erase_record, register_member, register_organization
from emrchain.config.homes import ADMIN_IDENTITY_FILE
from emrchain.devnet.workload import (
    anchor_fields,
    patient_key,
    registration_transactions,
    sender_key,
)
from emrchain.keystore.member import load_member_identity
from emrchain.node.node import Node
from emrchain.records.erasure import CatchUp
from emrchain.schema import ErasureReason, Role, TxKind
from emrchain.storage.cid import cid_text_to_bytes
from emrchain.storage.vault import ERASURE_CURSOR_KEY
from emrchain.types.transaction import Transaction
from tests.node.in_process import (
    CHAIN_ID,
    commit_own_block,
    register_workload_senders,
    single_validator_node,
)

SEED = 0
OTHER_ORGANIZATION = "hospital-9"


def _commit(node: Node, *txs: Transaction) -> int:
    """Commit `txs` alone in this node's next block, all applied; its height."""
    admissions = node.mempool.admit_batch([tx.encode() for tx in txs])
    assert all(admission.accepted for admission in admissions)
    block = commit_own_block(node)
    results = node.chain.store.tx_results(block.height)
    assert results is not None and [result.code for result in results] == [0] * len(txs)
    return block.height


def _crash_before_queue_entries(node: Node) -> None:
    """The state a kill -9 between a block's commit and its queue entries leaves: the block is
    in the store, the vault knows nothing of it (neither the entry nor the cursor moved)."""
    node.chain.erasure_listeners.remove(node.erasure.enqueue)
    node.chain.commit_listeners.remove(node.erasure.on_commit)


def _reopened(home: Path) -> Node:
    return Node.open(home)


def _close(node: Node) -> None:
    asyncio.run(node.records.close())
    node._database.close()


def _other_organization(node: Node) -> None:
    """hospital-0's admin registers hospital-9 and its first admin, who registers the
    workload's clinician and patient: records of hospital-9 have this node as no custodian."""
    admin = load_member_identity(node.config.resolve(ADMIN_IDENTITY_FILE))
    other_admin = MemberIdentity.generate()
    chain_id = CHAIN_ID.encode()
    _commit(
        node,
        register_organization(
            admin,
            chain_id,
            1,
            organization_id=OTHER_ORGANIZATION,
            name="Hospital 9",
            encryption_key=MemberIdentity.generate().encryption_public_key,
        ),
        register_member(
            admin,
            chain_id,
            2,
            organization_id=OTHER_ORGANIZATION,
            member_key=other_admin.member_key,
            encryption_key=other_admin.encryption_public_key,
            role=Role.ADMIN,
        ),
    )
    registrations = registration_transactions(
        other_admin.signer, OTHER_ORGANIZATION, chain_id=chain_id, senders=1, seed=SEED
    )
    assert all(admission.accepted for admission in node.mempool.admit_batch(registrations))
    commit_own_block(node)


def test_an_erasure_lost_in_a_crash_deletes_a_replica_holders_blob_at_the_next_start(
    tmp_path: Path,
) -> None:
    ciphertext = secrets.token_bytes(4_000)
    with single_validator_node(tmp_path) as node:
        home = node.config.home
        _other_organization(node)
        # A replica pin: the blob is here, the vault holds no custody copy of the record.
        cid = asyncio.run(node.records.blob_store.put(ciphertext))
        fields = anchor_fields(SEED, 0, 1, OTHER_ORGANIZATION) | {"cid": cid_text_to_bytes(cid)}
        record_id = fields["record_id"]
        assert isinstance(record_id, bytes)
        anchor = Transaction.create(
            sender_key(SEED, 0), CHAIN_ID.encode(), TxKind.ANCHOR_RECORD, 1, fields
        )
        anchored_at = _commit(node, anchor)
        assert node.records.vault.erasure_cursor() == anchored_at
        assert node.records.vault.iterate() == []
        _crash_before_queue_entries(node)
        patient = MemberIdentity.from_seed(patient_key(SEED, 0).seed)
        erase = erase_record(
            patient, CHAIN_ID.encode(), 1, record_id=record_id, reason=ErasureReason.PATIENT_REQUEST
        )
        erased_at = _commit(node, erase)
        assert node.records.vault.pending_erasures(10) == []
        assert node.records.vault.erasure_cursor() == anchored_at

    node = _reopened(home)
    try:
        assert node.erasure.caught_up == CatchUp(blocks_scanned=1, queued=1)
        assert node.records.vault.erasure_cursor() == erased_at
        assert node.records.vault.pending_erasures(10) == [(record_id, cid)]
        assert asyncio.run(node.records.blob_store.has(cid))
        asyncio.run(node.erasure.work_once())
        assert not asyncio.run(node.records.blob_store.has(cid))
        assert node.records.vault.pending_erasures(10) == []
    finally:
        _close(node)

    # The cursor is at the chain's height: the next start scans no block.
    node = _reopened(home)
    try:
        assert node.erasure.caught_up == CatchUp(blocks_scanned=0, queued=0)
        assert node.records.vault.pending_erasures(10) == []
    finally:
        _close(node)


def test_a_vault_without_a_cursor_starts_at_the_chains_height_without_scanning(
    tmp_path: Path,
) -> None:
    """A vault from before the cursor: its erasures were queued by the listener (and its
    custody copies are reconciled); the scan starts at the height the node is upgraded at."""
    with single_validator_node(tmp_path) as node:
        home = node.config.home
        vault_path = node.config.resolve(node.config.records.vault_dir)
        height = register_workload_senders(node, senders=1, seed=SEED).height
    database = plyvel.DB(str(vault_path))
    database.delete(ERASURE_CURSOR_KEY, sync=True)
    database.close()
    node = _reopened(home)
    try:
        assert node.erasure.caught_up == CatchUp(blocks_scanned=0, queued=0)
        assert node.records.vault.erasure_cursor() == height
    finally:
        _close(node)
