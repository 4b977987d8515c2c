"""The sender rule of stateful admission (`emrchain/state/emr/sender_admission.py`,
`docs/spec/state.md` §6) on a real EMR chain with a real mempool, committed as a node commits:
strangers, rotated and revoked keys and non-validators are refused with their codes; pending
rotations and registrations are judged as documented; the targeted recheck after each commit
drops what a block made inadmissible and leaves the pool exactly as a full recheck would."""

from __future__ import annotations

import hashlib
from typing import Any

from emrchain.crypto.keys import Ed25519Signer
from emrchain.mempool import Mempool, MempoolConfig, UpdateResult
from emrchain.schema import Role, TxKind
from emrchain.state import keys
from emrchain.state.emr.sender_admission import SenderAdmission
from emrchain.state.result import TxResult
from emrchain.state.validators import read_validator_sets
from emrchain.state.view import read_u64
from emrchain.types import ValidatorSet
from tests.state.chain import CHAIN_ID, signed_tx, signer
from tests.state.emr.world import (
    A_ADMIN,
    A_CLINICIAN,
    A_COLLEAGUE,
    A_NURSE,
    HOSPITAL_A,
    STRANGER,
    Actor,
    World,
    actor,
    anchor_fields,
    digest,
    member_fields,
)

Sender = Actor | Ed25519Signer
ALL = 1 << 30


def key_of(sender: Sender) -> Ed25519Signer:
    return sender.key if isinstance(sender, Actor) else sender


def anchor(label: str) -> dict[str, Any]:
    return anchor_fields(digest("admission-record/" + label))


def update_fields(validator: Ed25519Signer, power: int, epoch: int) -> dict[str, Any]:
    node_key = validator.public_key if power else bytes(32)  # any prime-order key will do
    return {
        "validator_key": validator.public_key,
        "power": power,
        "epoch": epoch,
        "node_key": node_key,
        "address": "",
    }


def pool_contents(pool: Mempool) -> tuple[bytes, ...]:
    return tuple(pool.reap(ALL, ALL))


class AdmittingNode:
    """The world's chain with a mempool that admits by the sender rule, updated after each
    block as `Chain` updates it (targeted recheck). `twin` is a second pool fed the same
    transactions and rechecked in full after each block, to compare against."""

    def __init__(self) -> None:
        self.world = World()
        self.validator_sets: dict[int, ValidatorSet] = {}
        self._record_validator_sets()
        self.pool, self.admission = self._pool()
        self.twin, _ = self._pool()

    def _pool(self) -> tuple[Mempool, SenderAdmission]:
        pool: Mempool | None = None
        admission = SenderAdmission(
            lambda: self.world.state,
            lambda: self.world.chain.height,
            self.validator_sets.__getitem__,
            lambda sender: pool.last_pending(sender) if pool is not None else None,
        )
        pool = Mempool(MempoolConfig(), CHAIN_ID, self.committed_nonce, admission)
        return pool, admission

    def _record_validator_sets(self) -> None:
        height = self.world.chain.height
        following, after = read_validator_sets(self.world.state)
        self.validator_sets[height + 1] = following
        self.validator_sets[height + 2] = after

    def committed_nonce(self, sender: bytes) -> int:
        return read_u64(self.world.state, keys.nonce_key(sender))

    def tx(self, sender: Sender, kind: TxKind, fields: dict[str, Any], ahead: int = 0) -> bytes:
        """Signed with the sender's next nonce in the pool (plus `ahead`, for a batch)."""
        key = key_of(sender)
        pending = self.pool.pending_nonces(key.public_key)
        last = pending[1] if pending else self.committed_nonce(key.public_key)
        return signed_tx(key, kind, last + 1 + ahead, fields)

    def admit(self, *txs: bytes) -> list[str]:
        """Admission codes of `txs` as one batch; the twin must judge them the same."""
        results = self.pool.admit_batch(list(txs))
        assert self.twin.admit_batch(list(txs)) == results
        return [result.code for result in results]

    def reason(self, tx: bytes) -> str:
        [result] = self.pool.admit_batch([tx])
        self.twin.admit_batch([tx])
        return result.reason

    def commit(self, txs: list[bytes] | None = None) -> tuple[list[TxResult], UpdateResult]:
        """Execute `txs` (default: what the pool reaps, as a proposer) in the next block, then
        update both pools; the targeted one must end as the fully rechecked twin."""
        if txs is None:
            txs = self.pool.reap(ALL, ALL)
        built = self.world.chain.add_block(txs)
        self._record_validator_sets()
        ids = [hashlib.sha256(raw).digest() for raw in txs]
        senders = {raw[3 + raw[1] : 35 + raw[1]] for raw in txs}
        nonces = {sender: self.committed_nonce(sender) for sender in senders}
        results = list(built.result.tx_results)
        recheck = self.admission.recheck_senders(built.block, results)
        update = self.pool.update(ids, nonces, recheck)
        self.twin.update(ids, nonces)
        assert pool_contents(self.pool) == pool_contents(self.twin)
        return results, update


def test_members_are_admitted_and_strangers_refused() -> None:
    node = AdmittingNode()
    member = node.tx(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor("member"))
    stranger = node.tx(STRANGER, TxKind.ANCHOR_RECORD, anchor("stranger"))
    assert node.admit(member, stranger) == ["ok", "not_a_member"]
    assert "not a registered member key" in node.reason(stranger)
    assert pool_contents(node.pool) == (member,)


def test_validator_updates_need_a_current_validator_and_validators_are_not_members() -> None:
    node = AdmittingNode()
    validator = signer(0)
    approval = node.tx(validator, TxKind.VALIDATOR_UPDATE, update_fields(signer(9), 1, 1))
    by_member = node.tx(A_ADMIN, TxKind.VALIDATOR_UPDATE, update_fields(signer(9), 1, 1))
    assert node.admit(approval, by_member) == ["ok", "not_a_validator"]
    assert "validator set of height 3" in node.reason(by_member)
    anchor_by_validator = node.tx(validator, TxKind.ANCHOR_RECORD, anchor("validator"), ahead=0)
    assert node.admit(anchor_by_validator) == ["not_a_member"]


def test_rotated_and_revoked_keys_are_refused_once_committed() -> None:
    node = AdmittingNode()
    new_key = signer("emr/a-colleague/new")
    rotation = node.tx(
        A_COLLEAGUE, TxKind.ROTATE_KEY, node.world.rotation_fields(A_COLLEAGUE, new_key)
    )
    revocation = node.tx(
        A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": A_NURSE.public_key, "reason": "left"}
    )
    assert node.admit(rotation, revocation) == ["ok", "ok"]
    results, _ = node.commit()
    assert [result.code for result in results] == [0, 0]
    old = node.tx(A_COLLEAGUE, TxKind.ANCHOR_RECORD, anchor("old key"))
    new = node.tx(new_key, TxKind.ANCHOR_RECORD, anchor("new key"))
    revoked = node.tx(A_NURSE, TxKind.ANCHOR_RECORD, anchor("revoked"))
    assert node.admit(old, new, revoked) == ["key_rotated", "ok", "member_revoked"]
    assert new_key.public_key.hex()[:16] in node.reason(old)


def test_a_pending_rotation_refuses_the_senders_later_transactions_until_it_commits() -> None:
    node = AdmittingNode()
    new_key = signer("emr/a-clinician/new")
    rotation = node.tx(
        A_CLINICIAN, TxKind.ROTATE_KEY, node.world.rotation_fields(A_CLINICIAN, new_key)
    )
    assert node.admit(rotation) == ["ok"]
    later = node.tx(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor("after rotation"))
    again = node.tx(
        A_CLINICIAN, TxKind.ROTATE_KEY, node.world.rotation_fields(A_CLINICIAN, signer("x"))
    )
    early_new_key = node.tx(new_key, TxKind.ANCHOR_RECORD, anchor("new key too early"))
    assert node.admit(later, again, early_new_key) == [
        "key_rotation_pending",
        "key_rotation_pending",
        "not_a_member",
    ]
    assert "ROTATE_KEY (nonce 3) is pending" in node.reason(later)
    node.commit()
    assert node.admit(node.tx(new_key, TxKind.ANCHOR_RECORD, anchor("new key"))) == ["ok"]
    assert node.admit(later) == ["key_rotated"]


def test_within_a_batch_only_what_follows_the_rotation_is_refused() -> None:
    node = AdmittingNode()
    fields = node.world.rotation_fields(A_COLLEAGUE, signer("emr/a-colleague/new"))
    before = node.tx(A_COLLEAGUE, TxKind.ANCHOR_RECORD, anchor("before"))
    rotation = node.tx(A_COLLEAGUE, TxKind.ROTATE_KEY, fields, ahead=1)
    after = node.tx(A_COLLEAGUE, TxKind.ANCHOR_RECORD, anchor("after"), ahead=2)
    other = node.tx(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor("other sender"))
    assert node.admit(before, rotation, after, other) == [
        "ok",
        "ok",
        "key_rotation_pending",
        "ok",
    ]
    # The rotation is its sender's newest pending transaction, so the rule reads it in O(1).
    assert node.pool.last_pending(A_COLLEAGUE.public_key) == (2, rotation)


def test_a_key_being_registered_waits_for_its_registration_to_commit() -> None:
    node = AdmittingNode()
    newcomer = actor("newcomer")
    registration = node.tx(
        A_ADMIN, TxKind.REGISTER_MEMBER, member_fields(HOSPITAL_A, newcomer, Role.CLINICIAN)
    )
    early = node.tx(newcomer, TxKind.ANCHOR_RECORD, anchor("newcomer"))
    assert node.admit(registration, early) == ["ok", "not_a_member"]
    results, _ = node.commit()
    assert [result.code for result in results] == [0]
    assert node.admit(early) == ["ok"]


def test_a_pending_revocation_does_not_refuse_its_target_and_its_commit_drops_it() -> None:
    node = AdmittingNode()
    revocation = node.tx(
        A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": A_NURSE.public_key, "reason": "left"}
    )
    first = node.tx(A_NURSE, TxKind.ANCHOR_RECORD, anchor("nurse 1"))
    second = node.tx(A_NURSE, TxKind.ANCHOR_RECORD, anchor("nurse 2"), ahead=1)
    assert node.admit(revocation, first, second) == ["ok", "ok", "ok"]
    _, update = node.commit([revocation])  # a block with the revocation only
    assert update.recheck_dropped_txs == 2
    assert pool_contents(node.pool) == ()


def test_a_revocation_naming_an_old_key_drops_the_members_current_key() -> None:
    node = AdmittingNode()
    new_key = signer("emr/a-colleague/new")
    node.admit(
        node.tx(A_COLLEAGUE, TxKind.ROTATE_KEY, node.world.rotation_fields(A_COLLEAGUE, new_key))
    )
    node.commit()
    pending = node.tx(new_key, TxKind.ANCHOR_RECORD, anchor("current key"))
    old_key_named = node.tx(
        A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": A_COLLEAGUE.public_key, "reason": "left"}
    )
    assert node.admit(pending, old_key_named) == ["ok", "ok"]
    _, update = node.commit([old_key_named])
    assert update.dropped_tx_ids == (hashlib.sha256(pending).digest(),)


def test_a_rotation_committed_through_another_node_drops_the_old_keys_later_nonces() -> None:
    node = AdmittingNode()
    first = node.tx(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor("first"))
    second = node.tx(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor("second"), ahead=1)
    assert node.admit(first, second) == ["ok", "ok"]
    # The block carries a ROTATE_KEY with the nonce of `first`, which our pool never saw.
    elsewhere = signed_tx(
        A_CLINICIAN.key,
        TxKind.ROTATE_KEY,
        node.committed_nonce(A_CLINICIAN.public_key) + 1,
        node.world.rotation_fields(A_CLINICIAN, signer("emr/a-clinician/elsewhere")),
    )
    results, update = node.commit([elsewhere])
    assert [result.code for result in results] == [0]
    assert (update.stale_txs, update.recheck_dropped_txs) == (1, 1)
    assert pool_contents(node.pool) == ()


def test_a_validator_leaving_the_set_loses_its_pending_validator_updates() -> None:
    node = AdmittingNode()
    leaving = signer(3)
    removal = [
        node.tx(signer(index), TxKind.VALIDATOR_UPDATE, update_fields(leaving, 0, 1))
        for index in range(3)
    ]
    results, _ = node.commit(removal)  # > 2/3 approve: the set changes two heights on
    assert [result.code for result in results] == [0, 0, 0]
    its_own = node.tx(leaving, TxKind.VALIDATOR_UPDATE, update_fields(signer(9), 1, 1))
    assert node.admit(its_own) == ["ok"]  # still a validator of the next height
    _, update = node.commit([])
    assert update.dropped_tx_ids == (hashlib.sha256(its_own).digest(),)
    assert node.admit(its_own) == ["not_a_validator"]


def test_the_targeted_recheck_leaves_what_a_full_recheck_leaves() -> None:
    """Every kind of change in one run; `commit` compares the two pools after each block."""
    node = AdmittingNode()
    newcomer = actor("newcomer")
    new_key = signer("emr/a-colleague/new")
    node.admit(
        node.tx(A_CLINICIAN, TxKind.ANCHOR_RECORD, anchor("c1")),
        node.tx(A_NURSE, TxKind.ANCHOR_RECORD, anchor("n1")),
        node.tx(A_COLLEAGUE, TxKind.ANCHOR_RECORD, anchor("k1")),
        node.tx(A_ADMIN, TxKind.REVOKE_MEMBER, {"member_key": A_NURSE.public_key, "reason": ""}),
        node.tx(
            A_ADMIN,
            TxKind.REGISTER_MEMBER,
            member_fields(HOSPITAL_A, newcomer, Role.CLINICIAN),
            ahead=1,
        ),
        node.tx(A_NURSE, TxKind.ANCHOR_RECORD, anchor("n2"), ahead=1),
    )
    node.commit(node.pool.reap(3, ALL))  # c1, n1, k1: nothing changes membership
    node.admit(
        node.tx(A_COLLEAGUE, TxKind.ROTATE_KEY, node.world.rotation_fields(A_COLLEAGUE, new_key))
    )
    node.commit()  # revocation, registration, rotation: the nurse's n2 goes
    node.admit(
        node.tx(newcomer, TxKind.ANCHOR_RECORD, anchor("newcomer")),
        node.tx(new_key, TxKind.ANCHOR_RECORD, anchor("rotated")),
        node.tx(A_NURSE, TxKind.ANCHOR_RECORD, anchor("n3")),
    )
    assert len(node.pool) == 2
    node.commit([])
    node.commit()
    assert len(node.pool) == 0
